"""API keys: issued once, stored only as a SHA-256 digest, each with its own budget and limits.

Keys are 256-bit random strings, so a plain SHA-256 digest is enough (no slow hash needed: there is no
low-entropy password to protect) and lets admission find the key in the same Lua call as its limits.

This module owns the key families `apikey:<digest>` (a hash) and `apikeys` (the set of digests). The hash's
fields: name, created_at, revoked (0/1), budget_nusd (0 = none), budget_period ('' = lifetime, day, week, month),
spend_nusd (lifetime), reserved_nusd (held by calls and jobs in flight), period_start / period_spend_nusd /
period_reserved_nusd (the current budget period: its start in epoch ms, what was spent and is held in it), models
(comma-separated exact ids or `provider/*`; '' = any), team ('' = none; keys/teams.py), rpm, tpm, max_jobs
(0 = none), requests, plus the usage counters (usage/ledger.py). The usage and jobs scripts read and settle
budget fields on the key this module names for them (`key_record`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kilo_bridge.errors import InvalidInput, NotFound, Unauthorized, invalid
from kilo_bridge.keys.names import MAX_MODELS, MODEL_PATTERN_MAX, NAME
from kilo_bridge.keys.names import MODEL_PATTERN as _MODEL_PATTERN
from kilo_bridge.keys.periods import PERIODS, iso_ms, next_start_ms, start_ms
from kilo_bridge.money import nusd, usd
from kilo_bridge.platform.redis import Store, hset_args

if TYPE_CHECKING:
    from kilo_bridge.keys.models import KeyView

KEY_PREFIX = "kb_"
# A job's own key: what its agent's model calls are admitted and metered on (only `/v1`, only while the job
# runs). Never listed with the operators' keys; it expires with the job even if nobody revokes it.
JOB_KEY_PREFIX = "kbj_"
ID_LEN = 12  # hex digits of the digest shown as the key's id


class InvalidKey(Unauthorized):
    def __init__(self) -> None:
        super().__init__("A valid API key is required (Authorization: Bearer <key> or x-api-key).")


class KeyNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No such key.")


def new_secret(prefix: str = KEY_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id(key_digest: str) -> str:
    return key_digest[:ID_LEN]


MODEL_PATTERN = re.compile(_MODEL_PATTERN)


def check_models(models: list[str] | None) -> str:
    """A key's model list as stored: '' for any model, else comma-separated exact ids or `provider/*`."""
    if not models:
        return ""
    if len(models) > MAX_MODELS:
        raise invalid("models", f"at most {MAX_MODELS} entries.")
    for model in models:
        if len(model) > MODEL_PATTERN_MAX or not MODEL_PATTERN.fullmatch(model):
            raise invalid("models", f"{model[:200]!r} is neither a model id nor a `provider/*` pattern.")
    return ",".join(dict.fromkeys(models))


TEAM_NAME = re.compile(NAME)


def check_team(team: str | None) -> str:
    if team and not TEAM_NAME.fullmatch(team):
        raise invalid("team", "1-64 letters, digits, '-' or '_'.")
    return team or ""


def model_allowed(stored: str, model: str) -> bool:
    """What admission's script decides (usage/lua/admit.lua `allowed`), for lists shown to the key."""
    if not stored:
        return True
    for pattern in stored.split(","):
        if pattern == model or (pattern.endswith("/*") and model.startswith(pattern[:-1])):
            return True
    return False


def key_record(store: Store, key_digest: str | None) -> str:
    """The key's hash; `-` stands for "no key" (an open server), which no key ever has."""
    return store.key("apikey", key_digest or "-")


def team_record(store: Store, team: str | None) -> str:
    """A team's hash (its budget and spend, keys/teams.py); `-` stands for "no team", which no team is called."""
    return store.key("team", team or "-")


JOB_KEY_KEEP_S = 3600  # a revoked job key's record: long enough for calls still settling to find it


def _index(store: Store) -> str:
    return store.key("apikeys")


def _num(raw: dict[str, str], field: str) -> int:
    return int(raw.get(field) or 0)


def period_spend_nusd(raw: dict[str, str], now: float) -> int:
    """What the key spent in the budget period that contains `now` (0 once a new period began: admission resets
    the stored figure at its first call in it)."""
    period = raw.get("budget_period")
    if not period or raw.get("period_start") != str(start_ms(period, now)):
        return 0
    return _num(raw, "period_spend_nusd")


