"""No reservation outlives its call by more than the owner timeout: an admission the caller gave up on (Redis paused
past its timeout, then running it on resume) is released at the process's next sign of life; a call that fails
inside the server after its admission is settled; the reservations of a web process killed mid-stream are released
by another process. All with a Redis of the test's own and reservation deadlines far away (600 s or more)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from kilo_bridge.config import Settings, settings_env
from kilo_bridge.keys.store import digest
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import ROOT, RedisServer, free_port, wait_http

ADMIN = "admin-key-not-real-0123456789"
MSG = [{"role": "user", "content": "x"}]


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def new_key(url: str) -> str:
    resp = httpx.post(
        url + "/api/kilo/admin/keys", json={"name": "ci", "budgetUsd": 1}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def field(r: redis.Redis, key: str, name: str) -> int:
    return int(r.hget(f"{{kb}}:apikey:{digest(key)}", name) or 0)


def test_an_admission_the_caller_gave_up_on_is_released(
    serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread, own_redis: RedisServer
) -> None:
    url = serve(
        make_settings(
            redis_url=own_redis.url,
            redis_prefix="{kb}:",
            redis_timeout_ms=300,
            auth_required=True,
            admin_api_key=ADMIN,
            reservation_owner_timeout_s=1.5,
            reservation_hold_s=600,
        )
    )
    key = new_key(url)
    r = redis.Redis.from_url(own_redis.url)
    body = {"model": "fake/model-a", "messages": MSG, "max_tokens": 10}
    with httpx.Client(timeout=10) as http:
        fake.script([{"kind": "ok", "cost": 0.001}])
        assert http.post(url + "/v1/chat/completions", json=body, headers={"x-api-key": key}).status_code == 200
        assert wait_for(lambda: field(r, key, "spend_nusd") == 1_000_000)
        own_redis.pause()
        try:
            resp = http.post(url + "/v1/chat/completions", json=body, headers={"x-api-key": key})
        finally:
            own_redis.resume()
    assert resp.status_code == 503
    assert len(fake.chats) == 1  # fail closed
    # Redis ran the admission when it resumed (the key counts the request) ...
    assert wait_for(lambda: field(r, key, "requests") == 2)
    # ... and what it reserved is released at the process's next sign of life, not at the 600 s deadline.
    assert wait_for(lambda: field(r, key, "reserved_nusd") == 0), field(r, key, "reserved_nusd")
    assert field(r, key, "spend_nusd") == 1_000_000
    r.close()


def test_a_call_that_fails_inside_the_server_after_admission_is_settled(
    serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread, own_redis: RedisServer
) -> None:
    url = serve(
        make_settings(
            redis_url=own_redis.url,
            redis_prefix="{kb}:",
            auth_required=True,
            admin_api_key=ADMIN,
            reservation_hold_s=600,
        )
    )
    key = new_key(url)
    r = redis.Redis.from_url(own_redis.url)
    # An answer whose usage cannot be read as numbers: pricing it fails (not a gateway error) after the upstream
    # answered and billed.
    fake.script([{"kind": "ok", "usage": {"prompt_tokens": "many", "completion_tokens": 3}}])
    body = {"model": "fake/model-a", "messages": MSG, "max_tokens": 10}
    resp = httpx.post(url + "/v1/chat/completions", json=body, headers={"x-api-key": key}, timeout=10)
    assert resp.status_code == 500
    assert wait_for(lambda: field(r, key, "reserved_nusd") == 0), field(r, key, "reserved_nusd")
    assert field(r, key, "spend_nusd") > 0  # its cost is unknown but it was billed: the key pays its reservation
    assert int(r.hget("{kb}:stats", "failed") or 0) == 1
    r.close()


@pytest.fixture
def servers(
    make_settings: Callable[..., Settings], own_redis: RedisServer, tmp_path: Any
) -> Iterator[Callable[[], tuple[subprocess.Popen[bytes], str]]]:
    """`start()` → a `kilo-bridge serve` process (one web process) on the test's Redis, and its URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        settings = make_settings(
            port=port,
            web_concurrency=1,
            redis_url=own_redis.url,
            redis_prefix="{kb}:",
            auth_required=True,
            admin_api_key=ADMIN,
            reservation_owner_timeout_s=3,
        )
        env = {**os.environ, **settings_env(settings), "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "kilo_bridge", "serve"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz", proc)
        return proc, url

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_killed_web_process_s_reservations_are_released_by_another(
    servers: Callable[[], tuple[subprocess.Popen[bytes], str]], fake: FakeGatewayThread, own_redis: RedisServer
) -> None:
    doomed, url = servers()
    _successor, _ = servers()
    key = new_key(url)
    r = redis.Redis.from_url(own_redis.url)
    fake.script([{"kind": "ok", "chunks": 5, "chunk_delay_ms": 10_000, "cost": 0.002}])  # a stream of ~50 s
    body = {"model": "fake/model-a", "messages": MSG, "max_tokens": 10, "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers={"x-api-key": key}, timeout=60) as resp:
        assert resp.status_code == 200
        assert field(r, key, "reserved_nusd") > 0
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    # Its reservation would be held ~17 minutes (its deadline); the other process releases it within a minute.
    assert wait_for(lambda: field(r, key, "reserved_nusd") == 0, 60), field(r, key, "reserved_nusd")
    r.close()
