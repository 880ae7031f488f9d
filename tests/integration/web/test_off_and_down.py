"""A feature turned off or a dependency down answers as such: the badge stays a valid shields.io body while
Redis is down, the admin API is absent (404) until ADMIN_API_KEY is set, and `serve --access-log` logs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from kilo_bridge.config import Settings

ROOT = Path(__file__).resolve().parents[3]


def test_the_badge_is_valid_while_redis_is_down(
    serve: Callable[..., str], make_settings: Callable[..., Settings], own_redis: Any
) -> None:
    url = serve(make_settings(redis_url=own_redis.url, redis_timeout_ms=300))
    assert httpx.get(url + "/api/kilo/stats/badge").json()["message"].endswith("tokens")
    own_redis.stop()
    resp = httpx.get(url + "/api/kilo/stats/badge")
    assert resp.status_code == 200
    body = resp.json()
    assert body == {
        "schemaVersion": 1,
        "label": "powered by Kilo",
        "message": "unavailable",
        "color": "lightgrey",
        "cacheSeconds": 60,
        "isError": True,
    }


def test_admin_routes_are_absent_without_an_admin_key(
    serve: Callable[..., str], make_settings: Callable[..., Settings]
) -> None:
    url = serve(make_settings(admin_api_key=None))
    for method, path in (
        ("GET", "/api/kilo/admin/keys"),
        ("POST", "/api/kilo/admin/keys"),
        ("DELETE", "/api/kilo/admin/keys/abc"),
    ):
        resp = httpx.request(method, url + path, json={"name": "x"} if method == "POST" else None)
        assert resp.status_code == 404, (method, path, resp.text)
        assert resp.json()["error"]["code"] == "not_found"


def test_serve_access_log_logs_requests(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PORT": str(port),
        "JOBS_CONCURRENCY": "0",
        "ARTIFACTS_DIR": str(tmp_path / "a"),
        "JOB_SECRETS_KEY_FILE": str(tmp_path / "k"),
        "REDIS_PREFIX": f"kbacc{os.getpid()}:",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "kilo_bridge", "serve", "--access-log"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        httpx.get(f"http://127.0.0.1:{port}/api/kilo/agents")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert '"GET /api/kilo/agents HTTP/1.1" 200' in out, out
