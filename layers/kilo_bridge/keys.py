"""API keys: issued once, stored only as a SHA-256 digest, each with its own budget and limits.

Keys are 256-bit random strings, so a plain SHA-256 digest is enough (no slow hash needed: there is no
low-entropy password to protect) and lets admission find the key in the same Lua call as its limits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from kilo_bridge.errors import ApiError
from kilo_bridge.models import KeyView
from kilo_bridge.store import NANO, Store, counters

KEY_PREFIX = "kb_"
ID_LEN = 12  # hex digits of the digest shown as the key's id


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_view(key_digest: str, raw: dict[bytes, bytes]) -> KeyView:
    """A stored key record as the API shows it (never the secret)."""

    def num(field: str) -> int:
        return int(raw.get(field.encode(), b"0") or 0)

    return KeyView(
        id=key_digest[:ID_LEN],
        name=raw.get(b"name", b"").decode(),
        created_at=raw.get(b"created_at", b"").decode(),
        revoked=raw.get(b"revoked") == b"1",
        budget_usd=num("budget_nusd") / NANO if num("budget_nusd") else None,
        spent_usd=num("spend_nusd") / NANO,
        reserved_usd=num("reserved_nusd") / NANO,
        rpm=num("rpm") or None,
        tpm=num("tpm") or None,
        max_jobs=num("max_jobs") or None,
        requests=num("requests"),
    )


class KeyStore:
    """Create, list and revoke keys (the CLI and the admin routes share it)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record_key(self, key_digest: str) -> str:
        return self.store.key("apikey", key_digest)

    async def create(
        self, name: str, *, budget_usd: float | None = None, rpm: int | None = None, tpm: int | None = None,
        max_jobs: int | None = None,
    ) -> tuple[str, KeyView]:
        """A new key; the secret is returned here and never again."""
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise ApiError(422, "invalid_request", "name: 1-64 letters, digits, '-' or '_'.")
        for label, value in (("budget_usd", budget_usd), ("rpm", rpm), ("tpm", tpm), ("max_jobs", max_jobs)):
            if value is not None and value < 0:
                raise ApiError(422, "invalid_request", f"{label} must not be negative.")
        # A stored budget of 0 means "none": a budget that rounds to 0 nano-USD would be unlimited.
        if budget_usd is not None and round(budget_usd * NANO) < 1:
            raise ApiError(422, "invalid_request", "budget_usd must be above 0 (leave it out for no budget).")
        secret = new_secret()
        key_digest = digest(secret)
        fields = {
            "name": name,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "revoked": 0,
            "budget_nusd": round((budget_usd or 0) * NANO),
            "spend_nusd": 0,
            "reserved_nusd": 0,
            "rpm": rpm or 0,
            "tpm": tpm or 0,
            "max_jobs": max_jobs or 0,
        }
        async with self.store.guard():
            pipe = self.store.redis.pipeline(transaction=True)
            pipe.hset(self.record_key(key_digest), mapping=fields)
            pipe.sadd(self.store.key("apikeys"), key_digest)
            await pipe.execute()
        return secret, await self.get(key_digest)

    async def get(self, key_digest: str) -> KeyView:
        async with self.store.guard():
            raw = await self.store.redis.hgetall(self.record_key(key_digest))
        if not raw:
            raise ApiError(404, "not_found", "No such key.")
        return key_view(key_digest, raw)

    async def list(self) -> list[KeyView]:
        async with self.store.guard():
            digests = sorted(d.decode() for d in await self.store.redis.smembers(self.store.key("apikeys")))
            pipe = self.store.redis.pipeline(transaction=False)
            for d in digests:
                pipe.hgetall(self.record_key(d))
            raws = await pipe.execute()
        infos = [key_view(d, raw) for d, raw in zip(digests, raws, strict=True) if raw]
        return sorted(infos, key=lambda k: k.created_at)

    async def usage(self, only: str | None = None) -> dict[str, dict[str, Any]]:
        """Counters per key (`name:id`), for every key or only the one with digest `only`."""
        async with self.store.guard():
            if only is not None:
                digests = [only]
            else:
                digests = sorted(d.decode() for d in await self.store.redis.smembers(self.store.key("apikeys")))
            pipe = self.store.redis.pipeline(transaction=False)
            for d in digests:
                pipe.hgetall(self.record_key(d))
            raws = await pipe.execute()
        return {f"{raw.get(b'name', b'').decode()}:{d[:ID_LEN]}": counters(raw)
                for d, raw in zip(digests, raws, strict=True) if raw}

    async def _digest_for(self, key_id: str) -> str:
        if len(key_id) != ID_LEN or any(c not in "0123456789abcdef" for c in key_id):
            raise ApiError(404, "not_found", "No such key.")
        async with self.store.guard():
            digests = [d.decode() for d in await self.store.redis.smembers(self.store.key("apikeys"))]
        for d in digests:
            if d.startswith(key_id):
                return d
        raise ApiError(404, "not_found", "No such key.")

    async def revoke(self, key_id: str) -> KeyView:
        """Revoked at once: admission checks the flag on every request."""
        key_digest = await self._digest_for(key_id)
        async with self.store.guard():
            await self.store.redis.hset(self.record_key(key_digest), "revoked", 1)
        return await self.get(key_digest)
