"""Redis stopped mid-test: fail closed with a clear 503, then recover without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import RedisServer


def test_redis_down_then_back(
    serve: Callable[..., str], make_settings: Callable[..., Settings], own_redis: RedisServer, fake: FakeGatewayThread
) -> None:
    url = serve(make_settings(redis_url=own_redis.url, redis_timeout_ms=500))
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.post("/api/kilo/generate", json={"prompt": "x"}).status_code == 200
        deadline = time.monotonic() + 10  # its record is written after the answer: in this Redis, before it goes
        while client.get("/api/kilo/stats").json()["totals"]["ok"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)

        own_redis.stop()
        calls_before = len(fake.chats)
        for path in ("/api/kilo/generate", "/api/kilo/generate-stream", "/v1/chat/completions"):
            body = {"prompt": "x"} if path.startswith("/api") else {"model": "m", "messages": [{"role": "user"}]}
            resp = client.post(path, json=body)
            assert resp.status_code == 503, (path, resp.text)
            err = resp.json()["error"]
            assert err["code"] == "store_unavailable" and "Redis" in err["message"]
            assert resp.headers["retry-after"] == "5"
        assert len(fake.chats) == calls_before  # fail closed: no spend that cannot be counted
        assert client.get("/api/kilo/stats").status_code == 503
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["redis"] == "unreachable"

        own_redis.start()  # same port, empty data
        resp = client.post("/api/kilo/generate", json={"prompt": "x"})
        assert resp.status_code == 200, resp.text
        assert client.get("/healthz").json()["redis"] == "ok"
        assert client.get("/api/kilo/stats").json()["totals"]["ok"] == 1


def test_job_routes_fail_closed_when_redis_is_down(
    serve: Callable[..., str], job_settings: Callable[..., Settings], own_redis: RedisServer
) -> None:
    url = serve(job_settings(redis_url=own_redis.url, redis_timeout_ms=500, jobs_concurrency=0))
    body = {"repoUrl": "https://github.com/acme/widgets.git", "agent": "review", "dryRun": True}
    with httpx.Client(base_url=url, timeout=10) as client:
        job_id = client.post("/api/kilo/run-agent", json=body).json()["jobId"]
        own_redis.stop()
        for method, path in (
            ("POST", "/api/kilo/run-agent"),
            ("GET", f"/api/kilo/job/{job_id}"),
            ("DELETE", f"/api/kilo/job/{job_id}"),
            ("GET", "/api/kilo/jobs"),
            ("GET", f"/api/kilo/job/{job_id}/logs"),
        ):
            resp = client.request(method, path, json=body if method == "POST" else None)
            assert resp.status_code == 503, (method, path, resp.text)
            assert resp.json()["error"]["code"] in ("store_unavailable", "queue_unavailable")
        own_redis.start()  # empty again: the job is gone with the data, and new ones are accepted
        assert client.post("/api/kilo/run-agent", json=body).status_code == 202
