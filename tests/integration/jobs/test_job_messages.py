"""Messages to a running job (steering) through the API against real Redis: queued while the job has not ended,
taken once by its runner (here the test takes them, as the runner's door does), their delivery said to the
sender; another key's job is absent; an ended job points to follow-up."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import redis

from kilo_bridge.config import Settings
from kilo_bridge.jobs.inbox import JobInbox
from kilo_bridge.platform.redis import Store
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import run_body


def _take(settings: Settings, job_id: str) -> list[str]:
    async def go() -> list[str]:
        store = Store(settings)
        try:
            return [m.text for m in await JobInbox(store).take(job_id)]
        finally:
            await store.close()

    return asyncio.run(go())


def test_a_message_is_delivered_once_and_said_delivered(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    key_factory: Callable[..., str],
    redis_client: redis.Redis,
    prefix: str,
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    settings = job_settings(jobs_concurrency=0, auth_required=True)
    base = serve(settings)
    mine = http_client(base_url=base, timeout=30, headers={"x-api-key": key_factory("mine")})
    theirs = http_client(base_url=base, timeout=30, headers={"x-api-key": key_factory("theirs")})
    job_id = mine.post("/api/kilo/run-agent", json=run_body(fake_github.repo_url("acme", "widgets"))).json()["jobId"]
    assert theirs.post(f"/api/kilo/job/{job_id}/messages", json={"text": "x"}).status_code == 404

    answers: list[httpx.Response] = []
    sender = threading.Thread(
        target=lambda: answers.append(mine.post(f"/api/kilo/job/{job_id}/messages", json={"text": "go left"}))
    )
    sender.start()
    deadline = time.monotonic() + 20
    while not redis_client.exists(f"{prefix}job:{job_id}:inbox"):
        assert time.monotonic() < deadline, "never queued"
        time.sleep(0.02)
    assert _take(settings, job_id) == ["go left"]
    assert _take(settings, job_id) == []  # handed over once
    sender.join(30)
    assert answers[0].status_code == 202, answers[0].text
    assert answers[0].json()["delivery"] == "delivered"
    pending = mine.post(f"/api/kilo/job/{job_id}/messages", json={"text": "later", "waitMs": 0})
    assert pending.status_code == 202 and pending.json()["delivery"] == "pending"

    assert mine.delete(f"/api/kilo/job/{job_id}").json()["status"] == "cancelled"
    ended = mine.post(f"/api/kilo/job/{job_id}/messages", json={"text": "too late"})
    assert ended.status_code == 409 and "follow-up" in ended.json()["error"]["message"]
