"""Agent jobs as the API sees them: accept a run (validate, seal the secrets, store, enqueue), show,
list, cancel and follow a job's log. Public URLs are the web layer's business: this returns records."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import hashlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from kilo_bridge.errors import BridgeError, Conflict, InvalidInput, NotConfigured, NotFound, Unavailable
from kilo_bridge.jobs.artifacts import (
    ARTIFACT_NAMES,
    SESSION_ARTIFACT,
    ArtifactStore,
    LocalArtifacts,
    artifact_key,
    artifact_store,
)
from kilo_bridge.jobs.catalogue import AgentSpec, get_agent, load_catalog
from kilo_bridge.jobs.inbox import Delivery, JobInbox
from kilo_bridge.jobs.models import (
    AgentList,
    DeployStep,
    FollowUpRequest,
    JobLogEnd,
    JobLogLine,
    JobLogStatus,
    RunAgentRequest,
)
from kilo_bridge.jobs.policy import check_branch, check_repo_url, check_timeout
from kilo_bridge.jobs.queue import JobQueue, job_queue
from kilo_bridge.jobs.record import TERMINAL, JobRecord, JobStatus, job_binding, new_job_id, valid_job_id
from kilo_bridge.jobs.store import Created, JobStore
from kilo_bridge.keys.store import KeyStore, key_id, model_allowed
from kilo_bridge.money import nusd
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.aio import reraise_cancellation
from kilo_bridge.platform.clock import iso, now_ms
from kilo_bridge.platform.redis import Store, StoreUnavailable
from kilo_bridge.platform.resp import RedisError
from kilo_bridge.platform.sealing import JOB_SCOPE, SESSION_SCOPE, SealBroken, SecretBox, secret_box
from kilo_bridge.profiles.env import check_profile_env
from kilo_bridge.profiles.service import ProfileNotFound, ProfileService
from kilo_bridge.usage.ledger import BudgetExceeded, ModelNotAllowed

log = get_logger()
IDEMPOTENCY_MAX = 200
# The keys the check below takes, as the OpenAPI document states them (narrower: visible ASCII, inner spaces
# only, since HTTP drops a header value's outer spaces).
IDEMPOTENCY_PATTERN = r"^[!-~](?:[ -~]*[!-~])?$"
# A profile's deploy step (for triggers and schedules): the command and its hosts, not values the command gets.
DEPLOY_ENV = ("DEPLOY_COMMAND", "DEPLOY_ALLOW")


class JobNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No such job.")


class InvalidIdempotencyKey(BridgeError, code="bad_request"):
    """The Idempotency-Key is empty, too long or not printable."""


class TooManyJobs(BridgeError, code="too_many_jobs"):
    """The key has as many unfinished jobs as its maxJobs allows."""


class AgentsNotConfigured(NotConfigured):
    """No Kilo Gateway key: every model call the agent would make through this bridge would be refused, so the
    run is refused at submit rather than failing a minute later."""

    def __init__(self) -> None:
        super().__init__(
            "KILO_API_KEY is not configured on this server, so an agent could make no model call; nothing was "
            "started. Set it (a Kilo Gateway key) and restart, or try everything offline with `make demo`."
        )


class KeyRevoked(BridgeError, code="key_revoked"):
    """The API key that would own the job (directly, or through its trigger or schedule) is revoked."""


class QueueUnavailable(Unavailable, code="queue_unavailable"):
    """The job could not be enqueued; it was discarded, so a retry starts clean."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """A run accepted: its job (for a retried request, the first one's) and that job's status."""

    job_id: str
    status: JobStatus


@dataclass(frozen=True, slots=True)
class Artifact:
    """One stored artifact of a job."""

    name: str
    key: str
    bytes: int
    url: str | None  # a presigned URL, or None when the API serves it (local storage)


@dataclass(frozen=True, slots=True)
class JobDetails:
    """A job and its artifacts: what the API shows of it."""

    record: JobRecord
    artifacts: list[Artifact]
    after: str | None = None  # the agent's catalogue entry's `after` (pull_request | report), for the outcome
    thread: tuple[JobRecord, ...] = ()  # a follow-up's conversation, oldest first, itself last (one job's view)


# How far back a job's view follows its thread (a longer conversation shows its latest jobs).
THREAD_MAX = 50


LogEvent = tuple[str, JobLogLine | JobLogStatus | JobLogEnd, str | None]
# The id of a log stream's `end` event: a client that reconnects with it as Last-Event-ID has seen the end.
END_ID = "end"
HEARTBEAT_EVERY_S = 5.0


class JobService:
    def __init__(self, store: Store, profiles: ProfileService | None = None) -> None:
        self.store = store
        self.settings = store.settings
        self.jobs = JobStore(store)
        self.keys = KeyStore(store)
        self.profiles = profiles or ProfileService(store)
        self._queue: JobQueue | None = None
        self._box: SecretBox | None = None
        self._artifacts: ArtifactStore | None = None
        self.inbox = JobInbox(store)

    @property
    def queue(self) -> JobQueue:
        if self._queue is None:
            self._queue = job_queue(self.settings)
        return self._queue

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            self._box = secret_box(self.settings)
        return self._box

    @property
    def artifacts(self) -> ArtifactStore:
        if self._artifacts is None:
            self._artifacts = artifact_store(self.settings)
        return self._artifacts

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.close()

    def agents(self) -> AgentList:
        catalog = load_catalog(self.settings.agents_path)
        return AgentList(agents=[spec.info() for spec in catalog.values()])

    # -- run-agent ---------------------------------------------------------------------------------
    async def submit(  # noqa: C901 - the submit checks in the order the API documents them
        self,
        body: RunAgentRequest,
        caller: str | None,
        idempotency_key: str | None,
        request_id: str,
        notify: str | None = None,
        parent: JobRecord | None = None,
        branch: str | None = None,
    ) -> Submitted:
        """`parent`: a follow-up's parent (its branch continued). `branch`: a branch of the repository the job
        checks out and pushes to (a pull request's head), set only by the bridge's own features."""
        st = self.settings
        if not (st.api_key or st.kilo_api_key_secret_arn):
            raise AgentsNotConfigured()
        spec = get_agent(st.agents_path, body.agent)
        repo = check_repo_url(body.repo_url, st)
        check_profile_env(body.profile_env)
        env = body.profile_env
        setup: list[str] = []
        if body.profile is not None:
            try:
                saved, setup = await self.profiles.for_job(caller, body.profile)
            except ProfileNotFound:
                raise InvalidInput(
                    f"profile: no profile named {body.profile!r}.",
                    details=[{"field": "profile", "message": "no such profile"}],
                ) from None
            env = {**saved, **body.profile_env}  # the run's own values win
            check_profile_env(env)
        deploy, env = deploy_step(spec, body, env)
        check_branch(body.base_branch)
        check_branch(branch, "branch")
        timeout_ms = check_timeout(body.timeout_ms, st)
        if body.patch is not None and not spec.accepts_patch:
            raise InvalidInput(
                f"patch: agent {spec.name!r} does not take a patch.",
                details=[{"field": "patch", "message": "this agent does not take a patch"}],
            )
        if spec.requires_prompt and not body.prompt:
            raise InvalidInput(
                f"prompt: agent {spec.name!r} needs a prompt (the task).",
                details=[{"field": "prompt", "message": "required for this agent"}],
            )
        idempotency = None
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= IDEMPOTENCY_MAX or not idempotency_key.isprintable():
                raise InvalidIdempotencyKey(f"Idempotency-Key: 1-{IDEMPOTENCY_MAX} printable characters.")
            # The body hash covers the secrets too (a changed token is a different request) without storing them.
            body_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
            idempotency = (hashlib.sha256(idempotency_key.encode()).hexdigest()[:32], body_hash)
        job_id = new_job_id()
        max_cost = body.max_cost_usd
        max_jobs = reserve = 0
        if caller:
            limits = await self.keys.job_limits(caller)
            max_jobs = limits.max_jobs
            model = body.model or st.kilo_default_model
            if not model_allowed(limits.models, model):  # before anything is reserved or queued
                raise ModelNotAllowed(f"This API key may not use the model {model!r} (its models list).")
            if limits.budgeted:
                # A budgeted key reserves the job's cost cap up front; the runner keeps the agent under it.
                max_cost = body.max_cost_usd or st.job_default_max_cost_usd
                reserve = nusd(max_cost)
        record = JobRecord(
            id=job_id,
            status="queued",
            agent=spec.name,
            repo_url=repo.url,
            timeout_ms=timeout_ms,
            created_ms=now_ms(),
            base_branch=body.base_branch,
            model=body.model,
            dry_run=body.dry_run,
            max_cost_usd=max_cost,
            prompt=body.prompt,
            owner=caller,
            key_id=key_id(caller) if caller else None,
            request_id=request_id,
            notify=notify,
            network=body.network,
            deploy=deploy,
            require_approval=body.require_approval and deploy is not None,
            parent_job_id=parent.id if parent else None,
            branch=continued_branch(parent) if parent else branch,
            setup=tuple(setup) if parent is None else parent.setup,
        )
        # Sealed even when empty: the blob binds the job's identity, so a record rewritten in Redis after this
        # point fails `record_tampered` in its runner instead of running with the original owner's secrets.
        sealed = await asyncio.to_thread(self.box.seal, job_id, env, JOB_SCOPE, job_binding(record, body.patch))
        async with self.store.guard():
            created, existing = await self.jobs.create(
                record, sealed, idempotency, max_jobs, reserve, patch=body.patch or ""
            )
        if created is Created.SEEN:
            return Submitted(existing, (await self._record(existing, caller)).status)
        if created is Created.OTHER_BODY:
            raise Conflict("This Idempotency-Key was used with a different request body.", extra={"jobId": existing})
        if created is Created.TOO_MANY:
            raise TooManyJobs(f"This key already has {existing} unfinished jobs (its maxJobs).", retry_after=30)
        if created is Created.KEY_REVOKED:
            raise KeyRevoked("The API key that owns this run is revoked: nothing was started.")
        if created is Created.OVER_BUDGET:
            raise BudgetExceeded(
                f"This API key's budget cannot cover the job's cost cap (maxCostUsd {max_cost}); "
                "lower it or ask an operator to raise the budget."
            )
        try:
            await self.queue.enqueue(job_id)
        except Exception as exc:
            # No ghost job: the record goes with the failed enqueue, and the client may simply retry.
            log.warning("enqueue failed; job discarded", extra={"job_id": job_id, "error": type(exc).__name__})
            async with self.store.guard():
                await self.jobs.discard(job_id, caller, idempotency[0] if idempotency else None)
            raise QueueUnavailable(
                "The job queue is unavailable; nothing was started. Retry later.", retry_after=5
            ) from None
        log.info("job queued", extra={"job_id": job_id, "agent": spec.name, "repo_host": repo.host or "local"})
        return Submitted(job_id, "queued")

    async def follow_up(
        self, parent_id: str, body: FollowUpRequest, caller: str | None, request_id: str, notify: str | None = None
    ) -> Submitted:
        """The next job of a finished job's conversation: its agent, repository, model, network and secrets,
        its CLI session (the runner imports what the parent exported) and the branch the thread pushed. It
        reports where the parent did, unless `notify` says where (a GitHub thread the follow-up came from)."""
        parent = await self._record(parent_id, caller)
        if not parent.finished:
            raise Conflict(
                "The job is still running: send it a message (POST /api/kilo/job/{id}/messages); follow it up "
                "once it has ended."
            )
        # Its secrets were deleted from its record at its end: its runner kept them sealed with its session.
        kept = await self.artifacts.get(parent.id, SESSION_ARTIFACT)
        try:
            opened = await asyncio.to_thread(self.box.open, parent.id, (kept or b"").decode(), SESSION_SCOPE)
            env = {str(k): str(v) for k, v in orjson.loads(opened["env"]).items()}
        except (SealBroken, ValueError, KeyError):
            raise Conflict(
                "This job kept no conversation to continue (it ended before its runner could keep it): start a new run."
            ) from None
        run = RunAgentRequest(
            repo_url=parent.repo_url,
            agent=parent.agent,
            prompt=body.prompt,
            profile_env=env,
            timeout_ms=body.timeout_ms or parent.timeout_ms,
            dry_run=body.dry_run,
            base_branch=parent.base_branch,
            model=parent.model,
            max_cost_usd=body.max_cost_usd,
            network=parent.network,
            profile=None,
            patch=None,
            # A deploy's follow-up deploys the same way, behind the same approval.
            deploy=DeployStep.model_validate(parent.deploy) if parent.deploy else None,
            require_approval=parent.require_approval,
        )
        return await self.submit(run, caller, None, request_id, notify=notify or parent.notify, parent=parent)

    async def say(self, job_id: str, text: str, caller: str | None, wait_s: float) -> tuple[str, Delivery]:
        """A message for the job's agent at its next step: (its id, `delivered` | `ended` — the job ended before
        the agent's next model request — | `pending` after `wait_s`). A job that has ended: Conflict."""
        await self._record(job_id, caller)
        async with self.store.guard():
            message_id, status = await self.inbox.post(job_id, text)
        if message_id is None:
            raise Conflict(
                f"The job has already ended ({status}): follow it up instead (POST /api/kilo/job/{job_id}/follow-up)."
            )
        loop = asyncio.get_running_loop()
        until = loop.time() + wait_s
        while True:
            async with self.store.guard():
                # The status first: a message delivered just before the job ended is still delivered.
                record = await self.jobs.get(job_id)
                delivery = await self.inbox.delivery(job_id, message_id, record.status if record else "failed")
            if delivery != "pending" or loop.time() >= until:
                return message_id, delivery
            await asyncio.sleep(0.1)

    async def thread(self, record: JobRecord) -> builtins.list[JobRecord]:
        """The job's conversation up to it, oldest first (its own key's jobs: a thread never crosses keys)."""
        chain = [record]
        async with self.store.guard():
            while chain[0].parent_job_id and len(chain) < THREAD_MAX:
                parent = await self.jobs.get(chain[0].parent_job_id)
                if parent is None or parent.owner != record.owner:
                    break
                chain.insert(0, parent)
        return chain

    # -- reading -----------------------------------------------------------------------------------
    async def _record(self, job_id: str, caller: str | None) -> JobRecord:
        if not valid_job_id(job_id):
            raise JobNotFound()
        async with self.store.guard():
            record = await self.jobs.get(job_id)
        # Another key's job is as good as absent (no oracle for ids).
        if record is None or (caller is not None and record.owner != caller):
            raise JobNotFound()
        return record

    async def owned(self, job_id: str, owner: str | None) -> JobRecord | None:
        """The job when `owner` owns it (None: a job of no key, on an open server), else None."""
        try:
            record = await self._record(job_id, owner)
        except JobNotFound:
            return None
        return record if record.owner == owner else None

    async def details(self, record: JobRecord) -> JobDetails:
        links = []
        for name in ARTIFACT_NAMES:
            if record.artifacts and name in record.artifacts:
                url = await self.artifacts.url(record.id, name)
                links.append(Artifact(name, artifact_key(record.id, name), record.artifacts[name], url))
        spec = load_catalog(self.settings.agents_path).get(record.agent)
        return JobDetails(record, links, spec.after if spec else None)

    async def get(self, job_id: str, caller: str | None) -> JobDetails:
        record = await self._record(job_id, caller)
        details = await self.details(record)
        if not record.parent_job_id:
            return details
        return dataclasses.replace(details, thread=tuple(await self.thread(record)))

    async def list(self, caller: str | None, status: str | None, limit: int) -> list[JobDetails]:
        out: list[JobDetails] = []
        offset, page = 0, max(limit, 50)
        async with self.store.guard():
            while len(out) < limit:
                records = await self.jobs.recent(page, offset)
                if not records:
                    break
                offset += page
                for record in records:
                    if (caller is None or record.owner == caller) and status in (None, record.status):
                        out.append(await self.details(record))
                if offset >= 5_000:  # a bounded scan: older jobs are reached through their ids
                    break
        return out[:limit]

    async def unfinished(self, caller: str) -> builtins.list[JobRecord]:
        """The key's queued and running jobs."""
        async with self.store.guard():
            return await self.jobs.unfinished(caller)

    async def cancel(self, job_id: str, caller: str | None) -> JobDetails:
        record = await self._record(job_id, caller)
        async with self.store.guard():
            outcome = await self.jobs.cancel(job_id, record.owner)
        if outcome in TERMINAL and outcome != "cancelled":
            raise Conflict(f"The job has already ended ({outcome}).")
        if outcome == "cancelled":
            try:
                await self.queue.withdraw(job_id)
            except Exception as exc:  # best effort: a runner would find the job ended and stop at once
                log.info("queue entry not withdrawn", extra={"job_id": job_id, "error": type(exc).__name__})
        log.info("job cancel", extra={"job_id": job_id, "outcome": outcome})
        return await self.get(job_id, caller)

    async def decide(self, job_id: str, caller: str | None, decision: str) -> JobDetails:
        """A person approves or rejects a deploy awaiting approval: taken once, only while it waits and before
        its window ends (another key's job: not found)."""
        assert decision in ("approved", "rejected")
        record = await self._record(job_id, caller)
        if record.deploy is None or not record.require_approval:
            raise Conflict("This job does not wait for an approval.")
        async with self.store.guard():
            outcome = await self.jobs.decide(job_id, decision)
        if outcome.startswith("decided:"):
            raise Conflict(f"The deploy was already {outcome.removeprefix('decided:')}.")
        if outcome == "expired":
            raise Conflict("The approval window (DEPLOY_APPROVAL_TTL_S) has ended; the job is cancelled.")
        if outcome != "ok":
            raise Conflict("The job is not awaiting approval.")
        log.info("deploy decision", extra={"job_id": job_id, "decision": decision})
        return await self.get(job_id, caller)

    async def artifact_path(self, job_id: str, name: str, caller: str | None) -> Path:
        await self._record(job_id, caller)
        store = self.artifacts
        if name not in ARTIFACT_NAMES or not isinstance(store, LocalArtifacts):
            raise JobNotFound()
        path = store.path(job_id, name)
        if not path.is_file():
            raise JobNotFound()
        return path

    async def follow_log(
        self, job_id: str, caller: str | None, after: str = "0-0", block_ms: int = 1000, until: float | None = None
    ) -> AsyncGenerator[LogEvent]:
        """("status", JobLogStatus, None) at once, then ("log", JobLogLine, its id) for the log after `after` (a
        line's id; from the start by default) and live lines, a "status" whenever the job's state changes, and
        ("end", JobLogEnd, END_ID) when the job has ended. Each round waits at most `block_ms` for lines, so a
        follower that is dropped holds nothing for longer than that. At `until` (the event loop's clock) it stops,
        without "end", after the round it is in."""
        record = await self._record(job_id, caller)
        shown = _status(record)
        shown_at = asyncio.get_running_loop().time()
        yield "status", shown, None
        last = after
        while until is None or asyncio.get_running_loop().time() < until:
            # The stream cancels its follower when the client hangs up; a cancellation lost below must not
            # leave the follower reading forever for nobody.
            reraise_cancellation()
            try:
                entries = await self.jobs.read_log(job_id, last, block_ms=block_ms)
                current = await self.jobs.get(job_id)
                if current is None or current.finished:
                    # Drain what was written between the read and the status check, then end.
                    while more := await self.jobs.read_log(job_id, entries[-1][0] if entries else last):
                        entries += more
            except (RedisError, OSError) as exc:
                raise StoreUnavailable() from exc
            for entry_id, line in entries:
                last = entry_id
                yield "log", JobLogLine.model_validate_json(line), entry_id
            if current is None:
                yield "end", JobLogEnd(status="failed"), END_ID
                return
            now = _status(current)
            moved = (now.status, now.phase, now.progress, now.cancel_requested, now.reason) != (
                shown.status,
                shown.phase,
                shown.progress,
                shown.cancel_requested,
                shown.reason,
            )
            clock = asyncio.get_running_loop().time()
            # A heartbeat alone is news only now and then: a page shows it, nothing reacts to it.
            if moved or (now.heartbeat_at != shown.heartbeat_at and clock - shown_at >= HEARTBEAT_EVERY_S):
                shown, shown_at = now, clock
                yield "status", now, None
            if current.finished:
                yield "end", JobLogEnd(status=current.status, reason=current.reason), END_ID
                return


def deploy_step(
    spec: AgentSpec, body: RunAgentRequest, env: dict[str, str]
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """A deploy job's step, from the run or else the profile (DEPLOY_COMMAND, DEPLOY_ALLOW: taken out of the
    values the command gets); never from the repository. Other agents take none."""
    if spec.after != "deploy":
        if body.deploy is not None or body.require_approval:
            raise InvalidInput(
                f"deploy: agent {spec.name!r} does not deploy.",
                details=[{"field": "deploy", "message": "only the deploy agent takes a deploy step"}],
            )
        return None, env
    rest = {k: v for k, v in env.items() if k not in DEPLOY_ENV}
    if body.deploy is not None:
        return {"command": body.deploy.command, "allow": list(body.deploy.allow)}, rest
    command = env.get("DEPLOY_COMMAND", "")
    if not command.strip():
        raise InvalidInput(
            "deploy: the deploy agent needs `deploy.command` (or its profile's DEPLOY_COMMAND).",
            details=[{"field": "deploy.command", "message": "required for the deploy agent"}],
        )
    allow = [a.strip() for a in env.get("DEPLOY_ALLOW", "").split(",") if a.strip()]
    try:
        step = DeployStep(command=command, allow=allow)
    except ValidationError as exc:
        raise InvalidInput(
            "deploy: the profile's DEPLOY_COMMAND or DEPLOY_ALLOW is not valid.",
            details=[{"field": "profile", "message": str(e["msg"])[:200]} for e in exc.errors()],
        ) from None
    return {"command": step.command, "allow": step.allow}, rest


def continued_branch(parent: JobRecord) -> str | None:
    """The branch a follow-up of `parent` continues: the one it pushed, else the one it continued itself."""
    pushed = (parent.result or {}).get("branch") if parent.status == "succeeded" else None
    return str(pushed) if pushed else parent.branch


def _status(record: JobRecord) -> JobLogStatus:
    return JobLogStatus(
        status=record.shown_status,
        phase=record.phase,
        progress=record.progress,
        heartbeat_at=iso(record.heartbeat_ms),
        cancel_requested=record.cancel_requested,
        reason=record.reason,
    )
