"""Reconciliation under faults: every call the upstream billed is in the ledger, to the nano-dollar, and no
reservation is left open (`make bench-reconcile` → docs/benchmarks/reconcile.md).

A bounded mixed load (generate, generate-stream, /v1 chat plain and streamed, from several clients on three budgeted
keys) runs against a counting fake upstream while faults are applied for real: Redis (a server of this run's own,
with its append-only file) paused, then killed and restarted after a few seconds; clients hanging up mid-stream;
upstream 502s; and, with several web processes, one of them killed (SIGKILL). Then:

- billed == the keys' spend == the stats' spend == the credits' spend (nano-USD), where "billed" is the sum of the
  `usage.cost` the fake delivered (a usage chunk written to a live connection, or a plain answer sent);
- no reservation is open within 60 s of the load's end (how long it took is reported).

The test suite runs a smaller version (tests/integration/usage/test_reconcile.py).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for _path in (ROOT, ROOT / "layers"):  # run as a script: `tests.benchmarks` and this tree's kilo_bridge importable
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import httpx  # noqa: E402
import redis  # noqa: E402
from aiohttp import web  # noqa: E402

from tests.fakes.fake_gateway import FakeGatewayThread  # noqa: E402

ADMIN = "admin-key-not-real-0123456789"
PREFIX = "{kb}:"
COSTS_USD = ("0.000123457", "0.0021", "0.000045678", "0.0009871")  # exact in nano-USD
REPORT = ROOT / "docs" / "benchmarks" / "reconcile.md"


class CountingGateway(FakeGatewayThread):
    """The fake gateway, billing what it delivers: each call gets one of COSTS_USD as its `usage.cost` (a few in 20
    are refused with a 502, which bills nothing); the cost is counted once the answer, or a stream's usage chunk,
    was written to a connection still open."""

    def __init__(self, chunk_delay_ms: float = 50) -> None:
        super().__init__(chunks=4, chunk_delay_ms=chunk_delay_ms)
        self.billed_nusd = 0
        self.billed_calls = 0
        self.rng = random.Random(7)

    def _scenario(self, model: str) -> dict[str, Any]:
        if self.rng.random() < 0.05:
            return {"kind": "status", "status": 502}
        return {"kind": "ok", "cost": float(self.rng.choice(COSTS_USD))}

    def _bill(self, data: bytes) -> None:
        # The usage chunk: `"choices": []` with a usage that has a cost.
        if b'"choices": []' in data and b'"cost"' in data:
            import json

            cost = json.loads(data[len(b"data: ") :])["usage"]["cost"]
            self._add(cost)

    def _add(self, cost: float) -> None:
        from decimal import Decimal

        self.billed_nusd += int(Decimal(str(cost)) * 1_000_000_000)
        self.billed_calls += 1

    async def _open_sse(self, request: web.Request, sc: dict[str, Any]) -> web.StreamResponse:
        resp = await super()._open_sse(request, sc)
        write = resp.write

        async def counted(data: bytes | bytearray | memoryview) -> None:
            await write(data)
            self._bill(bytes(data))  # written: the connection was open

        resp.write = counted  # type: ignore[method-assign]
        return resp

    async def chat(self, request: web.Request) -> web.StreamResponse:
        resp = await super().chat(request)
        if isinstance(resp, web.Response) and resp.status == 200 and not resp.prepared:
            import json

            body = resp.body if isinstance(resp.body, bytes) else b"{}"  # the fake's answers are bytes
            cost = (json.loads(body or b"{}").get("usage") or {}).get("cost")
            await resp.prepare(request)
            await resp.write_eof()
            if cost is not None:
                self._add(cost)
        return resp


@dataclass
class Tally:
    answers: dict[str, int] = field(default_factory=dict)
    hung_up: int = 0

    def note(self, outcome: str) -> None:
        self.answers[outcome] = self.answers.get(outcome, 0) + 1


async def one_call(client: httpx.AsyncClient, url: str, key: str, rng: random.Random, tally: Tally) -> None:
    kind = rng.choice(("generate", "generate-stream", "v1", "v1-stream", "v1-stream"))
    headers = {"x-api-key": key}
    hang_up = kind.endswith("stream") and rng.random() < 0.15
    if kind.startswith("generate"):
        path, body = f"/api/kilo/{kind}", {"prompt": "count me", "model": "fake/model-a", "maxTokens": 50}
    else:
        body = {"model": "fake/model-a", "messages": [{"role": "user", "content": "count me"}], "max_tokens": 50}
        path, body["stream"] = "/v1/chat/completions", kind == "v1-stream"
    try:
        async with client.stream("POST", url + path, json=body, headers=headers) as resp:
            if hang_up and resp.status_code == 200:
                async for _ in resp.aiter_raw():
                    break  # the first bytes, then the client goes away
                tally.hung_up += 1
                tally.note("200 (hung up)")
                return
            await resp.aread()
            tally.note(str(resp.status_code))
        if resp.status_code == 503:
            await asyncio.sleep(0.25)  # a client backing off (Retry-After asks for more; the load stays bounded)
    except httpx.HTTPError as exc:
        tally.note(type(exc).__name__)


async def load(
    urls: list[str], keys: list[str], total: int, concurrency: int, tally: Tally, stop: threading.Event | None = None
) -> None:
    """At most `total` calls from `concurrency` clients, until `stop` is set (the faults are over)."""
    rng = random.Random(11)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)

    async def client_loop(n: int) -> None:
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            while stop is None or not stop.is_set():
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await one_call(client, urls[i % len(urls)], keys[(i + n) % len(keys)], rng, tally)

    await asyncio.gather(*(client_loop(n) for n in range(concurrency)))


@dataclass
class Figures:
    billed_nusd: int
    billed_calls: int
    key_spend_nusd: int
    stats_spend_nusd: int
    credits_spend_nusd: int
    open_reservations_at_end: int
    released_after_s: float
    answers: dict[str, int]
    hung_up: int
    faults: list[str]
    seconds: float

    @property
    def exact(self) -> bool:
        return self.billed_nusd == self.key_spend_nusd == self.stats_spend_nusd == self.credits_spend_nusd

    @property
    def cut(self) -> int:
        """Calls whose connection died with the killed web process."""
        return sum(v for k, v in self.answers.items() if not k[0].isdigit())

    @property
    def accounted(self) -> bool:
        """Exact, or short only by calls that died with the killed process (at most the dearest cost each)."""
        agreed = self.key_spend_nusd == self.stats_spend_nusd == self.credits_spend_nusd
        gap = self.billed_nusd - self.key_spend_nusd
        dearest = max(int(Decimal(c) * 1_000_000_000) for c in COSTS_USD)
        return agreed and (gap == 0 or 0 < gap <= self.cut * dearest)


def ledger_figures(r: redis.Redis, keys: list[str]) -> tuple[int, int, int, int]:
    """(keys' spend, stats' spend, credits' spend, reservations open) in nano-USD."""
    from kilo_bridge.keys.store import digest

    spend = reserved = 0
    for key in keys:
        s, res = r.hmget(f"{PREFIX}apikey:{digest(key)}", "spend_nusd", "reserved_nusd")
        spend, reserved = spend + int(s or 0), reserved + int(res or 0)
    stats = int(r.hget(f"{PREFIX}stats", "spend_nusd") or 0)
    credits = int(r.hget(f"{PREFIX}credits", "spent_since_nusd") or 0)
    return spend, stats, credits, reserved


def settle_and_count(
    r: redis.Redis, fake: CountingGateway, keys: list[str], wait_s: float = 60.0, exact: bool = True
) -> tuple[Any, float]:
    """Wait (at most `wait_s`) until no reservation is open and the ledger agrees with itself (and, if `exact`, has
    everything the fake billed); returns the figures and how long the reservations took to be released."""
    start = time.monotonic()
    released_after: float | None = None
    while True:
        try:
            spend, stats, credits, reserved = ledger_figures(r, keys)
        except redis.RedisError:
            spend = stats = credits = reserved = -1
        if reserved == 0 and released_after is None:
            released_after = time.monotonic() - start
        agreed = spend == stats == credits and (spend == fake.billed_nusd or not exact)
        if (agreed and reserved == 0) or time.monotonic() - start > wait_s:
            took = time.monotonic() - start if released_after is None else released_after
            return (spend, stats, credits, reserved), took
        time.sleep(0.1)


def make_keys(url: str, n: int = 3) -> list[str]:
    keys = []
    for i in range(n):
        resp = httpx.post(
            url + "/api/kilo/admin/keys",
            json={"name": f"reconcile-{i}", "budgetUsd": 50},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        resp.raise_for_status()
        keys.append(resp.json()["key"])
    return keys


def faults_during(
    run_load: Callable[[threading.Event], None],
    pause: Callable[[], None],
    resume: Callable[[], None],
    kill: Callable[[], None],
    restart: Callable[[], None],
    more: list[tuple[str, Callable[[], None]]],
    outage_s: float = 6.0,
) -> list[str]:
    """Run the load in a thread while the faults are applied, one after the other, and a second more; returns what
    was done."""
    done: list[str] = []
    stop = threading.Event()
    worker = threading.Thread(target=run_load, args=(stop,))
    worker.start()
    time.sleep(1.0)
    pause()
    time.sleep(1.5)
    resume()
    done.append("Redis paused (SIGSTOP) 1.5 s")
    time.sleep(1.0)
    kill()
    time.sleep(outage_s)
    restart()
    done.append(f"Redis killed (SIGKILL) and restarted {outage_s:g} s later")
    for name, act in more:
        time.sleep(1.0)
        act()
        done.append(name)
    time.sleep(1.0)
    stop.set()
    worker.join()
    return done


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(") ", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, default=2, help="web processes of `kilo-bridge serve` (2+: one is killed)"
    )
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()

    from kilo_bridge.config import load_settings, settings_env
    from tests.support import RedisServer, free_port, wait_http

    tmp = Path(tempfile.mkdtemp(prefix="reconcile-"))
    server = RedisServer(tmp)
    server.extra = ["--appendonly", "yes", "--appendfsync", "always"]
    server.start()
    with CountingGateway() as fake:
        port = free_port()
        settings = load_settings(
            kilo_api_key="test-key-not-real-0123456789",
            kilo_gateway_base=f"{fake.url}/api/gateway",
            redis_url=server.url,
            redis_prefix=PREFIX,
            redis_timeout_ms=500,
            auth_required=True,
            admin_api_key=ADMIN,
            port=port,
            web_concurrency=args.workers,
            jobs_concurrency=0,
            reservation_owner_timeout_s=6,
            settlement_spool_dir=str(tmp / "spool"),
            artifacts_dir=str(tmp / "artifacts"),
            job_secrets_key_file=str(tmp / "job-secrets.key"),
        )
        env = {**os.environ, **settings_env(settings), "PYTHONPATH": os.pathsep.join([str(ROOT / "layers"), str(ROOT)])}
        proc = subprocess.Popen(
            [sys.executable, "-m", "kilo_bridge", "serve"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url + "/healthz", proc, timeout=60)
            keys = make_keys(url)
            tally = Tally()
            started = time.monotonic()

            def kill_worker() -> None:
                workers = [p for p in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
                print(f"reconcile: killing web process {workers[:1]} of {workers}", flush=True)
                if workers:
                    os.kill(workers[0], signal.SIGKILL)

            more = [("a web process killed (SIGKILL) mid-load", kill_worker)] if args.workers > 1 else []
            assert server.proc is not None
            faults = faults_during(
                lambda stop: asyncio.run(load([url], keys, args.requests, args.clients, tally, stop)),
                server.pause,
                server.resume,
                server.stop,
                server.start,
                more,
            )
            seconds = time.monotonic() - started
            r = redis.Redis.from_url(server.url)
            # A killed web process takes the usage of its calls in flight with it (the upstream billed them): the
            # ledger then agrees with itself, short of what those calls cost.
            (spend, stats, credits, reserved), released_after = settle_and_count(r, fake, keys, exact=args.workers == 1)
            if reserved:  # what is still held, and by which process, for the report's reader
                for k in r.scan_iter(match=f"{PREFIX}held:*"):
                    print("reconcile: still held", k, r.type(k), flush=True)
                    print("   ", r.zrange(k, 0, -1, withscores=True) if r.type(k) == b"zset" else r.hgetall(k))
                print("reconcile: owners", r.zrange(f"{PREFIX}owners", 0, -1, withscores=True), time.time())
                for k in r.scan_iter(match=f"{PREFIX}inflight:*"):
                    print("reconcile:", k, r.zrange(k, 0, -1, withscores=True), flush=True)
            figures = Figures(
                fake.billed_nusd,
                fake.billed_calls,
                spend,
                stats,
                credits,
                reserved,
                released_after,
                dict(sorted(tally.answers.items())),
                tally.hung_up,
                faults,
                seconds,
            )
            r.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            server.stop()
    write_report(args, figures)
    print(args.report.read_text())
    return 0 if figures.accounted and figures.open_reservations_at_end == 0 else 1


def write_report(args: argparse.Namespace, f: Figures) -> None:
    def usd(nusd: int) -> str:
        return f"${nusd / 1e9:.9f} ({nusd:,} nano-USD)"

    if f.exact:
        verdict = "exact"
    elif f.accounted:
        gap = usd(f.billed_nusd - f.key_spend_nusd)
        verdict = (
            f"exact but for the {f.cut} calls that died with the killed web process ({gap}): "
            "the upstream billed them, and their usage was in that process's memory"
        )
    else:
        verdict = "MISMATCH"
    lines = [
        "# Reconciliation under faults",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores, shared), "
        f"by `make bench-reconcile` (tests/benchmarks/reconcile.py): {args.requests} requests from {args.clients} "
        f"clients on 3 budgeted keys against `kilo-bridge serve` with {args.workers} web process(es), in "
        f"{f.seconds:.1f} s.",
        "",
        "Faults applied: " + "; ".join(f.faults) + f"; {f.hung_up} clients hung up mid-stream; the upstream answered "
        "502 to ~5% of calls.",
        "",
        "| | |",
        "|---|---|",
        f"| billed by the upstream ({f.billed_calls} calls) | {usd(f.billed_nusd)} |",
        f"| the keys' spend | {usd(f.key_spend_nusd)} |",
        f"| the stats' spend | {usd(f.stats_spend_nusd)} |",
        f"| the credits' spend | {usd(f.credits_spend_nusd)} |",
        f"| verdict | **{verdict}** |",
        f"| reservations open at the end | {f.open_reservations_at_end} nano-USD; the last released "
        f"{f.released_after_s:.1f} s after the load ended (RESERVATION_OWNER_TIMEOUT_S=6) |",
        "",
        "Answers the clients got: " + ", ".join(f"{k}: {v}" for k, v in f.answers.items()) + ".",
        "",
        "503s are the admissions refused while Redis was paused or down (fail closed: the upstream was never called);",
        "settlements Redis refused went to the spool (SETTLEMENT_SPOOL_DIR) and were replayed when it came back.",
        "",
    ]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
