"""Agent jobs as the API sees them: accept a run (validate, seal the secrets, store, enqueue), show,
list, cancel and follow a job's log."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from kilo_bridge.agents import get_agent, load_catalog
from kilo_bridge.artifacts import ARTIFACT_NAMES, artifact_store
from kilo_bridge.errors import ApiError, store_unavailable
from kilo_bridge.job_queue import JobQueue, job_queue
from kilo_bridge.jobs import TERMINAL, JobStore, iso, new_job_id, now_ms, valid_job_id
from kilo_bridge.keys import ID_LEN
from kilo_bridge.models import (
    AgentList,
    ArtifactLink,
    JobList,
    JobLogEnd,
    JobLogLine,
    JobResult,
    JobView,
    RunAgentAccepted,
    RunAgentRequest,
)
from kilo_bridge.observability import get_logger
from kilo_bridge.policy import check_branch, check_profile_env, check_repo_url, check_timeout
from kilo_bridge.secretbox import SecretBox, secret_box
from kilo_bridge.store import NANO, Store

log = get_logger()
IDEMPOTENCY_MAX = 200


def not_found() -> ApiError:
    return ApiError(404, "not_found", "No such job.")


class JobService:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.settings = store.settings
        self.jobs = JobStore(store)
        self._queue: JobQueue | None = None
        self._box: SecretBox | None = None
        self._artifacts: Any = None

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
    def artifacts(self) -> Any:
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
    async def submit(self, body: RunAgentRequest, caller: str | None, idempotency_key: str | None,
                     request_id: str, api_base: str) -> RunAgentAccepted:
        st = self.settings
        spec = get_agent(st.agents_path, body.agent)
        repo = check_repo_url(body.repo_url, st)
        check_profile_env(body.profile_env)
        check_branch(body.base_branch)
        timeout_ms = check_timeout(body.timeout_ms, st)
        if spec.requires_prompt and not body.prompt:
            raise ApiError(422, "invalid_request", f"prompt: agent {spec.name!r} needs a prompt (the task).",
                           details=[{"field": "prompt", "message": "required for this agent"}])
        idempotency = None
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= IDEMPOTENCY_MAX or not idempotency_key.isprintable():
                raise ApiError(400, "bad_request", f"Idempotency-Key: 1-{IDEMPOTENCY_MAX} printable characters.")
            # The body hash covers the secrets too (a changed token is a different request) without storing them.
            body_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
            idempotency = (hashlib.sha256(idempotency_key.encode()).hexdigest()[:32], body_hash)
        job_id = new_job_id()
        fields = {
            "id": job_id, "status": "queued", "phase": "", "progress": 0, "agent": spec.name, "repoUrl": repo.url,
            "baseBranch": body.base_branch or "", "model": body.model or "", "dryRun": int(body.dry_run),
            "timeoutMs": timeout_ms, "maxCostUsd": body.max_cost_usd or "", "prompt": body.prompt or "",
            "owner": caller or "", "keyId": caller[:ID_LEN] if caller else "", "attempt": 0, "createdMs": now_ms(),
            "requestId": request_id,
        }
        sealed = ""
        if body.profile_env:
            sealed = await asyncio.to_thread(self.box.seal, job_id, body.profile_env)
        async with self.store.guard():
            max_jobs = reserve = 0
            if caller:
                raw_jobs, raw_budget = await self.store.redis.hmget(self.store.key("apikey", caller),
                                                                     "max_jobs", "budget_nusd")
                max_jobs = int(raw_jobs or 0)
                if int(raw_budget or 0) > 0:
                    # A budgeted key reserves the job's cost cap up front; the runner keeps the agent under it.
                    cap = body.max_cost_usd or st.job_default_max_cost_usd
                    fields["maxCostUsd"] = cap
                    reserve = round(cap * NANO)
            code, existing = await self.jobs.create(job_id, fields, sealed, caller, idempotency, max_jobs, reserve)
        if code == 1:
            record = await self._record(existing, caller)
            return RunAgentAccepted(job_id=existing, status=record["status"],  # type: ignore[arg-type]
                                    status_url=f"{api_base}/api/kilo/job/{existing}")
        if code == 2:
            raise ApiError(409, "conflict", "This Idempotency-Key was used with a different request body.",
                           extra={"jobId": existing})
        if code == 3:
            raise ApiError(429, "too_many_jobs", f"This key already has {existing} unfinished jobs (its maxJobs).",
                           headers={"Retry-After": "30"})
        if code == 4:
            raise ApiError(402, "budget_exceeded", f"This API key's budget cannot cover the job's cost cap "
                           f"(maxCostUsd {fields['maxCostUsd']}); lower it or ask an operator to raise the budget.")
        try:
            await self.queue.enqueue(job_id)
        except Exception as exc:
            # No ghost job: the record goes with the failed enqueue, and the client may simply retry.
            log.warning("enqueue failed; job discarded", extra={"job_id": job_id, "error": type(exc).__name__})
            async with self.store.guard():
                await self.jobs.discard(job_id, caller, idempotency[0] if idempotency else None)
            raise ApiError(503, "queue_unavailable", "The job queue is unavailable; nothing was started. "
                           "Retry later.", headers={"Retry-After": "5"}) from None
        log.info("job queued", extra={"job_id": job_id, "agent": spec.name, "repo_host": repo.host or "local"})
        return RunAgentAccepted(job_id=job_id, status="queued", status_url=f"{api_base}/api/kilo/job/{job_id}")

    # -- reading -----------------------------------------------------------------------------------
    async def _record(self, job_id: str, caller: str | None) -> dict[str, str]:
        if not valid_job_id(job_id):
            raise not_found()
        async with self.store.guard():
            record = await self.jobs.get(job_id)
        # Another key's job is as good as absent (no oracle for ids).
        if record is None or (caller is not None and record.get("owner") != caller):
            raise not_found()
        return record

    async def view(self, record: dict[str, str], api_base: str) -> JobView:
        job_id = record["id"]
        result = JobResult.model_validate(orjson.loads(record["result"])) if record.get("result") else None
        links: dict[str, ArtifactLink] = {}
        if record.get("artifacts"):
            sizes = orjson.loads(record["artifacts"])
            for name in ARTIFACT_NAMES:
                if name in sizes:
                    url = await self.artifacts.url(job_id, name, api_base)
                    links[name] = ArtifactLink(key=f"jobs/{job_id}/{name}", url=url, bytes=int(sizes[name]))
        return JobView(
            id=job_id, status=record["status"], phase=record.get("phase", ""),  # type: ignore[arg-type]
            progress=int(record.get("progress") or 0), agent=record["agent"], repo_url=record["repoUrl"],
            base_branch=record.get("baseBranch") or None, model=record.get("model") or None,
            dry_run=record.get("dryRun") == "1", timeout_ms=int(record["timeoutMs"]),
            max_cost_usd=float(record["maxCostUsd"]) if record.get("maxCostUsd") else None,
            key_id=record.get("keyId") or None, attempt=int(record.get("attempt") or 0),
            cancel_requested=record.get("cancelRequested") == "1", created_at=iso(record["createdMs"]) or "",
            started_at=iso(record.get("startedMs")), heartbeat_at=iso(record.get("heartbeatMs")),
            finished_at=iso(record.get("finishedMs")), reason=record.get("reason") or None,
            error=record.get("error") or None, result=result, artifacts=links,
            log_url=f"{api_base}/api/kilo/job/{job_id}/logs",
        )

    async def get(self, job_id: str, caller: str | None, api_base: str) -> JobView:
        return await self.view(await self._record(job_id, caller), api_base)

    async def list(self, caller: str | None, status: str | None, limit: int, api_base: str) -> JobList:
        out: list[JobView] = []
        offset, page = 0, max(limit, 50)
        async with self.store.guard():
            while len(out) < limit:
                records = await self.jobs.recent(page, offset)
                if not records:
                    break
                offset += page
                for record in records:
                    if (caller is None or record.get("owner") == caller) and status in (None, record["status"]):
                        out.append(await self.view(record, api_base))
                if offset >= 5_000:  # a bounded scan: older jobs are reached through their ids
                    break
        return JobList(jobs=out[:limit])

    async def cancel(self, job_id: str, caller: str | None, api_base: str) -> JobView:
        record = await self._record(job_id, caller)
        async with self.store.guard():
            outcome = await self.jobs.cancel(job_id, record.get("owner") or None)
        if outcome in TERMINAL and outcome != "cancelled":
            raise ApiError(409, "conflict", f"The job has already ended ({outcome}).")
        if outcome == "cancelled":
            try:
                await self.queue.withdraw(job_id)
            except Exception as exc:  # best effort: a runner would find the job ended and stop at once
                log.info("queue entry not withdrawn", extra={"job_id": job_id, "error": type(exc).__name__})
        log.info("job cancel", extra={"job_id": job_id, "outcome": outcome})
        return await self.get(job_id, caller, api_base)

    async def artifact_path(self, job_id: str, name: str, caller: str | None) -> Any:
        await self._record(job_id, caller)
        if name not in ARTIFACT_NAMES or self.settings.artifacts_bucket:
            raise not_found()
        path = self.artifacts.path(job_id, name)
        if not path.is_file():
            raise not_found()
        return path

    async def follow_log(self, job_id: str, caller: str | None,
                         after: str = "0-0") -> AsyncIterator[tuple[str, Any, str | None]]:
        """("log", JobLogLine, its id)… then ("end", JobLogEnd, None): the log after `after` (a line's id; from
        the start by default), then live lines until the job ends."""
        await self._record(job_id, caller)
        last = after
        while True:
            try:
                entries = await self.jobs.read_log(job_id, last, block_ms=1000)
                if not entries:
                    record = await self.jobs.get(job_id)
                    if record is None or record["status"] in TERMINAL:
                        # Drain what was written between the read and the status check, then end.
                        for entry_id, line in await self.jobs.read_log(job_id, last):
                            last = entry_id
                            yield "log", JobLogLine.model_validate_json(line), entry_id
                        status = record["status"] if record else "failed"
                        yield "end", JobLogEnd(status=status,  # type: ignore[arg-type]
                                               reason=(record or {}).get("reason") or None), None
                        return
                    continue
            except (OSError, ConnectionError) as exc:
                raise store_unavailable() from exc
            for entry_id, line in entries:
                last = entry_id
                yield "log", JobLogLine.model_validate_json(line), entry_id
