"""Webhook triggers: create (answers once with the signing secret), list, show, rotate the secret (answered
once too), delete, and the signed call that starts a run.

A call is verified before anything else is done with it: `X-Kilo-Timestamp` (unix seconds, at most
MAX_SKEW_S from now either way) and `X-Kilo-Signature: sha256=<hex HMAC-SHA256(secret, "<ts>.<body>")>`,
compared in constant time. A verified call is then admitted once (the same signature again is a replay)
and within the trigger's per-minute limit; its prompt is rendered from the body (template.py) and the run
is submitted through JobService as the trigger's owner, so the owner's budget and maxJobs apply.

The secret is sealed with the job secrets' box (platform/sealing.py) under the `trigger` scope, bound to the
trigger's id, and opened only to verify a call.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

import orjson
from pydantic import ValidationError

from kilo_bridge.errors import BridgeError, Conflict, NotFound, Unauthorized, invalid
from kilo_bridge.jobs.catalogue import get_agent
from kilo_bridge.jobs.models import RunAgentRequest
from kilo_bridge.jobs.policy import check_branch, check_repo_url
from kilo_bridge.jobs.service import JobService, Submitted
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.clock import iso, now_ms
from kilo_bridge.platform.redis import Store
from kilo_bridge.platform.sealing import SecretBox, secret_box
from kilo_bridge.profiles.service import ProfileNotFound
from kilo_bridge.triggers import template
from kilo_bridge.triggers.models import TriggerCreate
from kilo_bridge.triggers.store import OPEN_OWNER, StoredTrigger, TriggerStore

log = get_logger()
SCOPE = "trigger"
MAX_TRIGGERS = 50
MAX_SKEW_S = 300


class TriggerNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No such trigger.")


class TooManyTriggers(BridgeError, code="conflict"):
    """The owner keeps as many triggers as allowed."""


class BadTriggerSignature(Unauthorized):
    """The call's signature or timestamp is missing, wrong or stale."""


class TriggerBodyTooLarge(BridgeError, code="payload_too_large"):
    """The call's body is over TRIGGER_MAX_BODY_BYTES."""


class TriggerRateLimited(BridgeError, code="rate_limited"):
    """The trigger took as many calls this minute as TRIGGER_RATE_PER_MINUTE allows."""


class ReplayedCall(Conflict):
    def __init__(self) -> None:
        super().__init__("This signed call was delivered already; sign each call with a fresh timestamp.")


@dataclass(frozen=True, slots=True)
class Created:
    trigger: StoredTrigger
    secret: str


@dataclass(frozen=True, slots=True)
class DeliverySeen:
    entry: dict[str, Any]
    job_status: str | None


