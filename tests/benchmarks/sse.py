"""`make bench-sse` (part of `make bench`): our `EventStream` (kilo_bridge.web.sse) against Starlette's own
`StreamingResponse` on the relay path, side by side in one run.

A tiny Starlette app (`create_app` below, no middleware) on a real uvicorn (one worker on 127.0.0.1, uvloop and
httptools, as `make run` serves) streams the same events four ways: through `EventStream`, or through a
`StreamingResponse` of the bytes `kilo_bridge.web.sse.encode` makes of them (the same encoding, the same
headers); each once batched as the relay sends them (the events of one upstream read in one write) and once one
event per write. Every write follows one turn of the event loop, where the relay would await its upstream read.

One asyncio load generator (keep-alive HTTP/1.1, `timed_request` of tests/benchmarks/_load.py) at 1 and 16
clients; each connection warms up first. Every round runs each variant at each point, with the order of the two
responses alternating, so the machine's noise is shared out; a run of one point stops at BENCH_SECONDS or after
BENCH_SSE_MAX_REQUESTS streams, whichever comes first. Loopback only; about a minute. Before timing, each route's
body is checked to be byte-identical to the other's. Writes docs/benchmarks/sse.md (raw numbers in
.bench/sse-results.json) and prints the ratios.

Env: BENCH_SECONDS (per point and round, default 1.2), BENCH_SSE_ROUNDS (5), BENCH_SSE_EVENTS (50),
BENCH_SSE_BATCH (events per write when batched, 10), BENCH_SSE_MAX_REQUESTS (per point and round, 20000).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for _path in (ROOT, ROOT / "layers"):  # run as a script: `tests.benchmarks` and this tree's kilo_bridge importable
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from tests.benchmarks._load import Server, free_port, timed_request  # noqa: E402

DURATION_S = float(os.getenv("BENCH_SECONDS", "1.2"))
ROUNDS = int(os.getenv("BENCH_SSE_ROUNDS", "5"))
EVENTS = int(os.getenv("BENCH_SSE_EVENTS", "50"))
BATCH = int(os.getenv("BENCH_SSE_BATCH", "10"))
MAX_REQUESTS = int(os.getenv("BENCH_SSE_MAX_REQUESTS", "20000"))
CONCURRENCY = (1, 16)
WARMUP, WARMUP_S = 20, 0.5
KINDS = {"eventstream": "EventStream", "streaming": "StreamingResponse"}
SHAPES = {"batched": f"batched ({BATCH} events per write)", "single": "one event per write"}
TEXT_CHARS = 68  # with `event: delta` and the JSON around it, each encoded event is 100 bytes
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
KEEPALIVE_S = 15.0  # SSE_KEEPALIVE_S's default; never reached by a stream this short
DOCS = ROOT / "docs" / "benchmarks"
RESULTS = ROOT / ".bench" / "sse-results.json"


def make_events(n: int = EVENTS) -> list[dict[str, str]]:
    """`delta` events as /api/kilo/generate-stream sends them, each 100 bytes once encoded."""
    return [
        {"event": "delta", "data": json.dumps({"text": f"{i:05d} ".ljust(TEXT_CHARS, "x")}, separators=(",", ":"))}
        for i in range(n)
    ]


async def relayed(events: list[dict[str, str]], batch: int) -> AsyncIterator[Any]:
    """What the relay hands the response: a list per upstream read when batched, else one event at a time."""
    for i in range(0, len(events), batch):
        await asyncio.sleep(0)  # where the relay awaits its upstream read
        yield events[i : i + batch] if batch > 1 else events[i]


def create_app() -> Any:
    """The server side (uvicorn --factory tests.benchmarks.sse:create_app): GET /{eventstream|streaming}/{shape}."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    from kilo_bridge.web.sse import EventStream, encode

    events = make_events()

    async def encoded(items: AsyncIterator[Mapping[str, str] | Sequence[Mapping[str, str]]]) -> AsyncIterator[bytes]:
        # Exactly what EventStream does per item, so both responses do the same encoding work.
        async for item in items:
            yield encode(item) if isinstance(item, Mapping) else b"".join(encode(e) for e in item)

    def route(kind: str, batch: int) -> Any:
        async def endpoint(_request: Request) -> Response:
            if kind == "eventstream":
                return EventStream(relayed(events, batch), KEEPALIVE_S, HEADERS)
            return StreamingResponse(encoded(relayed(events, batch)), headers=HEADERS, media_type="text/event-stream")

        return endpoint

    async def spec(request: Request) -> Response:  # which path StreamingResponse takes depends on it
        return PlainTextResponse(str(request.scope.get("asgi", {}).get("spec_version", "2.0")))

    batches = {"batched": BATCH, "single": 1}
    routes = [
        Route(f"/{kind}/{shape}", route(kind, batches[shape]), methods=["GET"]) for kind in KINDS for shape in SHAPES
    ]
    return Starlette(routes=[*routes, Route("/spec", spec, methods=["GET"])])


