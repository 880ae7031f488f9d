"""`make bench-overhead` (part of `make bench`): the latency Kilo Bridge adds over calling the (fake) Kilo
Gateway directly.

One run, one machine, side by side: the fake gateway in its own process, Kilo Bridge in its own process
(as `make run` starts it), and the same load generator against each, at concurrency 1, 16 and 64,
plain and streamed. Loopback only; bounded (a few seconds per point); stops by itself. Writes
docs/benchmarks.md. Absolute numbers drift on shared machines: read the ratios and added milliseconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests.benchmarks` importable
    sys.path.insert(0, str(ROOT))
DURATION_S = float(os.getenv("BENCH_SECONDS", "4"))
# A git ref to measure beside this checkout in the same run (its `layers/` served by a second bridge process):
# before/after numbers from one run, as the shared machine's load drifts between runs.
BASELINE = os.getenv("BENCH_BASELINE", "")
CONCURRENCY = (1, 16, 64)
# Rounds per point, every target once per round in turn: drift on a shared machine falls on all of them alike.
ROUNDS = int(os.getenv("BENCH_ROUNDS", "2"))
KEY = "bench-key-not-real"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def request_bytes(port: int, path: str, body: dict[str, Any]) -> bytes:
    raw = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: {len(raw)}\r\n\r\n"
    )
    return head.encode() + raw


async def one_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> tuple[float, float]:
    """(time to first body byte, total) for one keep-alive request; handles Content-Length and chunked."""
    start = time.perf_counter()
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:200].decode(errors="replace"))
    match = re.search(rb"(?i)content-length: *(\d+)", head)
    if match:
        await reader.readexactly(int(match.group(1)))
        now = time.perf_counter() - start
        return now, now
    first = None
    while True:  # chunked
        size = int((await reader.readline()).strip(), 16)
        data = await reader.readexactly(size + 2)
        if first is None and b"data:" in data:
            first = time.perf_counter() - start
        if size == 0:
            return first or 0.0, time.perf_counter() - start


class Run(TypedDict):
    """One load run: its timed seconds and each request's seconds (total, to the first byte)."""

    elapsed: float
    total: list[float]
    ttfb: list[float]


async def load(port: int, req: bytes, concurrency: int, seconds: float) -> Run:
    """All connections warm up first; then the clock runs for `seconds` (a slow warm-up never eats the window)."""
    ttfb: list[float] = []
    total: list[float] = []
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]

    async def warm(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(5):
            await one_request(reader, writer, req)

    await asyncio.gather(*(warm(r, w) for r, w in conns))
    deadline = time.perf_counter() + seconds

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while time.perf_counter() < deadline:
            f, t = await one_request(reader, writer, req)
            ttfb.append(f)
            total.append(t)
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker(r, w) for r, w in conns))
    return {"elapsed": time.perf_counter() - began, "total": total, "ttfb": ttfb}


