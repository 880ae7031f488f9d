"""`make bench-compare`: Kilo Bridge side by side with LiteLLM proxy and Portkey's gateway, one run, one machine.

All proxies front the same fake Kilo Gateway (tests/fakes/fake_gateway.py) in its own process, first with 0 ms and
then with 50 ms of upstream latency (one phase each: the fake and every proxy are started afresh per phase, so no
proxy keeps a pooled connection to a stopped upstream). Kilo Bridge, LiteLLM and Portkey run one worker each;
Kilo Bridge and LiteLLM run a second time with as many workers as the machine has cores ("x2"). One keep-alive load
generator (tests/benchmarks/_load.py) drives each system and the fake directly, plain and streamed (50 chunks),
at 1, 16 and 64 clients. Rounds are interleaved with the order rotated, so a noisy moment of the shared machine
lands on every system alike. A system that cannot start, or fails a point, gets a "failed: <why>" row.
Loopback only; bounded by a time budget; every process it starts is stopped at the end. Writes
docs/benchmarks/compare.md and two PNG plots (matplotlib from .bench/, never .venv).

Env: BENCH_SECONDS (per point, default 2), BENCH_ROUNDS (default 3, fewer if the budget runs out),
BENCH_BUDGET_S (measuring time for all phases, default 480), BENCH_LATENCIES (default "0,50"), BENCH_DIR,
BENCH_BASELINE (a git ref of this repository, served beside today's code as "before").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests.benchmarks` importable
    sys.path.insert(0, str(ROOT))

from tests.benchmarks._load import KEY, Server, free_port, load, request_bytes  # noqa: E402

DURATION_S = float(os.getenv("BENCH_SECONDS", "2"))
ROUNDS = int(os.getenv("BENCH_ROUNDS", "3"))
BUDGET_S = float(os.getenv("BENCH_BUDGET_S", "480"))
LATENCIES = tuple(int(x) for x in os.getenv("BENCH_LATENCIES", "0,50").split(","))
BENCH = Path(os.getenv("BENCH_DIR", str(ROOT / ".bench")))
CORES = os.cpu_count() or 2
# A git ref of this repository to serve beside today's code ("before"): before/after in the same run.
BASELINE = os.getenv("BENCH_BASELINE", "")
SYSTEMS = ("direct", "bridge", "bridge_x2", *(("before",) if BASELINE else ()), "litellm", "litellm_x2", "portkey")
PROXIES = SYSTEMS[1:]
PEERS = (*(("before",) if BASELINE else ()), "litellm", "litellm_x2", "portkey")
WORKERS = {
    "direct": 1,
    "bridge": 1,
    "bridge_x2": CORES,
    "before": 1,
    "litellm": 1,
    "litellm_x2": CORES,
    "portkey": 1,
}
LABEL = {
    "direct": "direct",
    "bridge": "Kilo Bridge",
    "bridge_x2": f"Kilo Bridge x{CORES}",
    "before": f"Kilo Bridge at {BASELINE[:12]}",
    "litellm": "LiteLLM",
    "litellm_x2": f"LiteLLM x{CORES}",
    "portkey": "Portkey",
}
MODES = ("plain", "stream")
CONCURRENCY = (1, 16, 64)
CHUNKS = 50
# 72 characters of answer ("Echo: " + prompt), so the fake's stream really carries CHUNKS content chunks.
PROMPT = "Say hello to the side-by-side benchmark of three gateways, please."
MODEL = "fake/model-a"
DOCS = ROOT / "docs" / "benchmarks"
RESULTS = BENCH / "compare-results.json"
POINT_TIMEOUT_S = DURATION_S + 90  # a hung proxy fails its point instead of hanging the run


def _python(venv: Path) -> str:
    return str(venv / "bin" / "python")


def _versions() -> dict[str, str]:
    """Versions of the systems under test, read from what is installed (not from what was asked for)."""
    out = {"python": platform.python_version()}
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    try:
        res = subprocess.run(
            [_python(BENCH / "litellm-venv"), "-c", probe], capture_output=True, text=True, check=False, timeout=60
        )
        out["litellm"] = res.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        out["litellm"] = "?"
    modules = BENCH / "portkey" / "node_modules"
    for name, rel in (("portkey", "@portkey-ai/gateway"), ("@hono/node-server", "@hono/node-server")):
        try:
            out[name] = json.loads((modules / rel / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            out[name] = "?"
    try:
        out["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        out["node"] = "?"
    return out


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


Target = tuple[int, str, dict[str, str]]


def before(server: Server) -> Server:
    """`server` running BENCH_BASELINE's `layers/` (extracted under .bench/ with `git archive`) instead of today's."""
    where = BENCH / f"baseline-{BASELINE}"
    if not (where / "layers").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", BASELINE, "layers"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    server.env = {**server.env, "PYTHONPATH": str(where / "layers")}
    server.name = f"kilo bridge at {BASELINE}"
    return server


def build_servers(up_port: int, latency_ms: int, prefix: str) -> tuple[dict[str, Server], dict[str, Target]]:
    """The fake upstream and the proxies (not started), and how to address each system."""
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LITELLM_", "DATABASE_URL", "PORTKEY_", "KILO_", "REDIS_PREFIX"))
    }
    upstream = f"http://127.0.0.1:{up_port}/api/gateway"
    ports = {name: free_port() for name in PROXIES}
    bridge_python = os.getenv("BENCH_BRIDGE_PYTHON", str(ROOT / ".venv" / "bin" / "python"))

    config = BENCH / "litellm-config.yaml"
    config.write_text(
        "# written by tests/benchmarks/compare.py for one run\n"
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream}\n"
        f"      api_key: {KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  set_verbose: false\n"
        "general_settings:\n"
        "  disable_spend_logs: true\n"
        # No database and no master key, like the others: measure the proxy hop, not key checks.
        "  dangerously_permit_weak_or_unset_master_key: true\n"
    )
    litellm_env = {
        **base_env,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "DISABLE_SCHEMA_UPDATE": "True",
    }

    def litellm(name: str) -> Server:
        return Server(
            f"litellm proxy ({WORKERS[name]} worker{'s' if WORKERS[name] > 1 else ''})",
            [
                str(BENCH / "litellm-venv" / "bin" / "litellm"),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[name]),
                "--num_workers",
                str(WORKERS[name]),
                "--telemetry",
                "False",
            ],
            litellm_env,
            ports[name],
        )

    def bridge(name: str) -> Server:
        # `make run`'s server; WEB_CONCURRENCY: one worker beside the peers' one, then one per core.
        return Server(
            f"kilo bridge ({WORKERS[name]} worker{'s' if WORKERS[name] > 1 else ''})",
            [bridge_python, "-m", "kilo_bridge", "serve"],
            {
                **base_env,
                "KILO_API_KEY": KEY,
                "KILO_GATEWAY_BASE": upstream,
                "PORT": str(ports[name]),
                "REDIS_PREFIX": prefix,
                "AUTH_REQUIRED": "false",
                "WEB_CONCURRENCY": str(WORKERS[name]),
                "JOBS_CONCURRENCY": "0",  # no job worker beside it: the peers run none
            },
            ports[name],
        )

    servers = {
        "direct": Server(
            "fake gateway",
            [
                sys.executable,
                "tests/fakes/fake_gateway.py",
                "--port",
                str(up_port),
                "--always-usage",
                "--chunks",
                str(CHUNKS),
                "--latency-ms",
                str(latency_ms),
            ],
            base_env,
            up_port,
        ),
        **{name: bridge(name) for name in ("bridge", "bridge_x2")},
        **({"before": before(bridge("before"))} if BASELINE else {}),
        "litellm": litellm("litellm"),
        "litellm_x2": litellm("litellm_x2"),
        "portkey": Server(
            "portkey gateway",
            [
                "node",
                str(BENCH / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"),
                f"--port={ports['portkey']}",
                "--headless",
            ],
            base_env,
            ports["portkey"],
        ),
    }
    portkey_headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": upstream}
    targets: dict[str, Target] = {
        "direct": (up_port, "/api/gateway/chat/completions", {}),
        "bridge": (ports["bridge"], "/v1/chat/completions", {}),
        "bridge_x2": (ports["bridge_x2"], "/v1/chat/completions", {}),
        **({"before": (ports["before"], "/v1/chat/completions", {})} if BASELINE else {}),
        "litellm": (ports["litellm"], "/chat/completions", {}),
        "litellm_x2": (ports["litellm_x2"], "/chat/completions", {}),
        "portkey": (ports["portkey"], "/v1/chat/completions", portkey_headers),
    }
    return servers, targets


def body_for(mode: str) -> dict[str, object]:
    body: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    return {**body, "stream": True} if mode == "stream" else body


def answer_shape(port: int, path: str, headers: dict[str, str]) -> dict[str, object]:
    """What one plain and one streamed answer look like through a system: same work for all, or the
    comparison is void (a proxy that merged chunks would look faster)."""
    out: dict[str, object] = {}
    for mode in MODES:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(
                "POST",
                path,
                json.dumps(body_for(mode)),
                {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}", **headers},
            )
            resp = conn.getresponse()
            raw = resp.read().decode(errors="replace")
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"{mode} answer {resp.status}: {raw[:200]}")
        if mode == "plain":
            out["plain_content"] = json.loads(raw)["choices"][0]["message"]["content"]
            continue
        text, deltas = [], 0
        for line in raw.splitlines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            for choice in json.loads(line[5:]).get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    deltas += 1
                    text.append(piece)
        out.update(stream_content="".join(text), stream_deltas=deltas, stream_done="data: [DONE]" in raw)
    return out


def _pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))] * 1e3


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


def measure(latency: int, targets: dict[str, Target], live: list[str], budget_s: float) -> dict[str, Any]:
    """Every (mode, clients, system) point up to ROUNDS times, order rotated per point; samples pooled across
    rounds. A round starts only if the last one fits in what is left of `budget_s`."""
    pooled: dict[tuple[str, int, str], dict[str, list[float]]] = {}
    failed: dict[tuple[str, int, str], str] = {}
    began = time.monotonic()
    rounds_done = 0
    point = 0
    last_round_s = 0.0
    for rnd in range(ROUNDS):
        if rnd and time.monotonic() - began + last_round_s > budget_s:
            print(f"{latency} ms: stopping after {rnd} round(s): the next would overrun the time budget", flush=True)
            break
        round_began = time.monotonic()
        for mode in MODES:
            for c in CONCURRENCY:
                order = [live[(i + rnd + point) % len(live)] for i in range(len(live))]
                point += 1
                for name in order:
                    if (mode, c, name) in failed:  # failed once: do not spend the budget failing again
                        continue
                    port, path, headers = targets[name]
                    req = request_bytes(port, path, body_for(mode), headers)
                    try:
                        r = asyncio.run(asyncio.wait_for(load(port, req, c, DURATION_S), POINT_TIMEOUT_S))
                    except Exception as exc:  # one failing point must not lose the others' numbers
                        failed[(mode, c, name)] = f"round {rnd + 1}: {_why(exc)}"
                        print(f"  {latency} ms {mode} c={c} {name}: FAILED {failed[(mode, c, name)]}", flush=True)
                        continue
                    slot = pooled.setdefault(
                        (mode, c, name), {"total": [], "ttfb": [], "gap": [], "n": [], "elapsed": []}
                    )
                    slot["total"] += r["total"]
                    slot["ttfb"] += r["ttfb"]
                    slot["gap"] += r["gap"]
                    slot["n"].append(float(r["n"]))
                    slot["elapsed"].append(r["elapsed"])
                    total = sorted(r["total"])
                    print(
                        f"{latency:>2} ms round {rnd + 1}/{ROUNDS} {mode:6} c={c:<2} {name:10} "
                        f"{r['n'] / r['elapsed']:7.0f} req/s  p50 {_pct(total, 0.5):8.3f} ms  "
                        f"p99 {_pct(total, 0.99):8.3f} ms",
                        flush=True,
                    )
        rounds_done += 1
        last_round_s = time.monotonic() - round_began
    return {"pooled": pooled, "failed": failed, "rounds": rounds_done}


def build_rows(
    latency: int, measured: dict[str, Any], down: dict[str, str], rss: dict[str, float]
) -> list[dict[str, Any]]:
    """One row per (mode, clients, system): numbers, or `failed` with the reason. Never a missing row."""
    rows = []
    for mode in MODES:
        for c in CONCURRENCY:
            for name in SYSTEMS:
                row: dict[str, Any] = {
                    "latency": latency,
                    "mode": mode,
                    "c": c,
                    "system": name,
                    "workers": WORKERS[name],
                    "rss_mb": rss.get(name),
                }
                slot = measured["pooled"].get((mode, c, name)) if measured else None
                if name in down:
                    row["failed"] = down[name]
                elif not slot or not slot["total"]:
                    row["failed"] = (measured or {}).get("failed", {}).get((mode, c, name), "no samples")
                else:
                    total, ttfb = sorted(slot["total"]), sorted(slot["ttfb"])
                    per_round = [n / e for n, e in zip(slot["n"], slot["elapsed"], strict=True)]
                    row.update(
                        n=len(total),
                        rps=sum(slot["n"]) / sum(slot["elapsed"]),
                        rps_spread=(max(per_round) - min(per_round)) / statistics.mean(per_round),
                        p50=_pct(total, 0.5),
                        p99=_pct(total, 0.99),
                        ttfb50=_pct(ttfb, 0.5),
                        gap=statistics.mean(slot["gap"]) * 1e3 if slot["gap"] else None,
                    )
                    if (mode, c, name) in measured["failed"]:
                        row["note"] = measured["failed"][(mode, c, name)]
                rows.append(row)
    direct = {(r["mode"], r["c"]): r for r in rows if r["system"] == "direct" and "failed" not in r}
    for r in rows:
        d = direct.get((r["mode"], r["c"]))
        if d and "failed" not in r:
            r.update(
                added_p50=r["p50"] - d["p50"],
                added_p99=r["p99"] - d["p99"],
                added_ttfb=r["ttfb50"] - d["ttfb50"],
                rps_ratio=r["rps"] / d["rps"],
            )
            if r["gap"] is not None and d["gap"] is not None:
                r["relay"] = r["gap"] - d["gap"]
    return rows


def run_phase(latency: int, budget_s: float) -> dict[str, Any]:
    """Start the fake (with `latency` ms) and every proxy, check their answers, measure, stop everything."""
    up_port = free_port()
    prefix = f"{{kbcompare-{os.getpid()}-{latency}}}:"
    servers, targets = build_servers(up_port, latency, prefix)
    startup: dict[str, float] = {}
    rss: dict[str, float] = {}
    shapes: dict[str, dict[str, object]] = {}
    down: dict[str, str] = {}
    measured: dict[str, Any] = {}
    try:
        try:
            servers["direct"].start()
            probe = request_bytes(up_port, targets["direct"][1], body_for("plain"))
            startup["direct"] = servers["direct"].wait_ready(probe, 30)
        except (OSError, RuntimeError) as exc:  # no upstream: nothing to measure in this phase
            down = {name: f"upstream did not start: {_why(exc)}" for name in SYSTEMS}
            return {
                "latency": latency,
                "rows": build_rows(latency, {}, down, rss),
                "startup": startup,
                "shapes": shapes,
                "rss": rss,
                "rounds": 0,
                "down": down,
            }
        for name in PROXIES:  # start together: LiteLLM alone takes ~10 s to come up
            try:
                servers[name].start()
            except OSError as exc:
                down[name] = f"could not start: {_why(exc)}"
        for name in PROXIES:
            if name in down:
                continue
            port, path, headers = targets[name]
            try:
                startup[name] = servers[name].wait_ready(request_bytes(port, path, body_for("plain"), headers))
                print(
                    f"{latency} ms: {servers[name].name} ready on 127.0.0.1:{port} after {startup[name]:.1f} s",
                    flush=True,
                )
            except RuntimeError as exc:
                lines = [ln for ln in servers[name].tail if ln.strip()]
                # the line that names the error, if any: a crashing Node prints its version last
                tail = [ln for ln in lines if "rror" in ln][-1:] or lines[-1:]
                down[name] = f"did not start: {_why(exc)}" + (f" (last output: {tail[0][:160]})" if tail else "")
                print(f"{latency} ms: {name} FAILED {down[name]}", flush=True)
        for name in SYSTEMS:
            if name in down:
                continue
            try:
                shapes[name] = answer_shape(*targets[name])
                print(f"{latency} ms: {name:10} answers: {shapes[name]}", flush=True)
            except Exception as exc:  # a wrong answer is a failure of that system, not of the run
                down[name] = f"wrong answer: {_why(exc)}"
                print(f"{latency} ms: {name} FAILED {down[name]}", flush=True)
        live = [name for name in SYSTEMS if name not in down]
        measured = measure(latency, targets, live, budget_s)
        rss = {name: servers[name].peak_rss_mb() for name in live}
    finally:
        for name in reversed(SYSTEMS):
            servers[name].stop()
        cleanup = "import redis,sys; r=redis.Redis(); k=list(r.scan_iter(match=sys.argv[1]+'*')); k and r.delete(*k)"
        subprocess.run(
            [os.getenv("BENCH_BRIDGE_PYTHON", str(ROOT / ".venv" / "bin" / "python")), "-c", cleanup, prefix],
            check=False,
            cwd=ROOT,
            timeout=60,
        )
    return {
        "latency": latency,
        "rows": build_rows(latency, measured, down, rss),
        "startup": startup,
        "shapes": shapes,
        "rss": rss,
        "rounds": measured.get("rounds", 0),
        "down": down,
    }


# -- ratios and targets --------------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b > 0 or a < 0:
        return "n/a"
    return f"{a / b:.2f}"


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kilo Bridge ÷ each peer for req/s (> 1 better), added p50/p99 and peak RSS (< 1 better), per point."""
    get = {(r["latency"], r["mode"], r["c"], r["system"]): r for r in rows}
    out = []
    for lat in LATENCIES:
        for mode in MODES:
            for c in CONCURRENCY:
                b = get.get((lat, mode, c, "bridge"), {})
                entry: dict[str, Any] = {"latency": lat, "mode": mode, "c": c}
                for peer in PEERS:
                    p = get.get((lat, mode, c, peer), {})
                    entry[peer] = {
                        "rps": _ratio(b.get("rps"), p.get("rps")),
                        "added_p50": _ratio(b.get("added_p50"), p.get("added_p50")),
                        "added_p99": _ratio(b.get("added_p99"), p.get("added_p99")),
                        "rss": _ratio(b.get("rss_mb"), p.get("rss_mb")),
                    }
                out.append(entry)
    return out


