"""The HTTP server and the upstream client, measured side by side in one run → docs/benchmarks/stack.md.

- Servers: the bridge's `/v1/chat/completions` (plain, 0 ms upstream) under uvicorn (httptools + uvloop, what
  `serve` runs) and under granian (Rust, its ASGI interface, uvloop), one worker each, and the fake gateway
  called directly; sequential and 16 keep-alive clients (tests/benchmarks/_load.py), order rotated per round.
- Upstream clients: one process POSTing the same request to the fake gateway with aiohttp (what
  gateway/client.py uses), rnet and pyreqwest (Rust, reqwest/hyper underneath): sequential p50 and the req/s of 16
  concurrent tasks, on uvloop as the server runs.

The candidates install under .bench/stack-pkgs (never .venv): `pip install --target .bench/stack-pkgs
granian==2.8.9 rnet==2.4.2 pyreqwest==0.15.1`. Short and bounded: the machine is shared (2 cores).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKGS = ROOT / ".bench" / "stack-pkgs"
sys.path[:0] = [str(ROOT), str(ROOT / "layers")]

from tests.benchmarks._load import KEY, Server, free_port, load, request_bytes  # noqa: E402

MODEL = "kilo-auto/balanced"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}]}
DURATION_S = float(os.getenv("BENCH_STACK_S", "3"))
ROUNDS = int(os.getenv("BENCH_STACK_ROUNDS", "2"))
SEQUENTIAL_N = 1500


VERDICT = """- Server: uvicorn with httptools and uvloop stays. granian was slower here on both the sequential added
  p50 and 16-client req/s (its Rust HTTP layer hands each request to Python through its own bridge, and the
  app's work dominates), and it would lose the head-size cap and read deadlines of web/server.py.
- Upstream client: aiohttp stays. pyreqwest had the lowest sequential p50 of the client alone (about 0.1 ms less
  than aiohttp), rnet the highest req/s in one round and not the other; none is a clear win over the bridge's
  whole added latency on this machine, and moving gateway/client.py (streaming relay, retries before the first
  byte, timeouts, connection limits) to another client is a change of its own.
- Re-measured inside the bridge (2026-12-03, when the sequential budget became the limit): aiohttp stays.
  pyreqwest 0.15.1 served the plain path only (one pooled client, same default headers, 512 connections, the
  whole body read by `send()`; streams left on aiohttp) and the bridge ran beside main's layers in one run,
  `BENCH_BASELINE=main BENCH_ROUNDS=3 BENCH_SECONDS=6 PYTHONPATH=layers python tests/benchmarks/run.py`. Added
  p50 of `/v1/chat/completions`, plain, 1 client, pyreqwest against aiohttp: +0.875 against +0.889 ms (load
  average 1.0 rising to 3.9), then +0.778 against +0.637 ms (1.8 to 2.8); four runs of 1-client rounds only (12
  to 30 interleaved rounds; the median per-round difference, pyreqwest minus aiohttp) gave -0.025, -0.003,
  +0.077 and +0.029 ms. No win near the 0.05 ms that would pay for moving streams, retries and timeouts, so they
  were not moved. The client alone is still faster (one process on uvloop, the same interleaving: p50 0.237
  against 0.320 ms, 92 against 154 µs of CPU a call), but in the bridge its work moves to pyreqwest's Tokio
  thread more than it goes away (one run's CPU over the same 12 rounds: 9.5 s on the event loop plus 1.5 s on
  the `pyreqwest` thread, against 11.5 s with aiohttp), and every call crosses threads twice (the request to
  Tokio, the answer back to the loop), which a sequential request waits for in full on a busy 2-core machine, as
  on a Lambda with one vCPU or less."""


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1e3


def servers(up_port: int) -> tuple[dict[str, Server], dict[str, tuple[int, str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KILO_", "REDIS_PREFIX"))}
    py = os.getenv("BENCH_BRIDGE_PYTHON", sys.executable)
    path = os.pathsep.join([str(ROOT / "layers"), str(ROOT), str(PKGS)])
    bridge_env = {
        **env,
        "PYTHONPATH": path,
        "KILO_API_KEY": KEY,
        "KILO_GATEWAY_BASE": f"http://127.0.0.1:{up_port}/api/gateway",
        "REDIS_PREFIX": "{kbstack}:",
        "AUTH_REQUIRED": "false",
        "JOBS_CONCURRENCY": "0",
        "WEB_CONCURRENCY": "1",
    }
    ports = {"uvicorn": free_port(), "granian": free_port()}
    out = {
        "direct": Server(
            "fake gateway", [py, "tests/fakes/fake_gateway.py", "--port", str(up_port), "--always-usage"], env, up_port
        ),
        "uvicorn": Server(
            "bridge on uvicorn",
            [py, "-m", "kilo_bridge", "serve"],
            {**bridge_env, "PORT": str(ports["uvicorn"])},
            ports["uvicorn"],
        ),
        "granian": Server(
            "bridge on granian",
            [py, "-m", "granian", "--interface", "asgi", "--factory", "--loop", "uvloop", "--workers", "1",
             "--host", "127.0.0.1", "--port", str(ports["granian"]), "--log-level", "warning", "--no-ws",
             "kilo_bridge.web.app:create_web_app"],
            {**bridge_env, "PORT": str(ports["granian"])},
            ports["granian"],
        ),
    }  # fmt: skip
    targets = {
        "direct": (up_port, "/api/gateway/chat/completions"),
        "uvicorn": (ports["uvicorn"], "/v1/chat/completions"),
        "granian": (ports["granian"], "/v1/chat/completions"),
    }
    return out, targets


def measure_servers(up_port: int) -> dict[str, dict[str, float]]:
    procs, targets = servers(up_port)
    results: dict[str, dict[str, list[float]]] = {name: {} for name in procs}
    try:
        for name in procs:
            port, path = targets[name]
            procs[name].start().wait_ready(request_bytes(port, path, BODY), 60)
        for rnd in range(ROUNDS):
            names = list(procs)
            names = names[rnd % len(names) :] + names[: rnd % len(names)]
            for clients in (1, 16):
                for name in names:
                    port, path = targets[name]
                    r = asyncio.run(load(port, request_bytes(port, path, BODY), clients, DURATION_S))
                    slot = results[name]
                    slot.setdefault(f"total{clients}", []).extend(r["total"])
                    slot.setdefault(f"rps{clients}", []).append(r["n"] / r["elapsed"])
                    print(f"round {rnd + 1} c={clients:<2} {name:8} {r['n'] / r['elapsed']:7.0f} req/s", flush=True)
    finally:
        for proc in procs.values():
            proc.stop()
    return {
        name: {
            "p50_1": _pct(slot["total1"], 0.5),
            "p99_1": _pct(slot["total1"], 0.99),
            "rps1": statistics.mean(slot["rps1"]),
            "rps16": statistics.mean(slot["rps16"]),
            "p50_16": _pct(slot["total16"], 0.5),
        }
        for name, slot in results.items()
    }


async def _client_run(name: str, url: str) -> dict[str, float]:
    import orjson

    body = orjson.dumps(BODY)
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    if name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession()

        async def call() -> bytes:
            async with session.post(url, data=body, headers=headers) as resp:
                return await resp.read()

        close = session.close
    elif name == "rnet":
        import rnet

        client = rnet.Client()

        async def call() -> bytes:
            resp = await client.post(url, body=body, headers=headers)
            return bytes(await resp.bytes())

        async def close() -> None:
            return None
    else:
        from pyreqwest.client import ClientBuilder

        preq = ClientBuilder().build()

        async def call() -> bytes:
            resp = await preq.post(url).headers(headers).body_bytes(body).build().send()
            return bytes(await resp.bytes())

        close = preq.close
    try:
        for _ in range(100):
            assert b"choices" in await call()
        seq = []
        for _ in range(SEQUENTIAL_N):
            t = time.perf_counter()
            await call()
            seq.append(time.perf_counter() - t)
        done = 0
        deadline = time.perf_counter() + DURATION_S

        async def task() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await call()
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(16)))
        return {"p50": _pct(seq, 0.5), "p99": _pct(seq, 0.99), "rps16": done / (time.perf_counter() - began)}
    finally:
        await close()


def measure_clients(up_port: int) -> dict[str, dict[str, float]]:
    import uvloop

    sys.path.append(str(PKGS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILO_")}
    fake = Server("fake gateway", [sys.executable, "tests/fakes/fake_gateway.py", "--port", str(up_port)], env, up_port)
    url = f"http://127.0.0.1:{up_port}/api/gateway/chat/completions"
    out: dict[str, list[dict[str, float]]] = {}
    try:
        fake.start().wait_ready(request_bytes(up_port, "/api/gateway/chat/completions", BODY), 30)
        for rnd in range(ROUNDS):
            names = ["aiohttp", "rnet", "pyreqwest"]
            for name in names[rnd % 3 :] + names[: rnd % 3]:
                r = uvloop.run(_client_run(name, url))
                out.setdefault(name, []).append(r)
                print(f"round {rnd + 1} client {name:9} p50 {r['p50']:.3f} ms  {r['rps16']:6.0f} req/s", flush=True)
    finally:
        fake.stop()
    return {n: {k: statistics.mean(r[k] for r in rs) for k in rs[0]} for n, rs in out.items()}


def write_report(srv: dict[str, dict[str, float]], cli: dict[str, dict[str, float]]) -> None:
    from importlib.metadata import version

    sys.path.append(str(PKGS))
    d = srv["direct"]
    lines = [
        "# HTTP server and upstream client",
        "",
        f"Written by `tests/benchmarks/stack.py` ({time.strftime('%Y-%m-%d')}; {ROUNDS} rounds of {DURATION_S:g} s "
        f"per point, order rotated). A shared 2-core machine (others' work running beside it) with the load "
        "generator on the same cores: compare rows of this one run, not across runs.",
        "",
        "## Server (the bridge's `/v1/chat/completions`, plain, 0 ms fake upstream, one worker)",
        "",
        "| server | sequential p50 ms | added p50 ms | p99 ms | req/s (1 client) | req/s (16 clients) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "direct": "fake gateway, direct",
        "uvicorn": f"uvicorn {version('uvicorn')} + httptools + uvloop (chosen)",
        "granian": f"granian {version('granian')} (ASGI, uvloop)",
    }
    for name in ("direct", "uvicorn", "granian"):
        r = srv[name]
        added = "" if name == "direct" else f"{r['p50_1'] - d['p50_1']:+.3f}"
        lines.append(
            f"| {labels[name]} | {r['p50_1']:.3f} | {added} | {r['p99_1']:.3f} | {r['rps1']:.0f} | {r['rps16']:.0f} |"
        )
    lines += [
        "",
        "## Upstream client (one process → the fake gateway, on uvloop)",
        "",
        "| client | sequential p50 ms | p99 ms | req/s (16 tasks) |",
        "|---|---:|---:|---:|",
    ]
    for name in ("aiohttp", "rnet", "pyreqwest"):
        r = cli[name]
        label = f"{name} {version(name)}" + (" (chosen)" if name == "aiohttp" else "")
        lines.append(f"| {label} | {r['p50']:.3f} | {r['p99']:.3f} | {r['rps16']:.0f} |")
    lines += ["", "## Choice", "", VERDICT, ""]
    (ROOT / "docs" / "benchmarks" / "stack.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> int:
    srv = measure_servers(free_port())
    cli = measure_clients(free_port())
    write_report(srv, cli)
    return 0


if __name__ == "__main__":
    sys.exit(main())
