"""`make bench-compare`: Kilo Bridge side by side with LiteLLM proxy and Portkey's gateway, one run, one machine.

All three proxies front the same fake Kilo Gateway (tests/fakes/fake_gateway.py) in its own process; each proxy
runs with one worker; one keep-alive load generator (tests/benchmarks/_load.py) drives each of them and the fake
directly, plain and streamed, at 1 and 16 clients. Rounds are interleaved with the order rotated, so a noisy
moment of the shared machine lands on every system alike. Loopback only; bounded; every process it starts is
stopped at the end. Writes docs/benchmarks/compare.md and two PNG plots (matplotlib from .bench/, never .venv).

Env: BENCH_SECONDS (per point, default 3), BENCH_ROUNDS (default 3), BENCH_DIR (default .bench).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests.benchmarks` importable
    sys.path.insert(0, str(ROOT))

from tests.benchmarks._load import KEY, Server, free_port, load, request_bytes  # noqa: E402

DURATION_S = float(os.getenv("BENCH_SECONDS", "3"))
ROUNDS = int(os.getenv("BENCH_ROUNDS", "3"))
BENCH = Path(os.getenv("BENCH_DIR", str(ROOT / ".bench")))
SYSTEMS = ("direct", "bridge", "litellm", "portkey")
PROXIES = SYSTEMS[1:]
MODES = ("plain", "stream")
CONCURRENCY = (1, 16)
CHUNKS = 50
# 72 characters of answer ("Echo: " + prompt), so the fake's stream really carries CHUNKS content chunks.
PROMPT = "Say hello to the side-by-side benchmark of three gateways, please."
MODEL = "fake/model-a"
DOCS = ROOT / "docs" / "benchmarks"
RESULTS = BENCH / "compare-results.json"


def _python(venv: Path) -> str:
    return str(venv / "bin" / "python")


def _versions() -> dict[str, str]:
    """Versions of the systems under test, read from what is installed (not from what was asked for)."""
    out = {"python": platform.python_version()}
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    res = subprocess.run([_python(BENCH / "litellm-venv"), "-c", probe], capture_output=True, text=True, check=False)
    out["litellm"] = res.stdout.strip() or "?"
    modules = BENCH / "portkey" / "node_modules"
    for name, rel in (("portkey", "@portkey-ai/gateway"), ("@hono/node-server", "@hono/node-server")):
        try:
            out[name] = json.loads((modules / rel / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            out[name] = "?"
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    out["node"] = node.stdout.strip()
    return out


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build_servers(up_port: int, prefix: str) -> tuple[dict[str, Server], dict[str, tuple[int, str, dict[str, str]]]]:
    """The fake upstream and the three proxies (not started), and how to address each system."""
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("LITELLM_", "DATABASE_URL", "PORTKEY_", "KILO_", "REDIS_PREFIX"))}
    upstream = f"http://127.0.0.1:{up_port}/api/gateway"
    bridge_port, litellm_port, portkey_port = free_port(), free_port(), free_port()
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
        # No database and no master key, like the other two: measure the proxy hop, not key checks.
        "  dangerously_permit_weak_or_unset_master_key: true\n")

    servers = {
        "direct": Server("fake gateway", [sys.executable, "tests/fakes/fake_gateway.py", "--port", str(up_port),
                                          "--always-usage", "--chunks", str(CHUNKS)], base_env, up_port),
        "bridge": Server("kilo bridge", [bridge_python, "-m", "kilo_bridge", "serve"],
                         {**base_env, "KILO_API_KEY": KEY, "KILO_GATEWAY_BASE": upstream, "PORT": str(bridge_port),
                          "REDIS_PREFIX": prefix, "AUTH_REQUIRED": "false"}, bridge_port),
        "litellm": Server("litellm proxy", [str(BENCH / "litellm-venv" / "bin" / "litellm"), "--config", str(config),
                                            "--host", "127.0.0.1", "--port", str(litellm_port), "--num_workers", "1",
                                            "--telemetry", "False"],
                          {**base_env, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
                           "LITELLM_LOG": "ERROR", "DISABLE_SCHEMA_UPDATE": "True"}, litellm_port),
        "portkey": Server("portkey gateway", ["node", str(BENCH / "portkey" / "node_modules" / "@portkey-ai" /
                                                      "gateway" / "build" / "start-server.js"),
                                              f"--port={portkey_port}", "--headless"], base_env, portkey_port),
    }
    portkey_headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": upstream}
    targets = {
        "direct": (up_port, "/api/gateway/chat/completions", {}),
        "bridge": (bridge_port, "/v1/chat/completions", {}),
        "litellm": (litellm_port, "/chat/completions", {}),
        "portkey": (portkey_port, "/v1/chat/completions", portkey_headers),
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
            conn.request("POST", path, json.dumps(body_for(mode)),
                         {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}", **headers})
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
        out.update(stream_content=''.join(text), stream_deltas=deltas, stream_done="data: [DONE]" in raw)
    return out


def _pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))] * 1e3


def measure(targets: dict[str, tuple[int, str, dict[str, str]]]) -> tuple[list[dict], list[str]]:
    """Every (mode, clients, system) point ROUNDS times, order rotated per point; samples pooled across rounds."""
    pooled: dict[tuple[str, int, str], dict[str, list[float]]] = {}
    errors: list[str] = []
    point = 0
    for rnd in range(ROUNDS):
        for mode in MODES:
            for c in CONCURRENCY:
                order = [SYSTEMS[(i + rnd + point) % len(SYSTEMS)] for i in range(len(SYSTEMS))]
                point += 1
                for name in order:
                    port, path, headers = targets[name]
                    req = request_bytes(port, path, body_for(mode), headers)
                    try:
                        r = asyncio.run(load(port, req, c, DURATION_S))
                    except Exception as exc:  # one failing point must not lose the others' numbers
                        errors.append(f"round {rnd + 1} {mode} c={c} {name}: {type(exc).__name__}: {exc}"[:300])
                        print("  ERROR", errors[-1], flush=True)
                        continue
                    slot = pooled.setdefault((mode, c, name), {"total": [], "ttfb": [], "n": [], "elapsed": []})
                    slot["total"] += r["total"]  # type: ignore[arg-type]
                    slot["ttfb"] += r["ttfb"]  # type: ignore[arg-type]
                    slot["n"].append(float(r["n"]))  # type: ignore[arg-type]
                    slot["elapsed"].append(float(r["elapsed"]))  # type: ignore[arg-type]
                    total = sorted(r["total"])  # type: ignore[type-var]
                    print(f"round {rnd + 1}/{ROUNDS} {mode:6} c={c:<2} {name:8} {r['n'] / r['elapsed']:8.0f} req/s  "
                          f"p50 {_pct(total, 0.5):7.3f} ms  p99 {_pct(total, 0.99):7.3f} ms", flush=True)
    rows = []
    for mode in MODES:
        for c in CONCURRENCY:
            for name in SYSTEMS:
                slot = pooled.get((mode, c, name))
                if not slot or not slot["total"]:
                    continue
                total, ttfb = sorted(slot["total"]), sorted(slot["ttfb"])
                per_round = [n / e for n, e in zip(slot["n"], slot["elapsed"], strict=True)]
                rows.append({"mode": mode, "c": c, "system": name, "n": len(total),
                             "rps": sum(slot["n"]) / sum(slot["elapsed"]),
                             "rps_spread": (max(per_round) - min(per_round)) / statistics.mean(per_round),
                             "p50": _pct(total, 0.5), "p99": _pct(total, 0.99), "ttfb50": _pct(ttfb, 0.5)})
    by_key = {(r["mode"], r["c"]): r for r in rows if r["system"] == "direct"}
    for r in rows:
        d = by_key.get((r["mode"], r["c"]))
        if d:
            r.update(added_p50=r["p50"] - d["p50"], added_p99=r["p99"] - d["p99"],
                     added_ttfb=r["ttfb50"] - d["ttfb50"], rps_ratio=r["rps"] / d["rps"])
    return rows, errors


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--plot":
        plot(json.loads(Path(sys.argv[2]).read_text()))
        return 0
    BENCH.mkdir(exist_ok=True)
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    up_port = free_port()
    prefix = f"{{kbcompare-{os.getpid()}}}:"
    servers, targets = build_servers(up_port, prefix)
    startup: dict[str, float] = {}
    rss: dict[str, float] = {}
    shapes: dict[str, dict[str, object]] = {}
    try:
        servers["direct"].start()
        probe = request_bytes(up_port, targets["direct"][1], body_for("plain"))
        startup["direct"] = servers["direct"].wait_ready(probe, 30)
        for name in PROXIES:  # start together: LiteLLM alone takes ~10 s to come up
            servers[name].start()
        for name in PROXIES:
            port, path, headers = targets[name]
            startup[name] = servers[name].wait_ready(request_bytes(port, path, body_for("plain"), headers))
            print(f"{servers[name].name} ready on 127.0.0.1:{port} after {startup[name]:.1f} s", flush=True)
        for name in SYSTEMS:
            shapes[name] = answer_shape(*targets[name])
            print(f"{name:8} answers: {shapes[name]}", flush=True)
        rows, errors = measure(targets)
        rss = {name: servers[name].peak_rss_mb() for name in SYSTEMS}
    finally:
        for name in reversed(SYSTEMS):
            servers[name].stop()
        cleanup = "import redis,sys; r=redis.Redis(); k=list(r.scan_iter(match=sys.argv[1]+'*')); k and r.delete(*k)"
        subprocess.run([os.getenv("BENCH_BRIDGE_PYTHON", str(ROOT / ".venv" / "bin" / "python")), "-c", cleanup,
                        prefix], check=False, cwd=ROOT)
    result = {"rows": rows, "errors": errors, "rss": rss, "startup": startup, "shapes": shapes, "versions": _versions(),
              "when": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", "platform": platform.platform(),
              "cpu": _cpu(), "cores": os.cpu_count(), "seconds": DURATION_S, "rounds": ROUNDS,
              "wall_s": time.monotonic() - began, "loadavg": [load_before, os.getloadavg()[0]]}
    RESULTS.write_text(json.dumps(result, indent=1))
    write_report(result)
    plot_python = os.getenv("BENCH_PLOT_PYTHON", _python(BENCH / "plot-venv"))
    done = subprocess.run([plot_python, __file__, "--plot", str(RESULTS)], check=False, cwd=ROOT)
    if done.returncode:
        print(f"plots not written: {plot_python} could not draw them (is matplotlib installed there?)")
    print(f"done in {result['wall_s']:.0f} s")
    return 1 if errors else 0


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 and a >= 0 else "n/a"


def write_report(res: dict) -> None:
    rows: list[dict] = res["rows"]
    get = {(r["mode"], r["c"], r["system"]): r for r in rows}
    v = res["versions"]
    lines = [
        "# Kilo Bridge vs LiteLLM proxy vs Portkey gateway, side by side",
        "",
        f"Measured {res['when']} by `make bench-compare`, {res['rounds']} interleaved rounds x {res['seconds']:.0f} s "
        f"per point, whole run {res['wall_s']:.0f} s.",
        f"Machine: {res['cpu']}, {res['cores']} cores, {res['platform']}; Python {v['python']}, Node {v['node']}; "
        f"1-minute load average {res['loadavg'][0]:.1f} before and {res['loadavg'][1]:.1f} after the run (other "
        "work on the machine shows up as noise; the interleaved rounds share it out).",
        f"Systems: Kilo Bridge (this repository), LiteLLM proxy {v['litellm']}, Portkey gateway {v['portkey']} "
        f"(with @hono/node-server {v['@hono/node-server']}, see notes).",
        "",
        "## Headline: latency added over calling the upstream directly",
        "",
        "Added = the system's latency minus the direct call's, same run, same load generator. Lower is better. "
        "Ratio < 1 means Kilo Bridge adds less than the other system.",
        "",
        "| mode | clients | bridge added p50 | LiteLLM added p50 | Portkey added p50 | bridge/LiteLLM p50 "
        "| bridge/Portkey p50 | bridge added p99 | LiteLLM added p99 | Portkey added p99 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        for c in CONCURRENCY:
            b, ll, pk = (get.get((mode, c, s)) for s in PROXIES)
            if not (b and ll and pk and "added_p50" in b):
                continue
            lines.append(f"| {mode} | {c} | {b['added_p50']:+.2f} ms | {ll['added_p50']:+.2f} ms | "
                         f"{pk['added_p50']:+.2f} ms | {_ratio(b['added_p50'], ll['added_p50'])} | "
                         f"{_ratio(b['added_p50'], pk['added_p50'])} | {b['added_p99']:+.2f} ms | "
                         f"{ll['added_p99']:+.2f} ms | {pk['added_p99']:+.2f} ms |")
    lines += [
        "",
        "## All points",
        "",
        "Latency is the whole answer (last byte); TTFB is the first body byte carrying `data:` for streams. "
        "req/s is timed requests over timed seconds, pooled over the rounds (spread = (max - min) / mean of the "
        "per-round req/s).",
        "",
        "| mode | clients | system | requests | req/s | spread | p50 ms | p99 ms | TTFB p50 ms | added p50 ms "
        "| added p99 ms | added TTFB ms | req/s vs direct |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['c']} | {r['system']} | {r['n']} | {r['rps']:.0f} | {r['rps_spread']:.0%} | "
                     f"{r['p50']:.3f} | {r['p99']:.3f} | {r['ttfb50']:.3f} | {r.get('added_p50', 0):+.3f} | "
                     f"{r.get('added_p99', 0):+.3f} | {r.get('added_ttfb', 0):+.3f} | {r.get('rps_ratio', 0):.2f} |")
    lines += ["", "Peak RSS (VmHWM, process and children), start-up time (launch to first 200 answer) and what one "
              "answer looked like through each system (checked before timing: the same text, and the same number "
              "of streamed content events, so every system did the same work):", "",
              "| system | peak RSS MB | start-up s | plain answer | streamed text | content events | `[DONE]` |",
              "|---|---|---|---|---|---|---|"]
    for name in SYSTEMS:
        sh = res["shapes"].get(name, {})
        lines.append(f"| {name} | {res['rss'].get(name, float('nan')):.0f} | {res['startup'].get(name, 0):.1f} | "
                     f"{len(str(sh.get('plain_content', '')))} chars | {len(str(sh.get('stream_content', '')))} chars "
                     f"| {sh.get('stream_deltas', '?')} | {'yes' if sh.get('stream_done') else 'no'} |")
    if res["errors"]:
        lines += ["", "Errors during the run (these points are missing from the tables):", ""]
        lines += [f"- `{e}`" for e in res["errors"]]
    lines += [
        "",
        "![added latency](compare-latency.png)",
        "",
        "![throughput](compare-throughput.png)",
        "",
        "## Method",
        "",
        f"- Upstream: the fake Kilo Gateway (`tests/fakes/fake_gateway.py`, aiohttp, 0 ms think time, "
        f"`--always-usage`), in its own process. Plain answers are one JSON body; streamed answers are {CHUNKS} "
        "content chunks plus role, finish, usage and `[DONE]` events. Every system calls the same "
        "`POST /api/gateway/chat/completions` on it.",
        "- Kilo Bridge: `.venv/bin/python -m kilo_bridge serve` (one uvicorn worker, real Redis on loopback with a "
        "run-unique `REDIS_PREFIX`, `AUTH_REQUIRED=false`), route `POST /v1/chat/completions`.",
        "- LiteLLM: `litellm --config .bench/litellm-config.yaml --num_workers 1` (one model `fake/model-a` → "
        "`openai/fake/model-a` at the fake; no database, no master key, telemetry off, local cost map), route "
        "`POST /chat/completions`.",
        "- Portkey: `node …/@portkey-ai/gateway/build/start-server.js --port=P --headless` (one Node process), "
        "route `POST /v1/chat/completions` with `x-portkey-provider: openai` and `x-portkey-custom-host` = the fake.",
        "- Load: one Python asyncio generator (`tests/benchmarks/_load.py`), keep-alive HTTP/1.1 over loopback, "
        "1 or 16 clients firing back to back; each connection sends up to 20 warm-up requests (at most 0.5 s) "
        "before the clock starts. "
        f"Each (mode, clients) point runs every system for {res['seconds']:.0f} s; {res['rounds']} rounds, and "
        "the order of the systems rotates at every point so slow moments of the machine are shared out.",
        "- p50/p99 come from all samples of all rounds pooled; added = system - direct within this run.",
        "",
        "## Reading it",
        "",
        "- Everything shares 2 cores: the load generator, the fake upstream and the proxy under test. Absolute "
        "numbers are pessimistic and move between runs; the added milliseconds and the ratios of one run are the "
        "comparison.",
        "- At 16 clients one worker is saturated by design, so the added latency there is mostly queueing "
        "(clients ÷ req/s): it tracks the per-request CPU cost of each proxy, which req/s shows directly.",
        "- Portkey's stream relay waits 25 ms before passing on the first event of every stream (a `setTimeout(…, 25)`"
        " in its stream reader, and 1 ms between later events for some providers), which dominates its "
        "streamed latency.",
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
        "make bench-compare                      # installs .bench/ once, then about 4 minutes",
        "BENCH_SECONDS=5 BENCH_ROUNDS=5 make bench-compare   # longer, steadier",
        "```",
        "",
        "Raw numbers of the last run: `.bench/compare-results.json`.",
        "",
    ]
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "compare.md").write_text("\n".join(lines))
    print("wrote docs/benchmarks/compare.md")


def plot(res: dict) -> None:
    """Grouped bars; runs under the bench's own Python (matplotlib lives in .bench/, not in .venv)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {(r["mode"], r["c"], r["system"]): r for r in res["rows"]}
    groups = [(m, c) for m in MODES for c in CONCURRENCY]
    labels = [f"{m}\n{c} client{'s' if c > 1 else ''}" for m, c in groups]
    colors = {"direct": "#999999", "bridge": "#1f77b4", "litellm": "#d62728", "portkey": "#2ca02c"}
    names = {"direct": "direct", "bridge": "Kilo Bridge", "litellm": "LiteLLM proxy", "portkey": "Portkey gateway"}

    def bars(ax: object, systems: tuple[str, ...], key: str, fmt: str) -> None:
        width = 0.8 / len(systems)
        for i, s in enumerate(systems):
            xs = [g + (i - (len(systems) - 1) / 2) * width for g in range(len(groups))]
            ys = [rows.get((m, c, s), {}).get(key, 0.0) for m, c in groups]
            drawn = ax.bar(xs, ys, width, label=names[s], color=colors[s])  # type: ignore[attr-defined]
            ax.bar_label(drawn, labels=[fmt.format(y) for y in ys], fontsize=7, padding=1)  # type: ignore[attr-defined]
        ax.set_xticks(range(len(groups)), labels)  # type: ignore[attr-defined]

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, title in ((axes[0], "added_p50", "added p50 (ms)"), (axes[1], "added_p99", "added p99 (ms)")):
        bars(ax, PROXIES, key, "{:.1f}")
        ax.set_yscale("symlog", linthresh=1)
        ax.set_title(title + ", log scale above 1 ms")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"Latency added over calling the upstream directly, lower is better ({res['when']})")
    fig.tight_layout()
    fig.savefig(DOCS / "compare-latency.png", dpi=110)

    fig, ax = plt.subplots(figsize=(10, 4.8))
    bars(ax, SYSTEMS, "rps", "{:.0f}")
    ax.set_ylabel("requests / s (one worker each)")
    ax.set_title(f"Throughput, higher is better ({res['when']})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(DOCS / "compare-throughput.png", dpi=110)
    print("wrote docs/benchmarks/compare-latency.png, compare-throughput.png")


if __name__ == "__main__":
    sys.exit(main())