def key_view(key_digest: str, raw: dict[str, str], now: float | None = None) -> KeyView:
    """A stored key record as the API shows it (never the secret)."""
    now = time.time() if now is None else now
    # Imported here: the API model is pydantic, which the dispatcher and finalizer (jobs/store.py needs this
    # module's key families) never load otherwise; the admin routes have it loaded already.
    from kilo_bridge.keys.models import KeyView

    budget = _num(raw, "budget_nusd")
    period = raw.get("budget_period") or None
    return KeyView(
        id=key_id(key_digest),
        name=raw.get("name", ""),
        created_at=raw.get("created_at", ""),
        revoked=raw.get("revoked") == "1",
        budget_usd=usd(budget) if budget else None,
        budget_period=period,  # type: ignore[arg-type]
        spent_usd=usd(_num(raw, "spend_nusd")),
        reserved_usd=usd(_num(raw, "reserved_nusd")),
        spent_this_period_usd=usd(period_spend_nusd(raw, now)) if period else None,
        period_resets_at=iso_ms(next_start_ms(period, now)) if period else None,
        models=[m for m in (raw.get("models") or "").split(",") if m] or None,
        team=raw.get("team") or None,
        rpm=_num(raw, "rpm") or None,
        tpm=_num(raw, "tpm") or None,
        max_jobs=_num(raw, "max_jobs") or None,
        requests=_num(raw, "requests"),
    )


_LIMIT_FIELDS = {"budget_usd": "budget_nusd", "rpm": "rpm", "tpm": "tpm", "max_jobs": "max_jobs"}


