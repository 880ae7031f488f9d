"""Where a new job's id goes: the local bullmq queue (the embedded default) or SQS (AWS).

The queue carries only job ids: the record, its secrets and its state live in our job store.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import orjson

from kilo_bridge.config import Settings

QUEUE_NAME = "agent-jobs"


def bull_prefix(settings: Settings) -> str:
    # bullmq keys are "<prefix>:<queue>:…"; keeping our {hash tag} puts them in the same cluster slot.
    return settings.redis_prefix.rstrip(":") or "kb"


class JobQueue(Protocol):
    async def enqueue(self, job_id: str) -> None: ...
    async def withdraw(self, job_id: str) -> None: ...
    async def close(self) -> None: ...


class LocalQueue:
    """bullmq: jobId dedupe (a second add of the same id is a no-op), locks, stalled-job recovery."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue: Any = None

    def _get(self) -> Any:
        if self._queue is None:
            from bullmq import Queue

            self._queue = Queue(
                QUEUE_NAME, {"connection": self.settings.resolved_redis_url, "prefix": bull_prefix(self.settings)}
            )
        return self._queue

    async def enqueue(self, job_id: str) -> None:
        # Our runner decides about retries (it knows whether a job may run again): bullmq attempts stay 1,
        # its stalled-job check hands a dead worker's job to another worker.
        await self._get().add(
            "run", {"jobId": job_id}, {"jobId": job_id, "attempts": 1, "removeOnComplete": 1000, "removeOnFail": 5000}
        )

    async def withdraw(self, job_id: str) -> None:
        """Drop a cancelled job's queue entry (a worker holding it already just finds the job ended)."""
        await self._get().remove(job_id)

    async def close(self) -> None:
        if self._queue is not None:
            await self._queue.close()
            self._queue = None


class SqsQueue:
    def __init__(self, settings: Settings) -> None:
        if not settings.agent_queue_url:
            raise RuntimeError("JOB_QUEUE=sqs needs AGENT_QUEUE_URL")
        self.url = settings.agent_queue_url

    async def enqueue(self, job_id: str) -> None:
        from kilo_bridge.platform.aws import client

        await asyncio.to_thread(
            client("sqs").send_message, QueueUrl=self.url, MessageBody=orjson.dumps({"jobId": job_id}).decode()
        )

    async def withdraw(self, job_id: str) -> None:
        return None  # an SQS message cannot be taken back; the dispatcher skips a job that is no longer queued

    async def close(self) -> None:
        return None


def job_queue(settings: Settings) -> JobQueue:
    return SqsQueue(settings) if settings.job_queue == "sqs" else LocalQueue(settings)
