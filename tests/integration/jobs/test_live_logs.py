"""A job's log stream with real clients on a real uvicorn: it opens at once with the job's status, keeps a
queued job's stream alive, carries status changes, shows a line while the agent is still busy after it,
frees its Redis connection when the client goes, and answers a reconnect after the end with 204."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from kilo_bridge.config import Settings
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, run_body

Event = tuple[str | None, str, dict[str, Any]]  # (id, event, data)


def sse(lines: Iterator[str], comments: list[str] | None = None) -> Iterator[Event]:
    """Server-sent events as a browser parses them (the id field is per event here, for the asserts)."""
    event_id, kind, data = None, "message", []
    for line in lines:
        if line.startswith(":"):
            if comments is not None:
                comments.append(line)
        elif line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            yield event_id, kind, json.loads("\n".join(data))
            event_id, kind, data = None, "message", []


def start(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/api/kilo/run-agent", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["jobId"])


QUEUED = {"repoUrl": "https://github.com/acme/widgets.git", "agent": "review", "dryRun": True}


@pytest.fixture
def idle(
    serve: Callable[..., str], job_settings: Callable[..., Settings], http_client: Callable[..., httpx.Client]
) -> httpx.Client:
    """A server with no worker: its jobs stay queued; keep-alives every 0.2 s."""
    return http_client(base_url=serve(job_settings(jobs_concurrency=0, sse_keepalive_s=0.2)), timeout=20)


def test_a_queued_jobs_stream_opens_at_once_with_its_status_keeps_alive_and_shows_a_cancel(
    idle: httpx.Client,
) -> None:
    job_id = start(idle, QUEUED)
    with idle.stream("GET", f"/api/kilo/job/{job_id}/logs") as response:
        # Headers and the first event come although the job has written nothing (it never started).
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = next(sse(lines))
        assert first[:2] == (None, "status") and first[2]["status"] == "queued"
        # Then, while it stays queued, keep-alive comments and nothing else.
        assert [next(lines) for _ in range(4)] == [": keep-alive", "", ": keep-alive", ""]
        assert idle.delete(f"/api/kilo/job/{job_id}").status_code == 202
        rest = list(sse(lines))
    # The change of status is an event on the same stream, then the end (with the id that says so).
    assert [(i, k, d["status"]) for i, k, d in rest] == [(None, "status", "cancelled"), ("end", "end", "cancelled")]


def test_a_reconnect_after_the_end_is_204_and_before_it_resumes(idle: httpx.Client) -> None:
    job_id = start(idle, QUEUED)
    idle.delete(f"/api/kilo/job/{job_id}")
    with idle.stream("GET", f"/api/kilo/job/{job_id}/logs") as response:
        assert [k for _, k, _ in sse(response.iter_lines())] == ["status", "end"]
    again = idle.get(f"/api/kilo/job/{job_id}/logs", headers={"Last-Event-ID": "end"})
    assert again.status_code == 204 and again.content == b""  # EventSource stops on a 204
    # A job that has not ended yet: `end` as Last-Event-ID is no reason to refuse a stream.
    other = start(idle, QUEUED)
    with idle.stream("GET", f"/api/kilo/job/{other}/logs", headers={"Last-Event-ID": "end"}) as response:
        assert response.status_code == 200 and next(sse(response.iter_lines()))[1] == "status"
    assert idle.get("/api/kilo/job/job_nope/logs", headers={"Last-Event-ID": "end"}).status_code == 404


def test_a_stream_closes_itself_at_kilo_stream_max_s_and_the_reconnect_carries_on(
    serve: Callable[..., str], job_settings: Callable[..., Settings], http_client: Callable[..., httpx.Client]
) -> None:
    # On AWS API Gateway and the function cut a stream at 15 minutes; the service closes its own first (840 s
    # there), without `end`, so an EventSource reconnects with Last-Event-ID instead of seeing a broken stream.
    short = job_settings(jobs_concurrency=0, sse_keepalive_s=0.2, kilo_stream_max_s=1)
    client = http_client(base_url=serve(short), timeout=20)
    job_id = start(client, QUEUED)
    with client.stream("GET", f"/api/kilo/job/{job_id}/logs") as response:
        comments: list[str] = []
        events = list(sse(response.iter_lines(), comments))  # ends: the server closed the stream
    assert [(k, d["status"]) for _, k, d in events] == [("status", "queued")] and comments
    assert client.get(f"/api/kilo/job/{job_id}").json()["status"] == "queued"  # the job goes on, only the stream ended
    client.delete(f"/api/kilo/job/{job_id}")
    with client.stream("GET", f"/api/kilo/job/{job_id}/logs", headers={"Last-Event-ID": "0-1"}) as response:
        assert [k for _, k, _ in sse(response.iter_lines())] == ["status", "end"]


def test_a_line_is_on_the_stream_while_the_agent_is_still_busy_after_it(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    # The stand-in agent prints one line, then sleeps: no next line comes to push the first one out.
    client = http_client(base_url=serve(job_settings()), timeout=30)
    body = run_body(
        fake_github.repo_url("acme", "widgets"),
        dryRun=True,
        profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "sleep"},
    )
    job_id = start(client, body)
    statuses = []
    with client.stream("GET", f"/api/kilo/job/{job_id}/logs") as response:
        for _, kind, data in sse(response.iter_lines()):
            if kind == "status":
                statuses.append((data["status"], data["phase"]))
            if kind == "log" and "thinking for a long time" in data["msg"]:
                job = client.get(f"/api/kilo/job/{job_id}").json()
                assert (job["status"], job["cancelRequested"]) == ("running", False)
                client.delete(f"/api/kilo/job/{job_id}")
            if kind == "end":
                assert data["status"] == "cancelled"
    assert statuses[-1] == ("cancelled", statuses[-1][1])
    assert ("running", "agent") in statuses  # the phases came as status events while it ran


def test_a_job_log_line_goes_live_without_waiting_for_the_next(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from agent_task.joblog import JobLog
    from kilo_bridge.jobs.store import JobStore
    from kilo_bridge.platform.redis import Store
    from kilo_bridge.platform.security import Redactor

    async def scenario() -> list[str]:
        store = Store(make_settings())
        jobs = JobStore(store)
        log = JobLog(jobs, "job_flushtest", Redactor(["sk-fake-secret-value-000"]), tmp_path / "log.jsonl", 10_000)
        try:
            await log.line("kilo", "one line, then quiet (sk-fake-secret-value-000)")
            deadline = time.monotonic() + 10
            while not (lines := await jobs.read_log("job_flushtest")):
                assert time.monotonic() < deadline, "the line never reached the live log"
                await asyncio.sleep(0.02)
            await log.line("kilo", "two")
            await log.close()  # close flushes what is pending, once
            return [json.loads(text)["msg"] for _, text in await jobs.read_log("job_flushtest")] + [
                json.loads(lines[0][1])["msg"]
            ]
        finally:
            await store.close()

    *everything, first = asyncio.run(scenario())
    assert first == "one line, then quiet ([REDACTED])"
    assert everything == [first, "two"]


def test_terminal_colour_codes_never_reach_the_log(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """The CLI colours its stderr whatever NO_COLOR says: the live log and log.jsonl keep the text only, and a
    secret split by a colour code is still redacted."""
    from agent_task.joblog import JobLog
    from kilo_bridge.jobs.store import JobStore
    from kilo_bridge.platform.redis import Store
    from kilo_bridge.platform.security import Redactor

    async def scenario() -> list[str]:
        store = Store(make_settings())
        jobs = JobStore(store)
        log = JobLog(jobs, "job_ansitest", Redactor(["sk-fake-secret-value-000"]), tmp_path / "log.jsonl", 10_000)
        try:
            await log.line(
                "kilo", "\x1b[91m\x1b[1mError: \x1b[0mUnauthorized \x1b]0;kilo\x07(sk-fake-\x1b[2msecret-value-000)"
            )
            await log.close()
            return [json.loads(text)["msg"] for _, text in await jobs.read_log("job_ansitest")]
        finally:
            await store.close()

    assert asyncio.run(scenario()) == ["Error: Unauthorized ([REDACTED])"]
    artifact = (tmp_path / "log.jsonl").read_text()
    assert "\\u001b" not in artifact and "Unauthorized ([REDACTED])" in artifact


def test_a_follower_stops_at_once_when_its_cancellation_was_lost(job_settings: Callable[..., Settings]) -> None:
    from kilo_bridge.jobs.models import RunAgentRequest
    from kilo_bridge.jobs.service import JobService
    from kilo_bridge.platform.redis import Store

    async def scenario() -> bool:
        store = Store(job_settings(jobs_concurrency=0))
        svc = JobService(store)
        try:
            job_id = (await svc.submit(RunAgentRequest.model_validate(QUEUED), None, None, "req_lost")).job_id

            async def follower() -> None:
                lines = svc.follow_log(job_id, None)
                assert (await anext(lines))[0] == "status"
                # The client hangs up and the stream cancels this task, but the CancelledError is lost on the
                # way, as CPython 3.11's asyncio.wait_for (around every redis-py write) loses one that lands
                # just as the write completes; cancelling() still counts the request.
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0)
                await anext(lines)  # the job stays queued: nothing to yield, it would read on for nobody

            task = asyncio.ensure_future(follower())
            done, _ = await asyncio.wait([task], timeout=10)  # a guard for the failure, not a measure
            stopped = task in done and task.cancelled()
            task.cancel()  # one that read on: cancel it again (this time it lands)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return stopped
        finally:
            await svc.close()
            await store.close()

    assert asyncio.run(scenario())  # it stopped before its next read instead of following on


def test_abandoned_streams_leave_no_redis_reads_behind(
    serve: Callable[..., str], job_settings: Callable[..., Settings], own_redis: Any
) -> None:
    url = serve(job_settings(redis_url=own_redis.url, jobs_concurrency=0))
    watch = redis.Redis(port=own_redis.port, decode_responses=True)
    with httpx.Client(base_url=url, timeout=20) as client:
        job_id = start(client, QUEUED)

    async def abandon(n: int) -> None:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as ac:

            async def one() -> None:
                async with ac.stream("GET", f"/api/kilo/job/{job_id}/logs") as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            return  # first event seen: hang up

            await asyncio.gather(*(one() for _ in range(n)))

    def settled() -> int:
        deadline = time.monotonic() + 20
        while int(watch.info("clients")["blocked_clients"]) > 0:  # a follower left blocked in XREAD
            assert time.monotonic() < deadline, watch.execute_command("CLIENT LIST")
            time.sleep(0.05)
        return len(watch.client_list())

    rounds = []
    for _ in range(3):
        asyncio.run(abandon(150))
        rounds.append(settled())
    # Every follower's read ends with its client (settled), and connections do not pile up from round to round.
    # A cancelled read closes its connection; the others go back to the pool and stay open, idle, as many as
    # happened to run at once, so the count varies (2 one round, 38 the next) but never passes one round's
    # followers (plus the watcher and the server's own few). A leak would add up to 150 a round.
    assert max(rounds) <= 150 + 5, rounds


def test_cors_lets_a_fetch_client_resume_and_read_the_job_link(
    serve: Callable[..., str], job_settings: Callable[..., Settings]
) -> None:
    origin = "https://console.example"
    url = serve(job_settings(jobs_concurrency=0, cors_origins=origin))
    with httpx.Client(base_url=url, timeout=20, headers={"Origin": origin}) as client:
        pre = client.options(
            "/api/kilo/job/job_x/logs",
            headers={
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "last-event-id, x-api-key",
            },
        )
        assert pre.status_code == 200 and "last-event-id" in pre.headers["access-control-allow-headers"].lower()
        made = client.post("/api/kilo/run-agent", json=QUEUED)
        assert made.status_code == 202 and made.headers["location"].endswith(made.json()["jobId"])
        assert "location" in made.headers["access-control-expose-headers"].lower()
