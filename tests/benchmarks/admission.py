"""`make bench-admission`: what admission and settlement cost in Redis, this checkout against a baseline commit
(BENCH_BASELINE, default `main`) in one run: a key with only a budget and limits ("plain"), and one with a budget
per day, a model list and a team with its own daily budget ("governed").

Each variant runs `Ledger.admit` then `Ledger.record` BENCH_ADMISSION_N times in sequence, in a process of its
own (the baseline's `layers/` from `git archive`), against a redis-server of this benchmark's own on a free port
(no other client's scripts in its counters). Reported: the client-side p50 of one admission, and Redis's own time
per script call (`INFO commandstats`, `cmdstat_evalsha` usec_per_call: admission and settlement together). The
variants take turns, BENCH_ADMISSION_ROUNDS times; the median of the rounds is kept. Writes
docs/benchmarks/admission.md.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASELINE = os.getenv("BENCH_BASELINE", "main")
N = int(os.getenv("BENCH_ADMISSION_N", "3000"))
ROUNDS = int(os.getenv("BENCH_ADMISSION_ROUNDS", "3"))
OUT = ROOT / "docs" / "benchmarks" / "admission.md"

# One variant's loop, run with the layers under test first on sys.path; prints one JSON line.
LOOP = r"""
import asyncio, inspect, json, statistics, sys, time, uuid
from kilo_bridge.config import load_settings
from kilo_bridge.keys.store import KeyStore, digest
from kilo_bridge.platform.redis import Store
from kilo_bridge.usage.ledger import Ledger, Outcome

url, variant, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def main():
    store = Store(load_settings(redis_url=url, redis_prefix="{kbadm-%s}:" % uuid.uuid4().hex[:8]))
    limits = dict(budget_usd=1000, rpm=1_000_000, tpm=1_000_000_000)
    if variant == "governed":
        limits.update(budget_period="day", models=["anthropic/*", "fake/*"], team="bench")
    secret, _ = await KeyStore(store).create("bench", **limits)
    if variant == "governed":
        from kilo_bridge.keys.teams import TeamStore
        await TeamStore(store).set("bench", 1000, "day")
    ledger, key = Ledger(store), digest(secret)
    named = "model" in inspect.signature(ledger.admit).parameters
    times = []
    for i in range(n + 200):
        t0 = time.perf_counter()
        admitted = await (ledger.admit(key, 1000, "fake/model-a") if named else ledger.admit(key, 1000))
        t1 = time.perf_counter()
        outcome = Outcome(model="fake/model-a", ok=True, prompt_tokens=10, completion_tokens=10)
        await ledger.record(outcome, 900, admitted)
        if i >= 200:  # the first ones warm the connection and the script cache
            times.append((t1 - t0) * 1000)
    await store.close()
    print(json.dumps({"admit_p50_ms": statistics.median(times)}))

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], check=True, capture_output=True, text=True).stdout


def script_usec(port: int) -> float:
    for line in redis_cli(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return float(line.split("usec_per_call=")[1].split(",")[0])
    return float("nan")


def main() -> int:
    server = shutil.which("redis-server")
    if server is None:
        print("redis-server is needed on PATH", file=sys.stderr)
        return 2
    port = free_port()
    tmp = tempfile.TemporaryDirectory(prefix="kb-admission-")
    archive = subprocess.run(["git", "archive", BASELINE, "layers"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", tmp.name], input=archive.stdout, check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", BASELINE], cwd=ROOT, capture_output=True, text=True)
    redis = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis_cli(port, "PING")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}/0"
        variants = {
            f"baseline {BASELINE} ({commit.stdout.strip()}), plain key": (f"{tmp.name}/layers", "plain"),
            "this checkout, plain key": (str(ROOT / "layers"), "plain"),
            "this checkout, governed key": (str(ROOT / "layers"), "governed"),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(ROUNDS):
            for name, (layers, variant) in variants.items():
                redis_cli(port, "CONFIG", "RESETSTAT")  # this benchmark's own server
                env = {**os.environ, "PYTHONPATH": layers}
                out = subprocess.run(
                    [sys.executable, "-c", LOOP, url, variant, str(N)],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                results[name].append((json.loads(out.stdout)["admit_p50_ms"], script_usec(port)))
                print(f"{name:45} admit p50 {results[name][-1][0]:.4f} ms  script {results[name][-1][1]:.1f} us/call")
    finally:
        redis.terminate()
        redis.wait(10)
        tmp.cleanup()
    base = next(iter(results))
    med = {
        name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)) for name, rs in results.items()
    }
    lines = [
        "# Admission cost: budgets per period, model lists, teams, sliding-window and GCRA limits",
        "",
        f"`make bench-admission` ({N} sequential admissions and settlements per variant, {ROUNDS} rounds taking turns,",
        f"median kept; a redis-server of its own; {platform.machine()}, Python {platform.python_version()}).",
        "",
        "| variant | admission p50 (ms, client) | added | Redis time per script call (µs) | added |",
        "|---|---|---|---|---|",
    ]
    for name, (p50, usec) in med.items():
        lines.append(f"| {name} | {p50:.4f} | {p50 - med[base][0]:+.4f} | {usec:.1f} | {usec - med[base][1]:+.1f} |")
    lines += [
        "",
        "A plain key has a budget, rpm and tpm; a governed one also a daily budget, a model list and a team with a",
        "daily budget of its own. The target: no more than +0.05 ms per admission. The Redis time is admission and",
        "settlement together (both are one EVALSHA each). Shared machine: read the differences within one run.",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
