"""Shared fixtures: real Redis (own key prefix per test), the fake Kilo Gateway, the app on a real uvicorn or
in process (Starlette's TestClient), and factories for API keys and jobs in the test's own prefix.

Plain helpers (ROOT, REDIS_URL, TEST_KEY, free_port, RedisServer, ...) are in tests/support.py; tests import
them from there, never from this module."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis
import uvicorn

from kilo_bridge.config import Settings, load_settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub, make_repo
from tests.jobkit import GITHUB_TOKEN, job_overrides, stand_in_cli
from tests.support import REDIS_URL, TEST_KEY, RedisServer, run_sync

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from kilo_bridge.jobs.record import JobRecord

# Lambda-side libraries read these at import; tests never talk to AWS X-Ray or CloudWatch.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "KiloBridgeTests")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


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
            "settlement_spool_dir": str(tmp_path / "spool"),
        }
        values.update(overrides)
        return load_settings(**values)

    return build


# ------------------------------------------------------------------------------ the app on a real server


def bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_app(
    app: Any, sock: socket.socket | None = None, closing: Callable[[], Awaitable[object]] | None = None
) -> Iterator[str]:
    """Run an ASGI app under a real uvicorn on 127.0.0.1 in a thread; yield its base URL. `closing` runs once the
    server has stopped, on the loop that served (what the app opened on that loop is closed on it)."""
    sock = sock or bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1))

    def run() -> None:
        async def serve_then_close() -> None:
            await server.serve(sockets=[sock])
            if closing is not None:
                await closing()

        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:  # as uvicorn's run()
            runner.run(serve_then_close())

    thread = threading.Thread(target=run, daemon=True)
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
    `prefix` so servers (their workers and background writes) stop before the test's keys are removed.
    For what needs real sockets: event streams, disconnects, keep-alives, bodies streamed over a socket.
    `clock=` (epoch seconds, a callable) is the time admission decides budget periods and rate limits on."""
    from kilo_bridge.web.app import create_app

    stack: list[Any] = []

    def start(settings: Settings, clock: Callable[[], float] | None = None) -> str:
        sock = bound_socket()
        if settings.bridge_url is None:  # its jobs' agents call this server's /v1, as `make run`'s do
            settings = settings.replace(bridge_url=f"http://127.0.0.1:{sock.getsockname()[1]}")
        app = create_app(settings)
        if clock is not None:
            app.state.services.ledger.clock = clock
        cm = serve_app(app, sock)
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


@pytest.fixture
def http_client() -> Iterator[Callable[..., httpx.Client]]:
    """httpx clients of the test's own (`http_client(base_url=..., timeout=...)`), each closed when it ends."""
    made: list[httpx.Client] = []

    def make(**options: Any) -> httpx.Client:
        made.append(httpx.Client(**options))
        return made[-1]

    yield make
    for c in made:
        c.close()


# ------------------------------------------------------------------------------------ the app in process


@pytest.fixture
def make_app_client(prefix: str) -> Iterator[Callable[..., TestClient]]:
    """`make_app_client(settings, **kwargs)` → a Starlette TestClient on the app, its lifespan started (and
    ended after the test, before the test's keys are removed). No sockets: for request validation, error
    bodies and headers. Settings must not start the in-process job worker (jobs_concurrency=0)."""
    from starlette.testclient import TestClient

    from kilo_bridge.web.app import create_app

    clients: list[TestClient] = []

    def start(settings: Settings, **kwargs: Any) -> TestClient:
        if settings.job_queue == "local" and settings.jobs_concurrency > 0:
            raise ValueError("an in-process client is for requests only: build its settings with jobs_concurrency=0")
        # A loopback host, as a local client has: an open server answers no other name.
        kwargs.setdefault("base_url", "http://127.0.0.1")
        test_client = TestClient(create_app(settings), **kwargs)
        test_client.__enter__()
        clients.append(test_client)
        return test_client

    yield start
    for test_client in reversed(clients):
        test_client.__exit__(None, None, None)


@pytest.fixture
def app_client(make_app_client: Callable[..., TestClient], make_settings: Callable[..., Settings]) -> TestClient:
    """The app with the default test settings, in process."""
    return make_app_client(make_settings())


# ---------------------------------------------------------------------------- keys and jobs, made directly


@pytest.fixture
def store_settings(prefix: str) -> Settings:
    """Settings for reaching the test's own keys in Redis (what the factories below write with)."""
    return load_settings(redis_url=REDIS_URL, redis_prefix=prefix)


@pytest.fixture
def key_factory(store_settings: Settings) -> Callable[..., str]:
    """`key_factory(name="ci", budget_usd=…, rpm=…, tpm=…, max_jobs=…)` → the secret of a new API key, made
    through KeyStore in the test's prefix (pass `settings=` for another Redis). Usable from async tests."""
    from kilo_bridge.keys.store import KeyStore
    from kilo_bridge.platform.redis import Store

    def create(
        name: str = "ci",
        *,
        budget_usd: float | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        max_jobs: int | None = None,
        settings: Settings | None = None,
    ) -> str:
        async def make() -> str:
            store = Store(settings or store_settings)
            try:
                secret, _ = await KeyStore(store).create(
                    name, budget_usd=budget_usd, rpm=rpm, tpm=tpm, max_jobs=max_jobs
                )
                return secret
            finally:
                await store.close()

        return run_sync(make())

    return create


@pytest.fixture
def job_factory(store_settings: Settings) -> Callable[..., JobRecord]:
    """`job_factory(**fields)` → a JobRecord created through JobStore.create in the test's prefix: a queued
    `review` job with a fresh id unless fields say otherwise. `reserve_nusd`, `max_jobs`, `sealed_env`,
    `idempotency` go to JobStore.create; `settings=` for another Redis. Usable from async tests."""
    from kilo_bridge.jobs.record import JobRecord, new_job_id
    from kilo_bridge.jobs.store import JobStore
    from kilo_bridge.platform.clock import now_ms
    from kilo_bridge.platform.redis import Store

    def create(
        *,
        settings: Settings | None = None,
        sealed_env: str = "",
        idempotency: tuple[str, str] | None = None,
        max_jobs: int = 0,
        reserve_nusd: int = 0,
        **fields: Any,
    ) -> JobRecord:
        values: dict[str, Any] = {
            "id": new_job_id(),
            "status": "queued",
            "agent": "review",
            "repo_url": "/x",
            "timeout_ms": 60_000,
            "created_ms": now_ms(),
        }
        values.update(fields)
        record = JobRecord(**values)

        async def make() -> tuple[int, str]:
            store = Store(settings or store_settings)
            try:
                return await JobStore(store).create(
                    record, sealed_env, idempotency, max_jobs, reserve_nusd=reserve_nusd
                )
            finally:
                await store.close()

        code, value = run_sync(make())
        assert code == 0, f"JobStore.create refused the job: ({code}, {value})"
        return record

    return create


# ------------------------------------------------------------------------------------- other processes


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
def job_settings(
    make_settings: Callable[..., Settings], fake_github: FakeGitHub, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings for a server whose in-process worker runs jobs with the stand-in CLI (cli=None: the real one)."""
    work = tmp_path / "work"
    work.mkdir()
    cli = stand_in_cli(tmp_path)

    def build(real_cli: bool = False, **overrides: Any) -> Settings:
        values = job_overrides(work, fake_github.api_url, None if real_cli else cli)
        values.update(overrides)
        return make_settings(**values)

    return build


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """One moto server (AWS over real HTTP on loopback) for the session; each test makes its own resources."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