def owner_of(caller: str | None) -> str:
    return caller or OPEN_OWNER


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """What a sender puts in X-Kilo-Signature."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class TriggerService:
    def __init__(self, store: Store, jobs: JobService) -> None:
        self.store, self.jobs, self.settings = store, jobs, store.settings
        self.triggers = TriggerStore(store)
        self._box: SecretBox | None = None

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            self._box = secret_box(self.settings)
        return self._box

    async def create(self, caller: str | None, body: TriggerCreate) -> Created:
        spec = get_agent(self.settings.agents_path, body.agent)
        repo = check_repo_url(body.repo_url, self.settings)
        check_branch(body.base_branch)
        template.check(body.prompt_template)
        if body.profile is not None:
            try:
                await self.jobs.profiles.get(caller, body.profile)
            except ProfileNotFound:
                raise invalid("profile", "no such profile") from None
        trigger_id = "trg_" + secrets.token_urlsafe(24)  # 192 bits: the URL itself is unguessable
        secret, sealed = await self._new_secret(trigger_id)
        stored = StoredTrigger(
            id=trigger_id,
            owner=owner_of(caller),
            name=body.name,
            agent=spec.name,
            repo_url=repo.url,
            template=body.prompt_template,
            profile=body.profile,
            max_cost_usd=body.max_cost_usd,
            base_branch=body.base_branch,
            created_ms=now_ms(),
            sealed=sealed,
            dry_run=body.dry_run,
        )
        async with self.store.guard():
            if not await self.triggers.create(stored, MAX_TRIGGERS):
                raise TooManyTriggers(f"This key keeps {MAX_TRIGGERS} triggers already; delete one first.")
        log.info("trigger create", extra={"trigger": trigger_id, "agent": spec.name})
        return Created(stored, secret)

    async def _new_secret(self, trigger_id: str) -> tuple[str, str]:
        secret = "kbt_" + secrets.token_urlsafe(32)
        return secret, await asyncio.to_thread(self.box.seal, trigger_id, {"secret": secret}, SCOPE)

    async def rotate(self, caller: str | None, trigger_id: str) -> Created:
        """A new signing secret, answered this once; the old one verifies nothing from now on."""
        found = await self._mine(caller, trigger_id)
        secret, sealed = await self._new_secret(trigger_id)
        async with self.store.guard():
            if not await self.triggers.rotate(trigger_id, sealed):
                raise TriggerNotFound()
        log.info("trigger rotate", extra={"trigger": trigger_id})
        return Created(replace(found, sealed=sealed), secret)

    async def _mine(self, caller: str | None, trigger_id: str) -> StoredTrigger:
        async with self.store.guard():
            found = await self.triggers.get(trigger_id)
        # Another key's trigger is as good as absent.
        if found is None or found.owner != owner_of(caller):
            raise TriggerNotFound()
        return found

    async def get(self, caller: str | None, trigger_id: str) -> StoredTrigger:
        return await self._mine(caller, trigger_id)

    async def all(self, caller: str | None) -> list[StoredTrigger]:
        async with self.store.guard():
            return await self.triggers.all(owner_of(caller))

    async def delete(self, caller: str | None, trigger_id: str) -> None:
        await self._mine(caller, trigger_id)
        async with self.store.guard():
            await self.triggers.delete(owner_of(caller), trigger_id)
        log.info("trigger delete", extra={"trigger": trigger_id})

    async def deliveries(self, caller: str | None, trigger_id: str) -> list[DeliverySeen]:
        await self._mine(caller, trigger_id)
        async with self.store.guard():
            entries = await self.triggers.deliveries(trigger_id)
            out = []
            for entry in entries:
                record = await self.jobs.jobs.get(entry["jobId"]) if entry.get("jobId") else None
                out.append(DeliverySeen(entry, record.status if record else None))
        return out

    # -- the public call ------------------------------------------------------------------------------
    async def find(self, trigger_id: str) -> StoredTrigger:
        async with self.store.guard():
            found = await self.triggers.get(trigger_id)
        if found is None:
            raise TriggerNotFound()
        return found

    async def verify(self, t: StoredTrigger, body: bytes, timestamp: str | None, sig: str | None) -> None:
        if not timestamp or not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12 or not sig:
            raise BadTriggerSignature("Sign the call: X-Kilo-Timestamp (unix seconds) and X-Kilo-Signature.")
        if abs(time.time() - int(timestamp)) > MAX_SKEW_S:
            raise BadTriggerSignature(f"X-Kilo-Timestamp is more than {MAX_SKEW_S} s from now; sign afresh.")
        secret = (await asyncio.to_thread(self.box.open, t.id, t.sealed, SCOPE))["secret"]
        if not hmac.compare_digest(signature(secret, timestamp, body).encode(), sig.encode()):
            raise BadTriggerSignature("X-Kilo-Signature does not match the timestamp and body.")

    async def call(
        self,
        t: StoredTrigger,
        body: bytes,
        timestamp: str | None,
        sig: str | None,
        request_id: str,
    ) -> Submitted:
        """A call to the trigger's URL: verified, admitted, rendered, submitted (as the owner), recorded."""
        if len(body) > self.settings.trigger_max_body_bytes:
            raise TriggerBodyTooLarge(f"The body exceeds {self.settings.trigger_max_body_bytes} bytes.")
        await self.verify(t, body, timestamp, sig)
        digest = hashlib.sha256((sig or "").encode()).hexdigest()[:32]
        async with self.store.guard():
            verdict, wait_s = await self.triggers.admit(
                t.id, digest, int(time.time() // 60), self.settings.trigger_rate_per_minute, 2 * MAX_SKEW_S
            )
        if verdict == "replayed":
            raise ReplayedCall()
        try:
            if verdict == "limited":
                raise TriggerRateLimited("This trigger's per-minute limit is reached.", retry_after=wait_s)
            owner = None if t.owner == OPEN_OWNER else t.owner
            submitted = await self.jobs.submit(self._run(t, body), owner, None, request_id)
        except BridgeError as exc:
            await self._record(t.id, request_id, "refused", code=exc.code)
            raise
        await self._record(t.id, request_id, "started", job_id=submitted.job_id)
        log.info("trigger call", extra={"trigger": t.id, "job_id": submitted.job_id})
        return submitted

    def _run(self, t: StoredTrigger, body: bytes) -> RunAgentRequest:
        try:
            data = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            raise BridgeError("The body is not valid JSON.", code="invalid_json") from None
        prompt = template.render(t.template, data).strip() or None
        fields = {"profile": t.profile, "maxCostUsd": t.max_cost_usd, "baseBranch": t.base_branch, "dryRun": t.dry_run}
        run = {"repoUrl": t.repo_url, "agent": t.agent, "prompt": prompt} | {k: v for k, v in fields.items() if v}
        try:
            return RunAgentRequest.model_validate(run)
        except ValidationError as exc:
            raise invalid("body", f"the run it renders is invalid ({exc.error_count()} problems)") from None

    async def _record(self, trigger_id: str, request_id: str, outcome: str, **fields: str) -> None:
        entry = {"at": iso(now_ms()), "outcome": outcome, "requestId": request_id}
        entry.update({("jobId" if k == "job_id" else k): v for k, v in fields.items()})
        async with self.store.guard():
            await self.triggers.record(trigger_id, entry)
