"""`kilo-bridge` command: `serve` runs the local server (the embedded default, port 5000: one web process
per core and one job-worker process); `worker` runs agent jobs without the server; `keys` creates, lists and revokes API
keys directly in Redis; `jobs`, `profiles` and `generate` are a client of a running server (over HTTP)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the settings (pydantic) load only for the server-side commands: the client starts faster
    from kilo_bridge.config import Settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def raise_fd_limit() -> tuple[int, int]:
    """The soft open-file limit raised to the hard one (inherited by the web and job-worker processes): a
    default of 1,024 is spent by ~500 streams. Returns (soft, hard) as they are now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # keep what we have; MAX_CONCURRENT_REQUESTS's default follows the limit in force
    return soft, hard


def _serve(args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    raise_fd_limit()

    overrides: dict[str, object] = {"port": args.port} if args.port else {}
    if args.host not in LOOPBACK and os.getenv("AUTH_REQUIRED") is None:
        overrides["auth_required"] = True  # reachable from elsewhere: never open by default
    settings = _settings(**overrides)
    if settings is None:
        return 2
    # The web workers are processes of their own that read their settings from the environment.
    os.environ["PORT"] = str(settings.port)
    if "auth_required" in overrides:
        os.environ["AUTH_REQUIRED"] = "true"
    workers = settings.server_workers
    busy = _port_in_use(args.host, settings.port)
    if busy:  # said before anything claims to listen
        print(f"kilo-bridge: {busy}", file=sys.stderr, flush=True)
        return 2
    if settings.prometheus_enabled:
        _metrics_dir(settings.port)
    key = (
        "configured"
        if settings.api_key or settings.kilo_api_key_secret_arn
        else "NOT SET (generation and agent runs answer 503 until KILO_API_KEY is set)"
    )
    print(
        f"kilo-bridge: listening on http://{args.host}:{settings.port}  workers={workers}  "
        f"gateway={settings.kilo_gateway_base}  KILO_API_KEY {key}",
        flush=True,
    )
    for line in _start_checks(settings, args.host):
        print(f"kilo-bridge: {line}", flush=True)
    job_worker = None
    if settings.job_queue == "local" and settings.jobs_concurrency:
        from kilo_bridge.jobs.process import WorkerProcess

        job_worker = WorkerProcess(settings)
        job_worker.start()
    if not settings.auth_is_required:
        print(
            "kilo-bridge: OPEN MODE: no API key is required (fine on 127.0.0.1; set AUTH_REQUIRED=true and "
            "create keys with `kilo-bridge keys create` before exposing it)",
            flush=True,
        )
    from kilo_bridge.web.server import protocol_options

    # uvicorn handles SIGTERM (a graceful stop), then re-raises it with the handler found here: this one
    # returns, so the job worker below is stopped with its grace rather than the process dying at once.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.run(
                "kilo_bridge.web.app:create_web_app",
                factory=True,
                workers=workers,
                **protocol_options(),  # a head-size cap and head/body read deadlines (web/server.py)
                host=args.host,
                port=settings.port,
                access_log=args.access_log,
                # uvicorn logs requests at INFO: at "warning" --access-log printed nothing.
                log_level="info" if args.access_log else "warning",
                timeout_graceful_shutdown=5,
            )
    finally:
        if job_worker is not None:
            job_worker.stop()
    return 0


def _metrics_dir(port: int) -> None:
    """Where the web processes keep their Prometheus figures for `GET /metrics` to sum (web/prometheus.py): set
    before the workers start (they inherit it), emptied at each start as prometheus_client's multiprocess mode
    requires (a previous run's files would be counted again)."""
    path = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or Path(".run") / f"metrics-{port}").resolve()
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def _worker(args: argparse.Namespace) -> int:
    import asyncio

    settings = _settings()
    if settings is None:
        return 2
    if settings.job_queue != "local":
        print("kilo-bridge: JOB_QUEUE=sqs: jobs run as ECS tasks, not in a local worker", file=sys.stderr)
        return 2
    concurrency = args.concurrency or max(1, settings.jobs_concurrency)
    from kilo_bridge.config import ConfigError, check_sandbox_concurrency

    try:
        check_sandbox_concurrency(settings.agent_sandbox, concurrency)
    except ConfigError as exc:
        print(f"kilo-bridge: {exc}", file=sys.stderr)
        return 2
    print(
        f"kilo-bridge: worker on redis={_safe_url(settings.resolved_redis_url)} concurrency={concurrency}", flush=True
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_work(settings, concurrency))
    return 0