def _get(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


async def _fetch(port: int, path: str) -> tuple[bytes, bytes]:
    """(response head, de-chunked body) of one request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_get(port, path))
        head = await reader.readuntil(b"\r\n\r\n")
        if length := re.search(rb"(?i)content-length: *(\d+)", head):
            return head, await reader.readexactly(int(length.group(1)))
        body = b""
        while size := int((await reader.readline()).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readline()
        return head, body
    finally:
        writer.close()


def check_same_bodies(port: int) -> int:
    """Every route sends the same bytes and content type; returns the body's size."""
    from kilo_bridge.web.sse import encode

    expected = b"".join(encode(e) for e in make_events())
    for kind in KINDS:
        for shape in SHAPES:
            head, body = asyncio.run(_fetch(port, f"/{kind}/{shape}"))
            if not head.startswith(b"HTTP/1.1 200") or b"content-type: text/event-stream" not in head.lower():
                raise RuntimeError(f"/{kind}/{shape} answered {head[:200]!r}")
            if body != expected:
                raise RuntimeError(f"/{kind}/{shape} sent {len(body)} bytes that differ from the expected stream")
    return len(expected)


async def point(port: int, path: str, clients: int) -> dict[str, Any]:
    """`clients` keep-alive connections, warmed up, then streaming back to back until the time or count bound."""
    req = _get(port, path)
    totals: list[float] = []
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]

    async def warm(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        until = time.perf_counter() + WARMUP_S
        for _ in range(WARMUP):
            await timed_request(reader, writer, req)
            if time.perf_counter() > until:
                break

    await asyncio.gather(*(warm(r, w) for r, w in conns))
    started = 0
    began = time.perf_counter()
    deadline = began + DURATION_S

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal started
        try:
            while time.perf_counter() < deadline and started < MAX_REQUESTS:
                started += 1
                _first, total, _gap = await timed_request(reader, writer, req)
                totals.append(total)
        finally:
            writer.close()

    await asyncio.gather(*(worker(r, w) for r, w in conns))
    return {"n": len(totals), "elapsed": time.perf_counter() - began, "total": totals}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ("starlette", "uvicorn", "uvloop", "httptools"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def measure(port: int) -> list[dict[str, Any]]:
    samples: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for rnd in range(ROUNDS):
        for clients in CONCURRENCY:
            for shape in SHAPES:
                kinds = list(KINDS) if rnd % 2 == 0 else list(reversed(KINDS))
                for kind in kinds:
                    r = asyncio.run(point(port, f"/{kind}/{shape}", clients))
                    samples.setdefault((kind, shape, clients), []).append(r)
                    print(
                        f"round {rnd + 1}/{ROUNDS}  c={clients:<3} {shape:8} {KINDS[kind]:18} "
                        f"{r['n'] / r['elapsed']:8.0f} streams/s  p50 {_pct(r['total'], 0.5):6.3f} ms",
                        flush=True,
                    )
    rows = []
    for (kind, shape, clients), runs in samples.items():
        total = [t for r in runs for t in r["total"]]
        per_round = [r["n"] / r["elapsed"] for r in runs]
        rps = sum(r["n"] for r in runs) / sum(r["elapsed"] for r in runs)
        rows.append(
            {
                "kind": kind,
                "shape": shape,
                "clients": clients,
                "n": len(total),
                "rps": rps,
                "rps_per_round": per_round,
                "spread": (max(per_round) - min(per_round)) / statistics.mean(per_round),
                "p50": _pct(total, 0.5),
                "p99": _pct(total, 0.99),
            }
        )
    rows.sort(key=lambda r: (list(SHAPES).index(r["shape"]), r["clients"], list(KINDS).index(r["kind"])))
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """EventStream ÷ StreamingResponse per shape and client count."""
    by = {(r["kind"], r["shape"], r["clients"]): r for r in rows}
    out = []
    for shape in SHAPES:
        for clients in CONCURRENCY:
            ours, theirs = by[("eventstream", shape, clients)], by[("streaming", shape, clients)]
            # The two ran back to back in every round: in how many rounds did EventStream serve more?
            ahead = sum(a > b for a, b in zip(ours["rps_per_round"], theirs["rps_per_round"], strict=True))
            out.append(
                {
                    "shape": shape,
                    "clients": clients,
                    "rps": ours["rps"] / theirs["rps"],
                    "p50": ours["p50"] / theirs["p50"],
                    "p99": ours["p99"] / theirs["p99"],
                    "rounds_ahead": ahead,
                    "rounds": len(ours["rps_per_round"]),
                }
            )
    return out


def main() -> int:
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "layers"), str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    server = Server(
        "sse bench app",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tests.benchmarks.sse:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env,
        port,
    ).start()
    try:
        server.wait_ready(_get(port, "/eventstream/batched"), timeout_s=30)
        body_bytes = check_same_bodies(port)
        spec_version = asyncio.run(_fetch(port, "/spec"))[1].decode()
        rows = measure(port)
    finally:
        server.stop()
    res: dict[str, Any] = {
        "when": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "platform": platform.platform(),
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": _versions(),
        "asgi_spec": spec_version,
        "events": EVENTS,
        "batch": BATCH,
        "body_bytes": body_bytes,
        "seconds": DURATION_S,
        "rounds": ROUNDS,
        "max_requests": MAX_REQUESTS,
        "rows": rows,
        "ratios": ratios(rows),
        "loadavg": [load_before, os.getloadavg()[0]],
        "wall_s": time.monotonic() - began,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=1))
    write_report(res)
    print("\nEventStream ÷ StreamingResponse (req/s above 1: EventStream serves more; p50/p99 below 1: it is faster)")
    for r in res["ratios"]:
        print(
            f"  {SHAPES[r['shape']]:30} c={r['clients']:<3} req/s {r['rps']:.2f}x  p50 {r['p50']:.2f}x  "
            f"p99 {r['p99']:.2f}x  (ahead in {r['rounds_ahead']} of {r['rounds']} rounds)"
        )
    print(f"done in {res['wall_s']:.0f} s")
    return 0