def summary(runs: list[Run]) -> dict[str, float]:
    """One point's figures over its rounds: req/s over the timed seconds, percentiles over every request."""
    total = sorted(t for r in runs for t in r["total"])
    ttfb = sorted(t for r in runs for t in r["ttfb"])
    return {
        "rps": len(total) / sum(r["elapsed"] for r in runs),
        "p50": total[len(total) // 2] * 1e3,
        "p99": total[int(len(total) * 0.99)] * 1e3,
        "ttfb50": ttfb[len(ttfb) // 2] * 1e3,
        "n": len(total),
    }


def start(cmd: list[str], env: dict[str, str], needle: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        if needle in proc.stdout.readline():
            return proc
    proc.kill()
    raise RuntimeError(f"{cmd} did not start")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    from tests.benchmarks._load import tree_peak_rss_mb  # it imports this module: only once it is loaded

    up_port, our_port = free_port(), free_port()
    prefix = f"{{kbbench-{os.getpid()}}}:"
    fake = start(
        [sys.executable, "tests/fakes/fake_gateway.py", "--port", str(up_port), "--always-usage", "--chunks", "50"],
        dict(os.environ),
        "listening",
    )
    env = {
        **os.environ,
        "KILO_API_KEY": KEY,
        "KILO_GATEWAY_BASE": f"http://127.0.0.1:{up_port}/api/gateway",
        "PORT": str(our_port),
        "REDIS_PREFIX": prefix,
    }
    bridge = start([sys.executable, "-m", "kilo_bridge", "serve"], env, "listening")
    base_dir = tempfile.TemporaryDirectory(prefix="kb-baseline-") if BASELINE else None
    baseline = None
    if base_dir is not None:
        base_port = free_port()
        archive = subprocess.run(["git", "archive", BASELINE, "layers"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", base_dir.name], input=archive.stdout, check=True)
        base_env = {**env, "PORT": str(base_port), "PYTHONPATH": f"{base_dir.name}/layers"}
        baseline = start([sys.executable, "-m", "kilo_bridge", "serve"], base_env, "listening")
    chat = {"model": "fake/model-a", "messages": [{"role": "user", "content": "hello benchmark"}]}
    targets = {
        "direct": (up_port, "/api/gateway/chat/completions"),
        "bridge /v1/chat/completions": (our_port, "/v1/chat/completions"),
    }
    if baseline is not None:
        targets[f"baseline {BASELINE} /v1/chat/completions"] = (base_port, "/v1/chat/completions")
    rows = []
    try:
        for streamed in (False, True):
            body = {**chat, "stream": True} if streamed else chat
            for c in CONCURRENCY:
                gen_body = {"prompt": "hello benchmark", "model": "fake/model-a"}
                gen_path = "/api/kilo/generate-stream" if streamed else "/api/kilo/generate"
                requests = {name: request_bytes(port, path, body) for name, (port, path) in targets.items()}
                requests[f"bridge {gen_path}"] = request_bytes(our_port, gen_path, gen_body)
                ports = {**{name: port for name, (port, _path) in targets.items()}, f"bridge {gen_path}": our_port}
                runs: dict[str, list[Run]] = {name: [] for name in requests}
                for _round in range(ROUNDS):
                    for name, req in requests.items():
                        runs[name].append(asyncio.run(load(ports[name], req, c, DURATION_S / ROUNDS)))
                results = {name: summary(r) for name, r in runs.items()}
                direct = results["direct"]
                for name, r in results.items():
                    rows.append(
                        {
                            "mode": "stream" if streamed else "plain",
                            "c": c,
                            "target": name,
                            **r,
                            "added_p50": r["p50"] - direct["p50"],
                            "added_p99": r["p99"] - direct["p99"],
                            "added_ttfb": r["ttfb50"] - direct["ttfb50"],
                            "rps_ratio": r["rps"] / direct["rps"],
                        }
                    )
                    print(
                        f"{rows[-1]['mode']:6} c={c:<3} {name:34} {r['rps']:8.0f} req/s  p50 {r['p50']:7.3f} ms  "
                        f"p99 {r['p99']:7.3f} ms  added p50 {rows[-1]['added_p50']:+.3f} ms  "
                        f"rps ratio {rows[-1]['rps_ratio']:.2f}",
                        flush=True,
                    )
        rss = {"fake gateway": tree_peak_rss_mb(fake.pid), "kilo bridge": tree_peak_rss_mb(bridge.pid)}
    finally:
        if baseline is not None:
            baseline.terminate()
            baseline.wait(10)
        if base_dir is not None:
            base_dir.cleanup()
        bridge.terminate()
        fake.terminate()
        bridge.wait(10)
        fake.wait(10)
        cleanup = "import redis,sys; r=redis.Redis(); k=list(r.scan_iter(match=sys.argv[1]+'*')); k and r.delete(*k)"
        subprocess.run([sys.executable, "-c", cleanup, prefix], check=False)
    write_report(rows, rss)
    return 0


def before_after(rows: list[dict[str, Any]]) -> list[str]:
    """This checkout's /v1 beside the baseline commit's, point by point (only with BENCH_BASELINE)."""
    if not BASELINE:
        return []
    ours = {(r["mode"], r["c"]): r for r in rows if r["target"] == "bridge /v1/chat/completions"}
    theirs = {(r["mode"], r["c"]): r for r in rows if r["target"].startswith("baseline ")}
    out = [
        f"## Before and after: this checkout against `{BASELINE}`, in the same run",
        "",
        "| mode | clients | added p50 ms (this) | added p50 ms (baseline) | difference ms | req/s (this) "
        "| req/s (baseline) | req/s ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for point, r in ours.items():
        b = theirs[point]
        out.append(
            f"| {point[0]} | {point[1]} | {r['added_p50']:+.3f} | {b['added_p50']:+.3f} | "
            f"{r['added_p50'] - b['added_p50']:+.3f} | {r['rps']:.0f} | {b['rps']:.0f} | {r['rps'] / b['rps']:.2f} |"
        )
    return [*out, ""]


def write_report(rows: list[dict[str, Any]], rss: dict[str, float]) -> None:
    workers = len(os.sched_getaffinity(0))
    baseline_note = (
        f"; beside it, commit `{BASELINE}` of this repository served the same way from its own `layers/` "
        "(`BENCH_BASELINE`), for before/after figures from one run"
        if BASELINE
        else ""
    )
    lines = [
        "# Benchmarks: what Kilo Bridge adds over calling the Kilo Gateway directly",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC with `make bench-overhead` on {platform.platform()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}. Fake gateway (aiohttp, 0 ms latency, streamed "
        f"answers of 50 chunks) in its own process; Kilo Bridge as `make run` starts it ({workers} uvicorn "
        f"workers, one per core, real Redis){baseline_note}; one keep-alive Python load generator, "
        f"{DURATION_S:.0f} s per point in {ROUNDS} interleaved rounds. The load generator and all the "
        "servers share the machine's cores, so absolute numbers are pessimistic: compare rows of the same run.",
        "",
        "| mode | clients | target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | added TTFB ms "
        "| req/s vs direct |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['c']} | {r['target']} | {r['rps']:.0f} | {r['p50']:.3f} | {r['p99']:.3f} | "
            f"{r['added_p50']:+.3f} | {r['added_p99']:+.3f} | {r['added_ttfb']:+.3f} | {r['rps_ratio']:.2f} |"
        )
    peaks = ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items())
    lines += ["", f"Peak RSS (VmHWM of the process plus its children, summed): {peaks}", ""]
    lines += before_after(rows)
    lines += [
        "Budget (the project's latency targets; [benchmarks/compare.md](benchmarks/compare.md) checks the "
        "first two per upstream latency): added p50 ≤ 0.5 ms sequential and ≤ 1 ms at 16 clients, p99 ≤ 5 ms. "
        "Each generate request makes two Redis round trips (admission before the call, accounting after the "
        "answer is sent, as a background task); a loopback Redis round trip alone is ~0.08 ms here.",
        "",
        "Reading the table: sequentially (1 client) the added p50 is the server's own work per request "
        "(HTTP parse, pydantic, the aiohttp hop, the admission Lua call). With 16 or 64 clients firing "
        "back to back, the machine's two cores are saturated, so the added latency is queueing: clients ÷ req/s "
        "(Little's law). With a 0 ms upstream the direct target does almost no work per request, while the "
        "bridge, its upstream, Redis and the load generator share the same two cores: req/s against direct is "
        "a ratio of CPU per request, not of what a client of a real upstream sees (with a 50 ms upstream, "
        "[benchmarks/compare.md](benchmarks/compare.md)). Streams pay per chunk (50 here): each relayed chunk "
        "costs an SSE frame, and the chunks of each upstream read one ASGI send (`kilo_bridge/web/sse.py`; against "
        "Starlette's own `StreamingResponse`: [benchmarks/sse.md](benchmarks/sse.md)).",
        "",
        "## Where the budget is missed, and why",
        "",
        "Profiled (py-spy on the server under this load; `make bench-split` for the CPU of each part, "
        "[benchmarks/split.md](benchmarks/split.md)): one plain relay costs the server ~0.7-0.9 ms of CPU on "
        "this machine, about 45 % in the upstream call (aiohttp, the cheaper of the clients tried: measured "
        "once against httpx, not in a report), 40 % in the two Redis calls the design asks for (admission "
        "before, accounting after), "
        "and ~0.1 ms in routing, validation and our handler; uvicorn's HTTP handling comes on top. Fixed on "
        "the way: the two Redis calls moved from redis-py's client to a pipelined connection of our own "
        "(`kilo_bridge/platform/resp.py`: 0.2-0.3 ms less per request), the first gateway attempt no longer goes "
        "through tenacity (~0.1 ms), and per-request date formatting and a duplicate key digest are gone. "
        "What is left is one HTTP hop and two Redis round trips of Python per request: the sequential "
        "0.5 ms target is met on a quiet machine (+0.46 ms on 2026-12-01, from +0.94 before these fixes) "
        "and missed when it is busy (+0.6-0.8 ms in other runs). Since then the relay became faithful "
        "(every `/v1` route, bodies passed through, upstream errors and headers relayed); measured beside the "
        "commit of that +0.46 ms (`BENCH_BASELINE`, table above), at 1 client, in three such runs on 2026-12-03: "
        "plain -0.04, +0.06 and +0.09 ms (bench-compare's), the same within the noise of this shared machine; "
        "streamed -0.20 and -0.30 ms. Streams got cheaper because their last event no longer "
        "waits for the usage record (written after the response, as a plain answer's record already was). "
        "On this machine (a 2-core microVM) a loopback `send` that wakes another process costs 0.1-0.25 ms "
        "under load (cProfile of the server: aiohttp's request write and our Redis sends are its largest "
        "items), so a request's cost is mostly its hops between processes (client, bridge, Redis, upstream), "
        "not its Python. At 16 and 64 "
        "clients the two cores are saturated, so the 1 ms target there cannot be met "
        "(added latency = queueing, Little's law); throughput is the figure that "
        "moves with CPU cost: at 16 clients it went from ~600 to ~1,700-2,100 req/s with the fixes above, now "
        "about twice Portkey's ([benchmarks/compare.md](benchmarks/compare.md), beside LiteLLM and Portkey "
        "in one run). Streams paid one socket write per relayed chunk (uvicorn's send was the largest single "
        "cost on the stream path); chunks that arrive in one upstream read now leave in one write (nothing "
        "waits for more), which took the streamed added p50 from +1.56 to +0.89 ms and stream throughput "
        "at 64 clients from 0.41 to 0.50 of direct.",
        "",
        "## Where the performance targets stand (2026-12-03)",
        "",
        "- Cold start: every Lambda function imports in less time than a FastAPI + Mangum hello world, and "
        "the API function's first answer comes sooner ([benchmarks/coldstart.md](benchmarks/coldstart.md): "
        "the API function 0.73x, the stream function 0.75x, the dispatcher 0.28x, the finalizer 0.24x; first "
        "answers 0.74-0.75x; run to run 0.73-0.92x for the two nearest their 0.8x line). The layer ships "
        "byte-code, which is most of a real cold start's saving (the API function 237-258 ms against 576-686 "
        "ms without).",
        "- `make run` serves with one worker per core (`WEB_CONCURRENCY`) and one job worker. With a 50 ms "
        "upstream it serves 0.86 (16 clients) and 0.75 (64) of the direct calls' req/s plain, 1.12 and 0.92 "
        'streamed ([benchmarks/compare.md](benchmarks/compare.md), "Kilo Bridge x2"). With a 0 ms upstream '
        "plain it is 0.18-0.21: the direct target does no work, so that ratio is the bridge's CPU per request"
        " against the fake's, on two cores shared with the load generator.",
        "- Sequential added p50 ≤ 0.35 ms is missed: +0.71 to +1.02 ms at 1 client in today's runs (a slower "
        "day for this machine: the direct call's own p50 was 0.23-0.29 ms, against 0.14-0.17 ms hours "
        "earlier), +0.46 ms at best on 2026-12-01. A faster upstream client was tried in the bridge and did "
        "not pay ([benchmarks/stack.md](benchmarks/stack.md): pyreqwest's gain as a client alone moved to its"
        " own thread).",
        "- The 50 ms-upstream gap is not closed: +2.40 ms at 50 ms against +0.87 ms at 0 ms (one worker, same"
        " run). A hop that does nothing at all already pays +0.38-0.46 ms of it on this machine for sleeping "
        "through the 50 ms ([benchmarks/upstream-gap.md](benchmarks/upstream-gap.md)); the bridge has two "
        "more sleepers on the path (its own second process hop to Redis, and Redis itself), each woken once "
        "per request.",
        "- Server and upstream client: uvicorn (httptools, uvloop) and aiohttp, chosen by measurement against"
        " granian, rnet and pyreqwest ([benchmarks/stack.md](benchmarks/stack.md)).",
        "",
        "More, each written by its own command:",
        "",
        "- [benchmarks/split.md](benchmarks/split.md) (`make bench-split`): where one request's CPU goes, "
        "and redis-py beside `kilo_bridge.platform.resp` on the same call;",
        "- [benchmarks/sse.md](benchmarks/sse.md) (`make bench-sse`): our `EventStream` against Starlette's "
        "`StreamingResponse` on the relay path;",
        "- [benchmarks/compare.md](benchmarks/compare.md) (`make bench-compare`): Kilo Bridge, LiteLLM proxy "
        "and Portkey's gateway side by side on the same fake upstream;",
        "- [benchmarks/coldstart.md](benchmarks/coldstart.md) (`make bench-coldstart`): cold import of every "
        "Lambda entry point;",
        "- [benchmarks/jobs.md](benchmarks/jobs.md) (`make bench-jobs`): agent jobs accepted per second, and "
        "the time from `run-agent` to the runner's first event through the local queue;",
        "- [benchmarks/redis.md](benchmarks/redis.md) (`make bench-redis`): Redis commands per request.",
        "",
        "`make bench` runs all of them, one after the other.",
        "",
    ]
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(lines))
    print("wrote docs/benchmarks.md")


if __name__ == "__main__":
    sys.exit(main())