async def _work(settings: Settings, concurrency: int) -> None:
    """`kilo-bridge worker`: work until SIGINT or SIGTERM (what `docker stop` and systemd send), then stop as
    `LocalWorker.close` says."""
    import asyncio
    import signal

    from kilo_bridge.services import local_workers

    async with local_workers(settings, concurrency):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def _keys(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from kilo_bridge.audit.store import AuditEntry, AuditLog
    from kilo_bridge.errors import BridgeError
    from kilo_bridge.keys.store import KeyStore
    from kilo_bridge.platform.redis import Store

    settings = _settings()
    if settings is None:
        return 2

    async def run() -> object:
        store = Store(settings)
        try:
            keys = KeyStore(store)
            audit = AuditLog(store, settings.audit_retention_days)
            fields = tuple(
                sorted(k for k, v in vars(args).items() if v is not None and k not in ("func", "action", "command"))
            )
            if args.action == "create":
                secret, info = await keys.create(
                    args.name,
                    budget_usd=args.budget_usd,
                    budget_period=args.budget_period,
                    models=args.models,
                    rpm=args.rpm,
                    tpm=args.tpm,
                    max_jobs=args.max_jobs,
                    team=args.team,
                )
                await audit.append(AuditEntry("cli", "key.create", info.id, fields, "local"))
                return {"key": secret, **info.model_dump(by_alias=True)}
            if args.action == "revoke":
                # Its schedules are disabled with it: the same path as the admin route's.
                from kilo_bridge.services import Services

                services = Services.build(settings)
                try:
                    revoked = await services.revoke_key(args.id)
                finally:
                    await services.close()
                await audit.append(AuditEntry("cli", "key.revoke", revoked.id, (), "local"))
                return revoked.model_dump(by_alias=True)
            return [k.model_dump(by_alias=True) for k in await keys.list()]
        finally:
            await store.close()

    try:
        result = asyncio.run(run())
    except BridgeError as exc:
        print(f"kilo-bridge: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    if args.action == "create":
        print("kilo-bridge: store the key now; it is not shown again", file=sys.stderr)
    return 0


def _settings(**overrides: object) -> Settings | None:
    """The settings, or None after saying which variable is wrong."""
    from kilo_bridge.config import ConfigError, load_settings

    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        print(f"kilo-bridge: {exc}", file=sys.stderr)
        return None


def _port_in_use(host: str, port: int) -> str | None:
    """Why the server cannot listen on host:port (in use, not allowed), naming how to pick another; None: free."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is in use (another kilo-bridge or program listens there): stop it, "
                    f"or choose another port, e.g. PORT={port + 1} make run"
                )
            return f"cannot listen on {host}:{port}: {exc.strerror}; choose another with PORT=… or HOST=…"
    return None


def _start_checks(settings: Settings, host: str) -> list[str]:
    """The start banner's checks: where the console is, whether Redis answers, and the agents' sandbox."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    lines = [f"console  http://{shown}:{settings.port}/"]
    redis_url = _safe_url(settings.resolved_redis_url)
    problem = _redis_problem(settings)
    if problem is None:
        lines.append(f"redis    {redis_url} answers (REDIS_URL chooses another)")
    else:
        lines.append(
            f"redis    {redis_url} DOES NOT ANSWER ({problem}): every request will answer 503 until it does; "
            "start one (`make redis`) or point REDIS_URL at yours"
        )
    if settings.job_queue == "local" and settings.jobs_concurrency:
        lines.append(f"jobs     run here, {settings.jobs_concurrency} at a time (JOBS_CONCURRENCY)")
        lines.append("sandbox  " + _sandbox_line(settings))
    elif settings.job_queue == "local":
        lines.append("jobs     JOBS_CONCURRENCY=0: none run here; start `make worker` beside it")
    return lines


def _redis_problem(settings: Settings) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(settings.resolved_redis_url, socket_timeout=1, socket_connect_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except redis.AuthenticationError:
        return None  # it answers; the password is the next thing a request will say
    except redis.RedisError as exc:
        return str(exc).splitlines()[0][:200] or type(exc).__name__
    return None


def _sandbox_line(settings: Settings) -> str:
    """The agents' OS sandbox as the runner will find it (agent_task/sandbox.py), checked now, before any job."""
    import shutil

    mode = settings.agent_sandbox
    if mode == "none":
        return "NONE (AGENT_SANDBOX=none): agents run unsandboxed; trusted repositories only"
    if mode == "user":
        return f"the agent runs as its own user {settings.agent_user} (AGENT_SANDBOX=user; the runner needs root)"
    bwrap = shutil.which("bwrap")
    why: str | None = "bubblewrap is not installed"
    if bwrap:
        try:
            from agent_task.sandbox import bwrap_problem
        except ImportError:  # started outside the checkout: the runner's own check will speak at the first job
            why = None
        else:
            why = bwrap_problem(bwrap)
    if why is None:
        return f"bubblewrap (AGENT_SANDBOX={mode}): agent jobs run sandboxed"
    return (
        f"NOT WORKING: {why}. Agent jobs will fail (sandbox_unavailable) until it works: install it "
        "(`sudo apt-get install -y bubblewrap`), or set AGENT_SANDBOX=none for trusted repositories only"
    )


def _safe_url(url: str) -> str:
    """A Redis URL without its password, for display."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _client_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], argv: list[str] | None) -> None:
    """The HTTP client's subcommands; its module is imported only when one of them (or help) is asked for."""
    words = sys.argv[1:] if argv is None else argv
    if not words or words[0] in ("jobs", "profiles", "triggers", "schedules", "generate", "me", "-h", "--help"):
        from kilo_bridge.client.commands import add_parsers

        add_parsers(sub)
    else:
        sub.add_parser("jobs", help="agent jobs on a server (over HTTP)")
        sub.add_parser("profiles", help="saved job variables on a server (over HTTP)")
        sub.add_parser("triggers", help="webhook triggers on a server (over HTTP)")
        sub.add_parser("schedules", help="scheduled agent runs on a server (over HTTP)")
        sub.add_parser("generate", help="generate text on a server, streamed")
        sub.add_parser("me", help="your key's limits, budget and usage on a server")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kilo-bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server (uvicorn)")
    serve.add_argument("--host", default=os.getenv("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=None, help="default: $PORT or 5000")
    serve.add_argument("--access-log", action="store_true", help="log every request (uvicorn access log)")
    serve.set_defaults(func=_serve)
    worker = sub.add_parser("worker", help="run agent jobs from the local queue (without the HTTP server)")
    worker.add_argument("--concurrency", type=int, default=None, help="jobs at once (default: JOBS_CONCURRENCY)")
    worker.set_defaults(func=_worker)
    keys = sub.add_parser("keys", help="manage API keys (stored hashed in Redis)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key; prints the secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--budget-usd", type=float, default=None, help="hard spend budget in USD")
    create.add_argument("--budget-period", choices=("day", "week", "month"), help="the budget resets (00:00 UTC)")
    create.add_argument("--model", action="append", dest="models", help="a model it may use (id or provider/*)")
    create.add_argument("--team", help="the team whose budget it also spends (PUT /api/kilo/admin/teams/NAME)")
    create.add_argument("--rpm", type=int, default=None, help="requests per minute")
    create.add_argument("--tpm", type=int, default=None, help="tokens per minute")
    create.add_argument("--max-jobs", type=int, default=None, help="concurrent agent jobs")
    actions.add_parser("list", help="list keys with their usage")
    revoke = actions.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    keys.set_defaults(func=_keys)
    _client_parsers(sub, argv)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