def _limit_fields(**limits: float | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for label, value in limits.items():
        if value is None:
            continue
        if value < 0:
            raise InvalidInput(f"{label} must not be negative.")
        out[_LIMIT_FIELDS[label]] = nusd(value) if label == "budget_usd" else int(value)
    # A stored budget of 0 means "none": a budget that rounds to 0 nano-USD would be unlimited.
    if limits.get("budget_usd") is not None and out["budget_nusd"] < 1:
        raise InvalidInput("budget_usd must be above 0 (leave it out for no budget).")
    return out


def _period(period: str | None) -> str:
    if period and period not in PERIODS:
        raise invalid("budget_period", f"one of {', '.join(PERIODS)} (or none for a lifetime budget).")
    return period or ""


@dataclass(frozen=True, slots=True)
class JobKeyUsage:
    """What a job's key was metered for: the job's cost, and the trouble its agent met on the way."""

    spend_nusd: int
    reserved_nusd: int  # calls admitted and not yet settled
    requests: int
    failed: int
    budget_refusals: int
    last_error: str | None
    input_tokens: int = 0  # as the upstream's usage reported them, summed over the key's calls
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class JobLimits:
    """What a key allows an agent job: unfinished jobs at once (0 = any), whether it has a budget, and the
    models it may use ('' = any)."""

    max_jobs: int
    budgeted: bool
    models: str = ""


class KeyStore:
    """Create, list, look up and revoke keys (the CLI, the admin routes and auth share it)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock  # what "this period" means in the views (the ledger's clock, which tests move)

    async def create(
        self,
        name: str,
        *,
        budget_usd: float | None = None,
        budget_period: str | None = None,
        models: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        max_jobs: int | None = None,
        team: str | None = None,
    ) -> tuple[str, KeyView]:
        """A new key; the secret is returned here and never again."""
        if not TEAM_NAME.fullmatch(name):
            raise InvalidInput("name: 1-64 letters, digits, '-' or '_'.")
        limits = _limit_fields(budget_usd=budget_usd, rpm=rpm, tpm=tpm, max_jobs=max_jobs)
        secret = new_secret()
        key_digest = digest(secret)
        fields: dict[str, Any] = {
            "name": name,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "revoked": 0,
            "budget_nusd": 0,
            "budget_period": _period(budget_period),
            "models": check_models(models),
            "team": check_team(team),
            "spend_nusd": 0,
            "reserved_nusd": 0,
            "rpm": 0,
            "tpm": 0,
            "max_jobs": 0,
            **limits,
        }
        async with self.store.guard():
            await self.store.pipeline(
                ("HSET", key_record(self.store, key_digest), *hset_args(fields)),
                ("SADD", _index(self.store), key_digest),
                transaction=True,
            )
        return secret, await self.get(key_digest)

    async def update(self, short_id: str, changes: dict[str, Any]) -> KeyView:
        """Change a key's limits (only the fields given; None clears a limit). A new budget period starts
        counting at the next admission."""
        key_digest = await self._digest_for(short_id)
        limits = {f: changes[f] for f in ("budget_usd", "rpm", "tpm", "max_jobs") if f in changes}
        fields: dict[str, Any] = {_LIMIT_FIELDS[f]: 0 for f, v in limits.items() if v is None}  # cleared
        fields.update(_limit_fields(**limits))
        if "budget_period" in changes:
            fields["budget_period"] = _period(changes["budget_period"])
            fields["period_start"] = ""  # the next admission opens the period afresh
        if "models" in changes:
            fields["models"] = check_models(changes["models"])
        if "team" in changes:
            fields["team"] = check_team(changes["team"])
        if fields:
            record = key_record(self.store, key_digest)
            async with self.store.guard():
                await self.store.call("HSET", record, *hset_args(fields))
        return await self.get(key_digest)

    async def get(self, key_digest: str) -> KeyView:
        async with self.store.guard():
            raw = await self.store.hash(key_record(self.store, key_digest))
        if not raw:
            raise KeyNotFound()
        return key_view(key_digest, raw, self.clock())

    async def is_active(self, key_digest: str) -> bool:
        """Known and not revoked (one round trip)."""
        async with self.store.guard():
            revoked = await self.store.field(key_record(self.store, key_digest), "revoked")
        return revoked == "0"

    async def models(self, key_digest: str) -> str:
        """The key's stored model list ('' = any model)."""
        async with self.store.guard():
            return await self.store.field(key_record(self.store, key_digest), "models") or ""

    async def create_job_key(
        self, job_id: str, budget_nusd: int, rpm: int, ttl_s: int, owner: str | None = None
    ) -> str:
        """A key for one job's agent: its budget is the job's cost cap (0: none), gone after `ttl_s`. It may use
        the models its owner (a key digest) may use."""
        secret = new_secret(JOB_KEY_PREFIX)
        record = key_record(self.store, digest(secret))
        models = team = ""
        if owner:  # the job's agent may use what its owner may, and spends from its owner's team
            async with self.store.guard():
                found = await self.store.fields(key_record(self.store, owner), "models", "team")
            models, team = found[0] or "", found[1] or ""
        fields = {
            "name": f"job-{job_id}",
            "job": job_id,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "revoked": 0,
            "budget_nusd": max(0, budget_nusd),
            "spend_nusd": 0,
            "reserved_nusd": 0,
            "rpm": rpm,
            "tpm": 0,
            "max_jobs": 0,
            "models": models,
            "team": team,
        }
        async with self.store.guard():
            await self.store.pipeline(
                ("HSET", record, *hset_args(fields)), ("EXPIRE", record, max(1, ttl_s)), transaction=True
            )
        return secret

    async def job_key_usage(self, secret: str) -> JobKeyUsage:
        async with self.store.guard():
            raw = await self.store.hash(key_record(self.store, digest(secret)))
        return JobKeyUsage(
            spend_nusd=_num(raw, "spend_nusd"),
            reserved_nusd=_num(raw, "reserved_nusd"),
            requests=_num(raw, "requests"),
            failed=_num(raw, "failed"),
            budget_refusals=_num(raw, "budget_refusals"),
            last_error=raw.get("last_error") or None,
            input_tokens=_num(raw, "prompt_tokens"),
            output_tokens=_num(raw, "completion_tokens"),
        )

    async def revoke_job_key(self, secret: str) -> JobKeyUsage:
        """Revoked at once (admission reads the flag); kept a little while for the record, then gone."""
        record = key_record(self.store, digest(secret))
        async with self.store.guard():
            await self.store.pipeline(
                ("HSET", record, "revoked", 1), ("EXPIRE", record, JOB_KEY_KEEP_S), transaction=True
            )
        return await self.job_key_usage(secret)

    async def job_limits(self, key_digest: str) -> JobLimits:
        async with self.store.guard():
            max_jobs, budget, models = await self.store.fields(
                key_record(self.store, key_digest), "max_jobs", "budget_nusd", "models"
            )
        return JobLimits(int(max_jobs or 0), int(budget or 0) > 0, models or "")

    async def _digests(self) -> list[str]:
        return sorted(await self.store.members(_index(self.store)))

    async def _records(self, digests: list[str]) -> list[dict[str, str]]:
        return await self.store.hashes(key_record(self.store, d) for d in digests)

    async def list(self) -> list[KeyView]:
        async with self.store.guard():
            digests = await self._digests()
            raws = await self._records(digests)
        infos = [key_view(d, raw, self.clock()) for d, raw in zip(digests, raws, strict=True) if raw]
        return sorted(infos, key=lambda k: k.created_at)

    async def records(self, only: str | None = None) -> dict[str, dict[str, str]]:
        """Every key's stored hash by digest (or only the one with digest `only`): the usage ledger's view."""
        async with self.store.guard():
            digests = [only] if only is not None else await self._digests()
            raws = await self._records(digests)
        return {d: raw for d, raw in zip(digests, raws, strict=True) if raw}

    async def digest_for(self, short_id: str) -> str:
        """The digest of the key with this id, revoked or not (KeyNotFound: none)."""
        return await self._digest_for(short_id)

    async def _digest_for(self, short_id: str) -> str:
        if len(short_id) != ID_LEN or any(c not in "0123456789abcdef" for c in short_id):
            raise KeyNotFound()
        async with self.store.guard():
            digests = await self._digests()
        for d in digests:
            if d.startswith(short_id):
                return d
        raise KeyNotFound()

    async def active_digest(self, short_id: str) -> str | None:
        """The digest of the key with this id if it exists and is not revoked (what owns work started for it
        by the server itself, such as the GitHub App's jobs)."""
        try:
            key_digest = await self._digest_for(short_id)
        except KeyNotFound:
            return None
        return key_digest if await self.is_active(key_digest) else None

    async def revoke(self, short_id: str) -> KeyView:
        """Revoked at once: admission checks the flag on every request."""
        key_digest = await self._digest_for(short_id)
        async with self.store.guard():
            await self.store.call("HSET", key_record(self.store, key_digest), "revoked", 1)
        return await self.get(key_digest)