def _verdict(res: dict[str, Any]) -> str:
    wins = sum(1 for r in res["ratios"] if r["rps"] > 1)
    total = len(res["ratios"])
    if wins == total:
        return f"`EventStream` served more streams per second than `StreamingResponse` at all {total} points"
    if wins == 0:
        return f"`StreamingResponse` served more streams per second than `EventStream` at all {total} points"
    return f"`EventStream` served more streams per second at {wins} of {total} points, `StreamingResponse` at the rest"


def _below_2_4(version: str) -> bool:
    return tuple(int(x) for x in version.split(".")[:2]) < (2, 4)


def write_report(res: dict[str, Any]) -> None:
    v = res["versions"]
    lines = [
        "# Server-sent events: our `EventStream` against Starlette's `StreamingResponse`",
        "",
        f"Measured {res['when']} by `make bench-sse` (`tests/benchmarks/sse.py`) on {res['cpu']}, "
        f"{res['cores']} cores, {res['platform']}, Python {res['python']}; Starlette {v['starlette']}, uvicorn "
        f"{v['uvicorn']} (uvloop {v['uvloop']}, httptools {v['httptools']}). The machine's {res['cores']} cores "
        f"are shared with other work (1-minute load average {res['loadavg'][0]:.1f} before and "
        f"{res['loadavg'][1]:.1f} after the run), and the load generator shares them with the server: absolute "
        "numbers are pessimistic and move between runs; the ratios of one run are the comparison.",
        "",
        "What was measured: one uvicorn worker on 127.0.0.1 serving a tiny Starlette app (no middleware) whose "
        f"routes stream the same {res['events']} `delta` events ({res['body_bytes']} bytes, "
        f"{res['body_bytes'] // res['events']} per event), either through `EventStream` (`kilo_bridge.web.sse`, "
        "what the streaming routes use) or through Starlette's `StreamingResponse` of the bytes "
        "`kilo_bridge.web.sse.encode` makes of them (the same encoding, the same headers; the bodies were checked "
        f"byte-identical before timing). *Batched* sends {res['batch']} events per write, as the relay sends the "
        "events of one upstream read together; *one event per write* is the relay's worst case. Each write "
        "follows one turn of the event loop, where the relay awaits its upstream read. One asyncio client, "
        "keep-alive HTTP/1.1, 1 or 16 connections streaming back to back; per point and round "
        f"{res['seconds']:g} s or {res['max_requests']} streams, whichever came first, after a warm-up; "
        f"{res['rounds']} interleaved rounds, the order of the two responses alternating. req/s is whole streams "
        "per second (pooled over the rounds; spread = (max - min) / mean of the per-round req/s); p50/p99 are of "
        f"the whole-stream time (request sent to last byte). Result: {_verdict(res)}.",
        "",
        "| write shape | clients | response | streams | req/s | spread | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {SHAPES[r['shape']]} | {r['clients']} | `{KINDS[r['kind']]}` | {r['n']} | {r['rps']:.0f} | "
            f"{r['spread']:.0%} | {r['p50']:.3f} | {r['p99']:.3f} |"
        )
    lines += [
        "",
        "## Ratios: `EventStream` ÷ `StreamingResponse`",
        "",
        "req/s above 1: `EventStream` serves more streams; p50 / p99 below 1: its streams finish sooner. The last "
        "column counts the rounds in which `EventStream` served more streams per second than the "
        "`StreamingResponse` run right before or after it (a measure of how much the machine's noise decides).",
        "",
        "| write shape | clients | req/s | p50 | p99 | rounds `EventStream` ahead |",
        "|---|---|---|---|---|---|",
        *(
            f"| {SHAPES[r['shape']]} | {r['clients']} | {r['rps']:.2f} | {r['p50']:.2f} | {r['p99']:.2f} | "
            f"{r['rounds_ahead']} of {r['rounds']} |"
            for r in res["ratios"]
        ),
        "",
        "## Reading it",
        "",
        f"- uvicorn declared ASGI spec {res['asgi_spec']} to the app: "
        + (
            "below 2.4, Starlette's `StreamingResponse` runs its body in an anyio task group beside a task that "
            "waits for the client's disconnect. "
            if _below_2_4(res["asgi_spec"])
            else "from 2.4 on, Starlette's `StreamingResponse` sends its body directly, without a disconnect listener. "
        )
        + "`EventStream` runs plain asyncio tasks: the relay, a disconnect watcher and a keep-alive timer "
        "(`: keep-alive` after `SSE_KEEPALIVE_S` of silence, which `StreamingResponse` has no equivalent of: "
        "replacing it would need one). Both send one ASGI message per item.",
        "- `EventStream` also closes the event iterator when the client hangs up, so the relay's cleanup (usage "
        "recorded, upstream dropped) runs at once; that path is not timed here (no client hangs up).",
        "",
        "## Rerun",
        "",
        "```sh",
        "make bench-sse                          # about a minute",
        "BENCH_SECONDS=5 BENCH_SSE_ROUNDS=5 make bench-sse",
        "BENCH_SSE_EVENTS=200 BENCH_SSE_BATCH=20 make bench-sse",
        "```",
        "",
        "Raw numbers of the last run: `.bench/sse-results.json`.",
        "",
    ]
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "sse.md").write_text("\n".join(lines))
    print("wrote docs/benchmarks/sse.md")


if __name__ == "__main__":
    sys.exit(main())