TARGETS = (
    ("added p50 ≤ 0.5 ms, 1 client", "p50", 1),
    ("added p50 ≤ 1 ms, 16 clients, one worker", "p50", 16),
    ("req/s > Portkey, 16 clients", "rps_portkey", 16),
    ("req/s > Portkey, 64 clients", "rps_portkey", 64),
    ("req/s ≥ 10x LiteLLM (one worker), 16 clients", "rps_litellm", 16),
    ("req/s ≥ 10x LiteLLM (one worker), 64 clients", "rps_litellm", 64),
    ("p99 lower than LiteLLM and Portkey, 1 client", "p99", 1),
    ("p99 lower than LiteLLM and Portkey, 16 clients", "p99", 16),
    ("p99 lower than LiteLLM and Portkey, 64 clients", "p99", 64),
    ("streamed first byte within 2 ms of direct, 1 client", "ttfb", 1),
    (f"req/s ≥ 0.5 of direct, 16 clients, {CORES} workers", "rps_direct", 16),
    (f"req/s ≥ 0.5 of direct, 64 clients, {CORES} workers", "rps_direct", 64),
)


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target per (upstream latency, mode): the measured value and met / missed (n/a when a row failed)."""
    get = {(r["latency"], r["mode"], r["c"], r["system"]): r for r in rows}
    out = []
    for title, kind, c in TARGETS:
        cells: dict[str, tuple[str, str]] = {}
        for lat in LATENCIES:
            for mode in MODES:
                col = f"{lat} ms {mode}"
                b = get.get((lat, mode, c, "bridge"), {})
                ll, pk = get.get((lat, mode, c, "litellm"), {}), get.get((lat, mode, c, "portkey"), {})
                bx, d = get.get((lat, mode, c, "bridge_x2"), {}), get.get((lat, mode, c, "direct"), {})
                if kind == "ttfb" and mode != "stream":
                    continue
                need = {
                    "p50": [b],
                    "ttfb": [b],
                    "rps_portkey": [b, pk],
                    "rps_litellm": [b, ll],
                    "p99": [b, ll, pk],
                    "rps_direct": [bx, d],
                }
                broken = [LABEL[r["system"]] if r else "?" for r in need[kind] if "failed" in r or not r]
                if broken:
                    cells[col] = (" and ".join(broken) + " failed", "n/a")
                elif kind == "p50":
                    limit = 0.5 if c == 1 else 1.0
                    cells[col] = (f"{b['added_p50']:+.2f} ms", "met" if b["added_p50"] <= limit else "missed")
                elif kind == "ttfb":
                    cells[col] = (f"{b['added_ttfb']:+.2f} ms", "met" if b["added_ttfb"] <= 2.0 else "missed")
                elif kind == "rps_portkey":
                    x = b["rps"] / pk["rps"]
                    cells[col] = (f"{x:.2f}x", "met" if x > 1 else "missed")
                elif kind == "rps_direct":
                    x = bx["rps"] / d["rps"]
                    cells[col] = (f"{x:.2f}", "met" if x >= 0.5 else "missed")
                elif kind == "rps_litellm":
                    x = b["rps"] / ll["rps"]
                    cells[col] = (f"{x:.1f}x", "met" if x >= 10 else "missed")
                else:
                    ok = b["p99"] < ll["p99"] and b["p99"] < pk["p99"]
                    cells[col] = (f"{b['p99']:.1f} vs {ll['p99']:.1f} / {pk['p99']:.1f} ms", "met" if ok else "missed")
        verdicts = [v for _, v in cells.values()]
        out.append(
            {"target": title, "cells": cells, "met": verdicts.count("met"), "of": sum(v != "n/a" for v in verdicts)}
        )
    return out


# -- main ----------------------------------------------------------------------------------------------------------


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--plot":
        plot(json.loads(Path(sys.argv[2]).read_text()))
        return 0
    BENCH.mkdir(exist_ok=True)
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    phases = []
    for i, lat in enumerate(LATENCIES):
        left = BUDGET_S - (time.monotonic() - began)
        phases.append(run_phase(lat, max(left / (len(LATENCIES) - i), 0.0)))
    rows = [r for ph in phases for r in ph["rows"]]
    result = {
        "rows": rows,
        "ratios": ratios(rows),
        "targets": check_targets(rows),
        "phases": [{k: v for k, v in ph.items() if k != "rows"} for ph in phases],
        "versions": _versions(),
        "when": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "platform": platform.platform(),
        "cpu": _cpu(),
        "cores": CORES,
        "seconds": DURATION_S,
        "rounds": ROUNDS,
        "budget_s": BUDGET_S,
        "wall_s": time.monotonic() - began,
        "loadavg": [load_before, os.getloadavg()[0]],
    }
    RESULTS.write_text(json.dumps(result, indent=1))
    print_summary(result)
    write_report(result)
    plot_python = os.getenv("BENCH_PLOT_PYTHON", _python(BENCH / "plot-venv"))
    done = subprocess.run([plot_python, __file__, "--plot", str(RESULTS)], check=False, cwd=ROOT)
    if done.returncode:
        print(f"plots not written: {plot_python} could not draw them (is matplotlib installed there?)")
    print(f"done in {result['wall_s']:.0f} s")
    return 1 if any("failed" in r and r["system"] in ("direct", "bridge") for r in rows) else 0


def print_summary(res: dict[str, Any]) -> None:
    print("\nKilo Bridge ÷ peer (req/s: > 1 is better; added p50 / p99: < 1 is better)")
    for e in res["ratios"]:
        parts = [f"{LABEL[p]}: req/s {e[p]['rps']}, p50 {e[p]['added_p50']}, p99 {e[p]['added_p99']}" for p in PEERS]
        print(f"  {e['latency']:>2} ms {e['mode']:6} c={e['c']:<2} " + " | ".join(parts))
    for ph in res["phases"]:
        b = ph["rss"].get("bridge")
        print(
            f"  peak RSS, {ph['latency']} ms phase: "
            + ", ".join(f"{LABEL[s]} {ph['rss'][s]:.0f} MB" for s in SYSTEMS if s in ph["rss"])
            + " | Kilo Bridge "
            + ", ".join(f"÷ {LABEL[p]} {_ratio(b, ph['rss'].get(p))}" for p in PEERS)
        )
    print("\nTargets")
    for t in res["targets"]:
        cells = "  ".join(f"[{col}] {val} {verdict}" for col, (val, verdict) in t["cells"].items())
        print(f"  {t['target']}: met {t['met']}/{t['of']}  {cells}")


def _f(value: float | None, fmt: str) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def write_report(res: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = res["rows"]
    v = res["versions"]
    cols = [f"{lat} ms {mode}" for lat in LATENCIES for mode in MODES]
    rounds = ", ".join(f"{ph['latency']} ms: {ph['rounds']}" for ph in res["phases"])
    lines = [
        "# Kilo Bridge vs LiteLLM proxy vs Portkey gateway, side by side",
        "",
        f"Measured {res['when']} by `make bench-compare`: {res['seconds']:.0f} s per point, interleaved rounds "
        f"(up to {res['rounds']}; done per upstream latency: {rounds}), whole run {res['wall_s']:.0f} s.",
        f"Machine: {res['cpu']}, {res['cores']} cores, {res['platform']}; Python {v['python']}, Node {v['node']}; "
        f"1-minute load average {res['loadavg'][0]:.1f} before and {res['loadavg'][1]:.1f} after the run (other "
        "work on the machine shows up as noise; the interleaved rounds share it out).",
        f"Systems: Kilo Bridge (this repository, 1 worker, and {res['cores']} workers as "
        f'"Kilo Bridge x{res["cores"]}", what `make run` starts), LiteLLM proxy {v["litellm"]} (1 worker, and '
        f'{res["cores"]} workers as "LiteLLM x{res["cores"]}"), Portkey gateway {v["portkey"]} (1 Node process, '
        f"with @hono/node-server {v['@hono/node-server']}, see notes).",
        "",
        "## Targets",
        "",
        "Kilo Bridge against the targets of the comparison, per upstream latency and mode. Added = Kilo Bridge's "
        "latency minus the direct call's; req/s ratios are Kilo Bridge ÷ peer; p99 cells read "
        "Kilo Bridge vs LiteLLM / Portkey (one worker each).",
        "",
        "| target | " + " | ".join(cols) + " | met |",
        "|---|" + "---|" * len(cols) + "---|",
    ]
    for t in res["targets"]:
        cells = [f"{t['cells'][c][0]} **{t['cells'][c][1]}**" if c in t["cells"] else "—" for c in cols]
        lines.append(f"| {t['target']} | " + " | ".join(cells) + f" | {t['met']} of {t['of']} |")
    lines += [
        "",
        "## Ratios: Kilo Bridge ÷ each peer",
        "",
        "req/s: above 1 means Kilo Bridge serves more. Added p50 / p99: below 1 means Kilo Bridge adds less. "
        "n/a where a row failed or the peer's added latency is not positive.",
        "",
        "| upstream | mode | clients | "
        + " | ".join(f"÷ {LABEL[p]} req/s | ÷ {LABEL[p]} added p50 | ÷ {LABEL[p]} added p99" for p in PEERS)
        + " |",
        "|---|---|---|" + "---|" * (3 * len(PEERS)),
    ]
    for e in res["ratios"]:
        lines.append(
            f"| {e['latency']} ms | {e['mode']} | {e['c']} | "
            + " | ".join(f"{e[p]['rps']} | {e[p]['added_p50']} | {e[p]['added_p99']}" for p in PEERS)
            + " |"
        )
    rss_line = []
    for ph in res["phases"]:
        parts = [f"{LABEL[s]} {ph['rss'][s]:.0f} MB" for s in SYSTEMS if s in ph["rss"]]
        rss_line.append(f"{ph['latency']} ms phase: " + ", ".join(parts))
    rss_ratio = []
    for ph in res["phases"]:
        b = ph["rss"].get("bridge")
        parts = [f"÷ {LABEL[p]} {_ratio(b, ph['rss'].get(p))}" for p in PEERS]
        rss_ratio.append(f"{ph['latency']} ms phase: " + ", ".join(parts))
    lines += [
        "",
        "Peak RSS (VmHWM of the process plus its children, summed): " + "; ".join(rss_line) + ". "
        "Kilo Bridge's peak RSS " + "; ".join(rss_ratio) + ".",
        "",
    ]
    lines += [
        "## All points",
        "",
        "Latency is the whole answer (last byte); TTFB is the first body byte carrying `data:`. Chunk relay delay "
        "is the mean gap between consecutive SSE events as the client receives them, minus the direct call's "
        "(streams only). req/s is timed requests over timed seconds, pooled over the rounds (spread = (max - min) "
        "/ mean of the per-round req/s). Peak RSS is per phase (the process's whole life in it).",
        "",
        "| upstream | mode | clients | system | workers | requests | req/s | spread | p50 ms | p99 ms "
        "| added p50 ms | added p99 ms | added TTFB ms | chunk relay delay ms | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = f"| {r['latency']} ms | {r['mode']} | {r['c']} | {LABEL[r['system']]} | {r['workers']} |"
        if "failed" in r:
            lines.append(head + f" failed: {r['failed'].replace('|', '/')} | | | | | | | | | |")
            continue
        relay = _f(r.get("relay"), "+.3f") if r["mode"] == "stream" else ""
        ttfb = _f(r.get("added_ttfb"), "+.3f")
        lines.append(
            head + f" {r['n']} | {r['rps']:.0f} | {r['rps_spread']:.0%} | {r['p50']:.3f} | {r['p99']:.3f} | "
            f"{_f(r.get('added_p50'), '+.3f')} | {_f(r.get('added_p99'), '+.3f')} | {ttfb} | {relay} | "
            f"{_f(r.get('rss_mb'), '.0f')} |"
        )
    notes = [
        f"- {r['latency']} ms {r['mode']} c={r['c']} {LABEL[r['system']]}: `{r['note']}` (other rounds kept)"
        for r in rows
        if r.get("note")
    ]
    if notes:
        lines += ["", "Rounds that failed while others of the same point succeeded:", "", *notes]
    lines += [
        "",
        "Start-up time (launch to first 200 answer) and what one answer looked like through each system "
        "(checked before timing: the same text and the same number of streamed content events, so every "
        "system did the same work):",
        "",
        "| upstream | system | start-up s | plain answer | streamed text | content events | `[DONE]` |",
        "|---|---|---|---|---|---|---|",
    ]
    for ph in res["phases"]:
        for name in SYSTEMS:
            sh = ph["shapes"].get(name)
            if not sh:
                lines.append(f"| {ph['latency']} ms | {LABEL[name]} | failed: {ph['down'].get(name, '?')} | | | | |")
                continue
            lines.append(
                f"| {ph['latency']} ms | {LABEL[name]} | {ph['startup'].get(name, 0):.1f} | "
                f"{len(str(sh.get('plain_content', '')))} chars | {len(str(sh.get('stream_content', '')))} "
                f"chars | {sh.get('stream_deltas', '?')} | {'yes' if sh.get('stream_done') else 'no'} |"
            )
    lines += [
        "",
        "![added latency](compare-latency.png)",
        "",
        "![throughput](compare-throughput.png)",
        "",
        "## Method",
        "",
        "- Upstream: the fake Kilo Gateway (`tests/fakes/fake_gateway.py`, aiohttp, `--always-usage`), in its own "
        f"process, with `--latency-ms 0` and then `--latency-ms 50` (one phase each; every process is started "
        f"afresh per phase). Plain answers are one JSON body; streamed answers are {CHUNKS} content chunks plus "
        "role, finish, usage and `[DONE]` events. Every system calls the same `POST /api/gateway/chat/completions`.",
        "- Kilo Bridge: `.venv/bin/python -m kilo_bridge serve` with `WEB_CONCURRENCY=1`, and again with "
        f"`WEB_CONCURRENCY={res['cores']}` (`make run`'s default: a worker per core); `JOBS_CONCURRENCY=0` (no agent "
        "job worker beside it), real Redis on loopback with a run-unique `REDIS_PREFIX`, `AUTH_REQUIRED=false`; "
        "route `POST /v1/chat/completions`.",
        "- LiteLLM: `litellm --config .bench/litellm-config.yaml --num_workers 1`, and again with "
        f"`--num_workers {res['cores']}` (as many workers as cores); one model `fake/model-a` → "
        "`openai/fake/model-a` at the fake; no database, no master key, telemetry off, local cost map; route "
        "`POST /chat/completions`.",
        "- Portkey: `node …/@portkey-ai/gateway/build/start-server.js --port=P --headless` (one Node process), "
        "route `POST /v1/chat/completions` with `x-portkey-provider: openai` and `x-portkey-custom-host` = the fake.",
        "- Load: one Python asyncio generator (`tests/benchmarks/_load.py`), keep-alive HTTP/1.1 over loopback, "
        "1, 16 or 64 clients firing back to back; each connection sends up to 20 warm-up requests (at most 0.5 s) "
        f"before the clock starts. Each (mode, clients) point runs every system for {res['seconds']:.0f} s per "
        "round; the order of the systems rotates at every point so slow moments of the machine are shared out. "
        f"Rounds stop early when the next one would overrun the time budget ({res['budget_s']:.0f} s of measuring "
        "for the whole run).",
        "- p50/p99 come from all samples of all rounds pooled; added = system - direct within the same phase. "
        "A point that fails once is not retried in later rounds.",
        "",
        "## Reading it",
        "",
        "- Everything shares 2 cores: the load generator, the fake upstream and the proxy under test. Absolute "
        "numbers are pessimistic and move between runs; the added milliseconds and the ratios of one run are the "
        "comparison. With 64 clients the Python load generator itself is busy, which caps what any system can show.",
        "- With 16 or 64 clients one worker is saturated by design, so the added latency there is mostly queueing "
        "(clients ÷ req/s, Little's law): it tracks each proxy's CPU cost per request, which req/s shows directly. "
        "LiteLLM with 2 workers shares the same 2 cores with the load generator and the upstream.",
        "- With 50 ms of upstream latency, no system can exceed clients ÷ 0.05 s req/s (20, 320 and 1280 for 1, 16 "
        "and 64 clients): the req/s targets there measure how close each proxy gets to that ceiling.",
        "- Portkey's stream relay waits 25 ms before passing on the first event of every stream (a `setTimeout(…, 25)`"
        " in its stream reader), which shows in its first byte and chunk relay delay.",
        "- Portkey 1.15.2 with the newest `@hono/node-server` answers every streamed request with 500 "
        "(`TypeError: immutable`, Portkey-AI/gateway#1389 and #1550); the bench installs it with "
        "`@hono/node-server` pinned to 1.13.8 through npm `overrides`, which makes both plain and streamed "
        "requests work. Its plain path is unaffected by that choice.",
        "- LiteLLM 1.108.7 refuses to start without a master key unless "
        "`dangerously_permit_weak_or_unset_master_key` is set; the bench sets it so that no system checks keys "
        "(Kilo Bridge runs with `AUTH_REQUIRED=false` for the same reason).",
        "- Portkey's start script listens on all interfaces (it has no host option); the benchmark only ever "
        "sends to 127.0.0.1.",
        "",
        "## Rerun",
        "",
        "```sh",
        "make bench-compare                      # installs .bench/ once, then about 10 minutes",
        "BENCH_SECONDS=5 BENCH_BUDGET_S=1500 make bench-compare   # longer, steadier",
        "BENCH_LATENCIES=0 make bench-compare    # only the 0 ms upstream",
        "```",
        "",
        "Raw numbers of the last run: `.bench/compare-results.json`.",
        "",
    ]
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "compare.md").write_text("\n".join(lines))
    print("wrote docs/benchmarks/compare.md")


def plot(res: dict[str, Any]) -> None:
    """Grouped bars, one panel row per upstream latency; runs under the bench's own Python (matplotlib lives in
    .bench/, not in .venv). A failed point is drawn as an empty bar labelled "failed"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {(r["latency"], r["mode"], r["c"], r["system"]): r for r in res["rows"]}
    lats = sorted({r["latency"] for r in res["rows"]})
    groups = [(m, c) for m in MODES for c in CONCURRENCY]
    labels = [f"{m}\n{c} client{'s' if c > 1 else ''}" for m, c in groups]
    colors = {
        "direct": "#999999",
        "bridge": "#1f77b4",
        "bridge_x2": "#aec7e8",
        "before": "#9467bd",
        "litellm": "#d62728",
        "litellm_x2": "#ff9896",
        "portkey": "#2ca02c",
    }

    def bars(ax: object, lat: int, systems: tuple[str, ...], key: str, fmt: str) -> None:
        width = 0.8 / len(systems)
        for i, s in enumerate(systems):
            xs = [g + (i - (len(systems) - 1) / 2) * width for g in range(len(groups))]
            got = [rows.get((lat, m, c, s), {}) for m, c in groups]
            ys = [r.get(key) or 0.0 for r in got]
            drawn = ax.bar(xs, ys, width, label=LABEL[s], color=colors[s])  # type: ignore[attr-defined]
            texts = ["failed" if "failed" in r else fmt.format(y) for r, y in zip(got, ys, strict=True)]
            ax.bar_label(drawn, labels=texts, fontsize=6, padding=1, rotation=90)  # type: ignore[attr-defined]
        ax.set_xticks(range(len(groups)), labels)  # type: ignore[attr-defined]

    fig, axes = plt.subplots(len(lats), 2, figsize=(14, 4.8 * len(lats)), squeeze=False)
    for row, lat in enumerate(lats):
        for ax, key, title in (
            (axes[row][0], "added_p50", "added p50 (ms)"),
            (axes[row][1], "added_p99", "added p99 (ms)"),
        ):
            bars(ax, lat, PROXIES, key, "{:.1f}")
            ax.set_yscale("symlog", linthresh=1)
            ax.set_title(f"{title}, upstream {lat} ms, log scale above 1 ms")
            ax.grid(axis="y", alpha=0.3)
            ax.margins(y=0.25)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Latency added over calling the upstream directly, lower is better ({res['when']})")
    fig.tight_layout()
    fig.savefig(DOCS / "compare-latency.png", dpi=100)

    fig, axes = plt.subplots(len(lats), 1, figsize=(12, 4.8 * len(lats)), squeeze=False)
    for row, lat in enumerate(lats):
        ax = axes[row][0]
        bars(ax, lat, SYSTEMS, "rps", "{:.0f}")
        ax.set_yscale("log")
        ax.set_ylabel("requests / s, log scale")
        ax.set_title(f"Throughput, upstream {lat} ms, higher is better")
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.25)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Throughput ({res['when']})")
    fig.tight_layout()
    fig.savefig(DOCS / "compare-throughput.png", dpi=100)
    print("wrote docs/benchmarks/compare-latency.png, compare-throughput.png")


if __name__ == "__main__":
    sys.exit(main())
