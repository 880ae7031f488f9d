"""Overload is a fast 503, never a 500 or a misleading 502: `kilo-bridge serve` raises its soft open-file limit to
the hard one, and a process whose limit is low (set with setrlimit before it starts, as `ulimit -n` would) answers
what it cannot hold `503 overloaded` with `Retry-After`, while the streams it took finish and settle."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from kilo_bridge.config import Settings, settings_env
from kilo_bridge.keys.store import digest
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import ROOT, RedisServer, free_port, wait_http

ADMIN = "admin-key-not-real-0123456789"


@pytest.fixture
def start_server(
    make_settings: Callable[..., Settings], own_redis: RedisServer
) -> Iterator[Callable[[int, int], tuple[subprocess.Popen[bytes], str]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(soft: int, hard: int) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        settings = make_settings(
            port=port,
            web_concurrency=1,
            redis_url=own_redis.url,
            redis_prefix="{kb}:",
            auth_required=True,
            admin_api_key=ADMIN,
        )
        env = {**os.environ, **settings_env(settings), "PYTHONPATH": os.pathsep.join(sys.path)}

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

        proc = subprocess.Popen(
            [sys.executable, "-m", "kilo_bridge", "serve"],
            env=env,
            cwd=ROOT,
            preexec_fn=limit,
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


def open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line")


def test_serve_raises_its_soft_open_file_limit_to_the_hard_one(
    start_server: Callable[[int, int], tuple[subprocess.Popen[bytes], str]],
) -> None:
    proc, _url = start_server(256, 4096)
    assert open_files_limit(proc.pid) == (4096, 4096)


def test_past_what_it_can_hold_it_answers_503_with_retry_after_never_500_or_502(
    start_server: Callable[[int, int], tuple[subprocess.Popen[bytes], str]],
    fake: FakeGatewayThread,
    own_redis: RedisServer,
) -> None:
    proc, url = start_server(160, 160)  # the hard limit too: nothing to raise to; a third of it is ~32 requests
    assert open_files_limit(proc.pid) == (160, 160)
    created = httpx.post(
        url + "/api/kilo/admin/keys",
        json={"name": "ci", "budgetUsd": 100},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    key = created.json()["key"]
    fake.script([{"kind": "ok", "chunks": 4, "chunk_delay_ms": 500, "cost": 0.001}] * 120)
    body: dict[str, Any] = {"model": "fake/model-a", "messages": [{"role": "user", "content": "x"}], "stream": True}

    async def one(client: httpx.AsyncClient) -> tuple[int, str, str | None]:
        async with client.stream("POST", url + "/v1/chat/completions", json=body, headers={"x-api-key": key}) as resp:
            text = (await resp.aread()).decode()
            return resp.status_code, text, resp.headers.get("retry-after")

    async def load() -> list[tuple[int, str, str | None]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(*(one(client) for _ in range(100)))

    answers = asyncio.run(load())
    statuses = sorted({status for status, _, _ in answers})
    assert statuses == [200, 503], statuses
    for status, text, retry_after in answers:
        if status == 503:
            assert '"code":"overloaded"' in text and retry_after == "1"
        else:
            assert "data: [DONE]" in text
    served = sum(1 for status, _, _ in answers if status == 200)
    r = redis.Redis.from_url(own_redis.url)
    record = f"{{kb}}:apikey:{digest(key)}"
    deadline = time.monotonic() + 30
    while int(r.hget(record, "spend_nusd") or 0) != served * 1_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert int(r.hget(record, "spend_nusd") or 0) == served * 1_000_000
    assert int(r.hget(record, "reserved_nusd") or 0) == 0
    r.close()
