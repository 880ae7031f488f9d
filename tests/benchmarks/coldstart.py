"""`make bench-coldstart`: what importing each Lambda entry point costs a fresh interpreter (the cold start we own).

For every entry point, N fresh `.venv/bin/python` processes with a Lambda-like environment import it and report the
import's wall time; N more run with `-X importtime` to name the modules that cost the most. A `python -c pass`
baseline is the interpreter's own start-up. Entry points that do not import (yet) are skipped with the reason.
A reference row measures the same way a FastAPI + Mangum hello-world handler (written under .bench/ref at run time,
imported by .bench/ref-venv's Python 3.11, which `make bench-coldstart` installs with pinned fastapi and mangum).
Writes docs/benchmarks/coldstart.md and coldstart.png (matplotlib from .bench/, never .venv).

Then the first answer: process start → the API handler's response to short routes' events (events/api/),
against the hello world's, interleaved.

Env: BENCH_COLD_RUNS (default 7).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = os.getenv("BENCH_BRIDGE_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
RUNS = int(os.getenv("BENCH_COLD_RUNS", "7"))
BENCH = Path(os.getenv("BENCH_DIR", str(ROOT / ".bench")))
REF_PYTHON = os.getenv("BENCH_REF_PYTHON", str(BENCH / "ref-venv" / "bin" / "python"))
REF_DIR = BENCH / "ref"
REF_MODULE = "kb_ref_hello"
REF_WHAT = "reference: FastAPI + Mangum hello world (one GET route), not part of this repository"
# The smallest handler a FastAPI-on-Lambda service starts from: what a framework alone costs a cold start.
REF_SOURCE = '''"""Reference Lambda handler for the cold-import benchmark: FastAPI + Mangum, one route."""

from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/hello")
def hello() -> dict[str, str]:
    return {"message": "hello"}


handler = Mangum(app, lifespan="off")
'''
REF_ENV = {"PYTHONPATH": str(REF_DIR)}
NO_PYC_RUNS = 3
# issue #19: import at most this fraction of the hello world's (the first answer of the API function's routes
# is held to the API function's own ratio).
TARGETS = {
    "functions.api.app": 0.8,
    "functions.stream.serve": 0.8,
    "functions.dispatcher.app": 0.6,
    "functions.finalizer.app": 0.6,
}
FIRST_TARGET = 0.8
ENTRY_POINTS = {
    "functions.api.app": "API function (Mangum, short routes)",
    "functions.dispatcher.app": "dispatcher function (SQS → ECS RunTask)",
    "functions.finalizer.app": "finalizer function (ECS task state change)",
    "functions.scheduled.app": "scheduled function (EventBridge Scheduler)",
    "functions.stream.serve": "stream function (what run.sh starts under the Lambda Web Adapter: uvicorn + the app)",
}
LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "AUTH_REQUIRED": "false",
    # Obvious fakes: an import must never reach AWS, and boto3 must not go looking for credentials.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}
DOCS = ROOT / "docs" / "benchmarks"
RESULTS = ROOT / ".bench" / "coldstart-results.json"
# os._exit: interpreter teardown (~0.2 s with the API app's modules) is not part of a cold start; leave it out.
TIMED = (
    "import os, time; t = time.perf_counter(); import {mod}; print('IMPORT_S', time.perf_counter() - t, "
    "flush=True); os._exit(0)"
)
BASELINE = "import os; os._exit(0)"
# The first answer: process start → the handler's response to one short route's API Gateway event. An import
# that only moves its cost into the first request shows here. Our handler is loaded by scripts/invoke.py's
# loader (as `make invoke` and a Lambda cold start load it); the hello world by a plain import.
FIRST = (
    "import os, sys, time, json; t0 = time.perf_counter(); sys.path.insert(0, {scripts!r}); import invoke; "
    "{load}; t1 = time.perf_counter(); event = json.loads({event!r}); "
    "r = handler(event, invoke.Context(function_name='bench', aws_request_id='bench-first')); "
    "t2 = time.perf_counter(); print('FIRST', t1 - t0, t2 - t1, r['statusCode'], flush=True); os._exit(0)"
)
FIRST_CASES = {
    "api /healthz": ("api", "events/api/healthz.json"),
    "api /api/kilo/agents": ("api", "events/api/agents.json"),
}


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")}
    return {**keep, **LAMBDA_ENV, **(extra or {})}


def _run(
    code: str, importtime: bool = False, extra: dict[str, str] | None = None, python: str = PYTHON
) -> tuple[float, str, str, int]:
    """(process wall s, stdout, stderr, exit code) of one fresh interpreter."""
    cmd = [python, *(["-X", "importtime"] if importtime else []), "-c", code]
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(extra), capture_output=True, text=True, timeout=120, check=False)
    return time.perf_counter() - began, proc.stdout, proc.stderr, proc.returncode


def _import_s(stdout: str) -> float:
    for line in stdout.splitlines():
        if line.startswith("IMPORT_S "):
            return float(line.split()[1])
    raise ValueError("no IMPORT_S line")


def parse_importtime(stderr: str) -> dict[str, tuple[float, float, int]]:
    """module → (self µs, cumulative µs, nesting depth) from `-X importtime` output."""
    out: dict[str, tuple[float, float, int]] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        try:
            self_us, cum_us, name = line[len("import time:") :].split("|", 2)
        except ValueError:
            continue
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        out[name.strip()] = (float(self_us), float(cum_us), depth)
    return out


def check_entry(mod: str, python: str = PYTHON, env: dict[str, str] | None = None) -> str | None:
    """Why `mod` does not import, or None; the import also leaves bytecode caches warm, as a deployed package
    has them."""
    _, _, err, code = _run(f"import {mod}", extra=env, python=python)
    if code == 0:
        return None
    return next((ln for ln in reversed(err.strip().splitlines()) if ln.strip()), "no output")[:300]


def timed_rounds(cases: dict[str, tuple[str, dict[str, str]]]) -> dict[str, tuple[list[float], list[float]]]:
    """module → (process walls s, import s) over RUNS rounds, each round importing every case once, the
    reference included: a busy moment on the shared machine hits all of them, so their ratios hold."""
    out: dict[str, tuple[list[float], list[float]]] = {mod: ([], []) for mod in cases}
    for _ in range(RUNS):
        for mod, (python, env) in cases.items():
            w, stdout, _, _ = _run(TIMED.format(mod=mod), extra=env, python=python)
            out[mod][0].append(w)
            out[mod][1].append(_import_s(stdout))
    return out


def measure_entry(
    mod: str, walls: list[float], imports: list[float], python: str = PYTHON, env: dict[str, str] | None = None
) -> dict[str, Any]:
    env = env or {}
    samples: dict[str, list[tuple[float, float, int]]] = {}
    for _ in range(RUNS):
        _, _, err, _ = _run(f"import {mod}", importtime=True, extra=env, python=python)
        for name, v in parse_importtime(err).items():
            samples.setdefault(name, []).append(v)
    modules: dict[str, dict[str, float]] = {
        name: {
            "self_ms": statistics.median(s for s, _, _ in v) / 1e3,
            "cum_ms": statistics.median(c for _, c, _ in v) / 1e3,
            "depth": v[0][2],
        }
        for name, v in samples.items()
    }
    top = sorted(((n, m) for n, m in modules.items() if n != mod), key=lambda kv: -kv[1]["cum_ms"])[:10]
    # Self times summed per top-level package: these do not overlap, so they show which dependency to defer.
    packages: dict[str, list[float]] = {}
    for n, m in modules.items():
        packages.setdefault(n.split(".")[0], [0.0, 0])
        packages[n.split(".")[0]][0] += m["self_ms"]
        packages[n.split(".")[0]][1] += 1
    all_packages = [
        {"package": k, "self_ms": v[0], "modules": int(v[1])}
        for k, v in sorted(packages.items(), key=lambda kv: -kv[1][0])
    ]
    by_package = all_packages[:10]
    no_pyc = []
    with tempfile.TemporaryDirectory() as empty:  # no cached bytecode anywhere: every module is compiled
        for _ in range(NO_PYC_RUNS):
            _, out, _, _ = _run(
                TIMED.format(mod=mod),
                python=python,
                extra={**env, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"},
            )
            no_pyc.append(_import_s(out))
    return {
        "module": mod,
        "ok": True,
        "import_ms": statistics.median(imports) * 1e3,
        "import_ms_min": min(imports) * 1e3,
        "import_ms_max": max(imports) * 1e3,
        "wall_ms": statistics.median(walls) * 1e3,
        "no_pyc_import_ms": statistics.median(no_pyc) * 1e3,
        "modules_loaded": len(modules),
        "top": [{"module": n, **m} for n, m in top],
        "by_package": by_package,
        "packages": all_packages,
        "importtime_total_ms": sum(m["self_ms"] for m in modules.values()),
    }


def _version(python: str) -> str:
    try:
        return subprocess.run(
            [python, "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        ).stdout.strip()
    except OSError:
        return ""


def prepare_reference(version: str) -> dict[str, Any]:
    """The FastAPI + Mangum hello world, imported exactly as the entry points are, by a Python of the same version:
    its row without the numbers yet, or why it cannot be measured."""
    base = {"module": REF_MODULE, "what": REF_WHAT, "reference": True}
    ref_version = _version(REF_PYTHON)
    if not ref_version:
        return {**base, "ok": False, "reason": f"{REF_PYTHON} missing: `make bench-coldstart` installs it"}
    if ref_version.rsplit(".", 1)[0] != version.rsplit(".", 1)[0]:
        return {**base, "ok": False, "reason": f"reference Python {ref_version} is not the .venv's {version}"}
    REF_DIR.mkdir(parents=True, exist_ok=True)
    (REF_DIR / f"{REF_MODULE}.py").write_text(REF_SOURCE)
    probe = "import importlib.metadata as m; print(m.version('fastapi'), m.version('mangum'))"
    found = subprocess.run([REF_PYTHON, "-c", probe], capture_output=True, text=True, check=False).stdout.split()
    fastapi_v, mangum_v = [*found, "?", "?"][:2]
    reason = check_entry(REF_MODULE, REF_PYTHON, REF_ENV)
    if reason:
        return {**base, "ok": False, "reason": reason}
    return {**base, "ok": True, "python": ref_version, "fastapi": fastapi_v, "mangum": mangum_v}


def _first_case(name: str) -> tuple[str, str, dict[str, str]]:
    """(python, code, extra env) of one first-answer case; the reference answers healthz's event on /hello."""
    scripts = str(ROOT / "scripts")
    if name == "reference":
        event = json.loads((ROOT / "events/api/healthz.json").read_text())
        event.update(resource="/hello", path="/hello")
        event["requestContext"].update(resourcePath="/hello", path="/prod/hello")
        load = f"import {REF_MODULE}; handler = {REF_MODULE}.handler"
        return (
            REF_PYTHON,
            FIRST.format(scripts=scripts, load=load, event=json.dumps(event)),
            {"PYTHONPATH": str(REF_DIR)},
        )
    fn, path = FIRST_CASES[name]
    load = f"handler = invoke.load_function({fn!r}).handler"
    code = FIRST.format(scripts=scripts, load=load, event=(ROOT / path).read_text())
    return PYTHON, code, {}


def measure_first_answers(ref_ok: bool) -> list[dict[str, Any]]:
    """Every case once to warm bytecode, then RUNS rounds of all cases interleaved (a busy moment hits all)."""
    names = [*FIRST_CASES, *(["reference"] if ref_ok else [])]
    cases = {n: _first_case(n) for n in names}
    samples: dict[str, list[tuple[float, float, float, int]]] = {n: [] for n in names}
    failed: dict[str, str] = {}
    for round_ in range(RUNS + 1):
        for n, (python, code, extra) in cases.items():
            if n in failed:
                continue
            wall, out, err, rc = _run(code, extra=extra, python=python)
            line = next((ln for ln in out.splitlines() if ln.startswith("FIRST ")), None)
            if rc != 0 or line is None:
                failed[n] = next((ln for ln in reversed(err.strip().splitlines()) if ln.strip()), "no output")[:300]
                continue
            _, load_s, answer_s, status = line.split()
            if round_:  # round 0 only warms the bytecode caches
                samples[n].append((wall, float(load_s), float(answer_s), int(status)))
    results: list[dict[str, Any]] = []
    for n in names:
        if n in failed:
            results.append({"case": n, "ok": False, "reason": failed[n]})
            continue
        v = samples[n]
        inside = [load + answer for _, load, answer, _ in v]
        results.append(
            {
                "case": n,
                "ok": True,
                "reference": n == "reference",
                "statuses": sorted({st for *_, st in v}),
                "process_ms": statistics.median(w for w, *_ in v) * 1e3,
                "load_ms": statistics.median(load for _, load, _, _ in v) * 1e3,
                "answer_ms": statistics.median(a for _, _, a, _ in v) * 1e3,
                "first_ms": statistics.median(inside) * 1e3,
                "first_ms_min": min(inside) * 1e3,
                "first_ms_max": max(inside) * 1e3,
            }
        )
    return results


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--plot":
        plot(json.loads(Path(sys.argv[2]).read_text()))
        return 0
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    base_walls = [_run(BASELINE)[0] for _ in range(RUNS)]
    baseline = {
        "wall_ms": statistics.median(base_walls) * 1e3,
        "modules_loaded": len(parse_importtime(_run("pass", importtime=True)[2])),
    }
    print(f"baseline python -c pass: {baseline['wall_ms']:.1f} ms", flush=True)
    version = _version(PYTHON)
    ref = prepare_reference(version)
    failed = {mod: reason for mod in ENTRY_POINTS if (reason := check_entry(mod))}
    cases: dict[str, tuple[str, dict[str, str]]] = {mod: (PYTHON, {}) for mod in ENTRY_POINTS if mod not in failed}
    if ref["ok"]:
        cases[REF_MODULE] = (REF_PYTHON, REF_ENV)
    rounds = timed_rounds(cases)
    entries = []
    for mod in ENTRY_POINTS:
        if mod in failed:
            e = {"module": mod, "ok": False, "reason": failed[mod], "what": ENTRY_POINTS[mod]}
        else:
            e = {**measure_entry(mod, *rounds[mod]), "what": ENTRY_POINTS[mod]}
        entries.append(e)
        if e["ok"]:
            print(
                f"{mod:28} import {e['import_ms']:7.1f} ms (min {e['import_ms_min']:.1f}, max "
                f"{e['import_ms_max']:.1f})  process {e['wall_ms']:7.1f} ms  no bytecode "
                f"{e['no_pyc_import_ms']:7.1f} ms  {e['modules_loaded']} modules",
                flush=True,
            )
        else:
            print(f"{mod:28} SKIPPED: {e['reason']}", flush=True)
    if ref["ok"]:
        ref = {**ref, **measure_entry(REF_MODULE, *rounds[REF_MODULE], python=REF_PYTHON, env=REF_ENV)}
    entries.append(ref)
    if ref["ok"]:
        print(
            f"{'reference ' + REF_MODULE:28} import {ref['import_ms']:7.1f} ms (FastAPI {ref['fastapi']}, Mangum "
            f"{ref['mangum']}, Python {ref['python']})  process {ref['wall_ms']:7.1f} ms  {ref['modules_loaded']} "
            "modules",
            flush=True,
        )
    else:
        print(f"reference {REF_MODULE}: NOT MEASURED: {ref['reason']}", flush=True)
    first = measure_first_answers(ref["ok"])
    for f in first:
        if f["ok"]:
            print(
                f"first answer {f['case']:22} {f['first_ms']:7.1f} ms (load {f['load_ms']:.1f} + handler "
                f"{f['answer_ms']:.1f}; min {f['first_ms_min']:.1f})  process {f['process_ms']:7.1f} ms  "
                f"status {f['statuses']}",
                flush=True,
            )
        else:
            print(f"first answer {f['case']}: NOT MEASURED: {f['reason']}", flush=True)
    res = {
        "when": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "python": version,
        "runs": RUNS,
        "baseline": baseline,
        "entries": entries,
        "first_answer": first,
        "wall_s": time.monotonic() - began,
        "loadavg": [load_before, os.getloadavg()[0]],
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=1))
    write_report(res)
    plot_python = os.getenv("BENCH_PLOT_PYTHON", str(ROOT / ".bench" / "plot-venv" / "bin" / "python"))
    if subprocess.run([plot_python, __file__, "--plot", str(RESULTS)], check=False, cwd=ROOT).returncode:
        print(f"plot not written: {plot_python} could not draw it (is matplotlib installed there?)")
    print(f"done in {res['wall_s']:.0f} s")
    return 0


def _findings(res: dict[str, Any]) -> list[str]:
    """Sentences drawn from this run's numbers; the X-Ray one appears only while a run shows the SDK loaded."""
    out = []
    for e in res["entries"]:
        if e["ok"] and e["by_package"]:
            top = e["by_package"][0]
            out.append(
                f"- `{e['module']}`: the costliest package is `{top['package']}` ({top['self_ms']:.0f} ms of "
                f"its own import time, {top['modules']} modules)."
            )
    xray = [
        e["module"] for e in res["entries"] if e["ok"] and any(p["package"] == "aws_xray_sdk" for p in e["by_package"])
    ]
    if xray:
        out.append(
            "- `aws_xray_sdk` is imported by " + ", ".join(f"`{m}`" for m in xray) + " although "
            "`POWERTOOLS_TRACE_DISABLED=true`: Powertools' `Tracer()` imports the X-Ray SDK (and botocore with "
            "it) when it is constructed, even as `Tracer(disabled=True)`. Constructing it only where X-Ray "
            "tracing is switched on saves that time on every cold start of a function that does not trace."
        )
    return [*out, ""] if out else []


def _against_reference(res: dict[str, Any]) -> list[str]:
    """Each entry point's import next to the FastAPI + Mangum hello world's, measured in the same run."""
    ref = next((e for e in res["entries"] if e.get("reference")), None)
    if not ref or not ref["ok"]:
        return [f"Reference not measured: {ref['reason'] if ref else 'missing'}.", ""]
    parts = [
        f"`{e['module']}` {e['import_ms'] / ref['import_ms']:.2f}x ({e['import_ms'] - ref['import_ms']:+.0f} ms)"
        for e in res["entries"]
        if e["ok"] and not e.get("reference")
    ]
    return [f"Against the FastAPI + Mangum hello world ({ref['import_ms']:.0f} ms): " + ", ".join(parts) + ".", ""]


def _beyond_reference(e: dict[str, Any], ref: dict[str, Any]) -> str:
    """What `e` loads that the hello world does not (per package, own import time under `-X importtime`)."""
    theirs = {p["package"] for p in ref.get("packages", [])}
    extra = [p for p in e.get("packages", []) if p["package"] not in theirs and p["self_ms"] >= 0.5]
    shared = sum(p["self_ms"] for p in e.get("packages", []) if p["package"] in theirs)
    listed = ", ".join(f"`{p['package']}` {p['self_ms']:.1f} ms ({p['modules']})" for p in extra[:6])
    return (
        f"what it loads that the hello world does not: {listed or 'nothing'}; what both load: {shared:.0f} ms "
        "(self times under `-X importtime`, which inflates them)"
    )


def _targets(res: dict[str, Any]) -> list[str]:
    """Each target of issue #19 against this run's ratios; where one is missed, the gap and what fills it."""
    ref = next((e for e in res["entries"] if e.get("reference") and e["ok"]), None)
    if ref is None:
        return []
    lines = [
        "## Targets (issue #19) and where each is missed",
        "",
        "| measure | ratio to the hello world | target | met | gap ms |",
        "|---|---|---|---|---|",
    ]
    missed = []
    for e in res["entries"]:
        if e["module"] not in TARGETS or not e["ok"]:
            continue
        ratio, target = e["import_ms"] / ref["import_ms"], TARGETS[e["module"]]
        gap = e["import_ms"] - target * ref["import_ms"]
        met = ratio <= target
        lines.append(f"| import `{e['module']}` | {ratio:.2f}x | ≤ {target}x | {'yes' if met else '**no**'} | "
                     f"{'-' if met else f'{gap:.0f}'} |")  # fmt: skip
        if not met:
            missed.append(f"- `{e['module']}` misses by {gap:.0f} ms: {_beyond_reference(e, ref)}.")
    first = {f["case"]: f for f in res.get("first_answer") or [] if f["ok"]}
    if "reference" in first:
        for case, f in first.items():
            if case == "reference":
                continue
            ratio = f["first_ms"] / first["reference"]["first_ms"]
            gap = f["first_ms"] - FIRST_TARGET * first["reference"]["first_ms"]
            met = ratio <= FIRST_TARGET
            lines.append(f"| first answer {case} | {ratio:.2f}x | ≤ {FIRST_TARGET}x | {'yes' if met else '**no**'} | "
                         f"{'-' if met else f'{gap:.0f}'} |")  # fmt: skip
            if not met:
                missed.append(f"- first answer {case} misses by {gap:.0f} ms (load {f['load_ms']:.0f} + handler "
                              f"{f['answer_ms']:.1f} ms): the API function's import, above.")  # fmt: skip
    return [*lines, "", *(missed or ["Every target is met in this run."]), "", *NOTES, ""]


# What the measurements of 2026-12-03 showed besides this run's tables (the commits that acted on them name them).
NOTES = [
    "What was cut, and what was measured and left (2026-12-03):",
    "",
    "- Run to run on this shared machine (five runs that day, 7 or 15 rounds, load 0.3-2.0): the API function "
    "0.73-0.81x, the stream function 0.74-0.92x, the dispatcher and finalizer 0.24-0.37x, the first answers "
    "0.64-0.92x; the same script on the code before (`f885f20`): the API function 1.08-1.12x, the stream function "
    "1.04-1.10x, the dispatcher 0.80-0.89x, the finalizer 0.77-0.87x, the first answers 0.93-1.02x. The stream "
    "function and the first answers are the ones near their line.",
    "- redis-py (62 modules, ~35 ms) is in no function's import graph: every store command goes through "
    "`platform/resp.py`; only bullmq (the local queue) still brings redis-py. It also took OpenTelemetry with it: "
    "redis-py imports `opentelemetry` whenever it is installed (in `.venv` it comes with a dev dependency; the "
    "layer has none).",
    "- Settings are a plain read-only class with their own checks: not pydantic-settings (~130 modules), not a "
    "pydantic model (~14 ms to build its 100 fields; the dispatcher and finalizer load no pydantic at all now), "
    "and not a dataclass (generating its 100-parameter methods: config.py's import 6.4-8.7 ms as a dataclass, "
    "0.9 ms as it is, bytecode cached).",
    "- Not done, measured: `defer_build` on the few models still built at import (the `/v1` request models, the "
    "badge, the OpenAI error): the import did not get shorter and the first answer of `/healthz` got ~14 ms "
    "longer, as pydantic's first schema build moved into the request. Replacing Powertools' Logger and Metrics "
    "in the API function with no-op stand-ins changed its CPU time by less than the noise (234.6 vs 235.1 ms "
    "median of 9): the modules Powertools brings (logging, json, inspect, ...) are loaded by Starlette and "
    "pydantic anyway. Our 29 dataclasses cost ~0.3-2 ms each to create (16 ms together in one loaded run); "
    "`frozen=True` doubles a small one's cost, but dropping it would make them mutable and unhashable: left.",
    "- The stream function is the one that runs an HTTP server (uvicorn under the Lambda Web Adapter); the hello "
    "world answers through Mangum. `import uvicorn` alone adds 30-37 ms and 100 modules over asyncio, logging, ssl "
    "and socket (median of 9-11, load ~0.3): its package init imports its command line (click) and its reload and "
    "multiprocess supervisors (watchfiles ~3 ms of it, multiprocessing), none of which run under the adapter. "
    "That is the stream function's gap; choosing the server is issue #19's HTTP-server part.",
    "- On AWS the layer now ships unchecked-hash `.pyc` (`layers/Makefile`): before, every cold start compiled the "
    "layer's modules, since `/opt` is read-only. Measured on a layer built by `layers/Makefile` with Python 3.12.1 "
    "(Lambda's minor version), imported with `PYTHONDONTWRITEBYTECODE=1` as on the read-only `/opt`, three runs "
    "each, load average ~2.2: `functions.api.app` 237-258 ms with the shipped `.pyc` against 576-686 ms without "
    "(the build before), `functions.dispatcher.app` 91-94 against 154-211 ms.",
]


def _first_answer_table(res: dict[str, Any]) -> list[str]:
    """Process start → the first response, ours next to the hello world's, from the interleaved rounds."""
    rows = res.get("first_answer") or []
    ref = next((f for f in rows if f.get("reference") and f["ok"]), None)
    lines = [
        "### First answer",
        "",
        f"Process start → the handler's first response to one API Gateway event, {res['runs']} rounds with every "
        "case interleaved (plus one untimed round that warms the bytecode caches). *load* is importing the "
        "handler's module (through `scripts/invoke.py`'s loader for ours), *handler* its first call; a lazy "
        "import that only moves cost into the first request shows in *handler*. Redis on loopback; "
        "`AUTH_REQUIRED=false`.",
        "",
        "| case | load + handler ms (median) | min-max ms | load ms | handler ms | process ms | status "
        "| ratio to the hello world |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in rows:
        if not f["ok"]:
            lines.append(f"| {f['case']} | not measured (`{f['reason'].replace('|', '/')}`) | | | | | | |")
            continue
        ratio = f"{f['first_ms'] / ref['first_ms']:.2f}x" if ref else "-"
        lines.append(
            f"| {f['case']} | **{f['first_ms']:.0f}** | {f['first_ms_min']:.0f}-{f['first_ms_max']:.0f} | "
            f"{f['load_ms']:.0f} | {f['answer_ms']:.1f} | {f['process_ms']:.0f} | "
            f"{', '.join(map(str, f['statuses']))} | {ratio} |"
        )
    return [*lines, ""]


def write_report(res: dict[str, Any]) -> None:
    base = res["baseline"]
    lines = [
        "# Cold import time of the Lambda entry points",
        "",
        f"Measured {res['when']} by `make bench-coldstart` on {res['platform']}, {res['cores']} cores, "
        f"Python {res['python']} (`.venv`), median of {res['runs']} fresh interpreters per entry point; 1-minute "
        f"load average {res['loadavg'][0]:.1f} before and {res['loadavg'][1]:.1f} after (other work on the machine "
        "widens the min-max range).",
        "",
        "A new Lambda instance pays this once, before its first event: interpreter start-up (the runtime's, not "
        "ours) plus importing the handler module. The import is the part this repository controls.",
        "",
        "| entry point | what runs it | import ms (median) | min-max ms | process ms | process - baseline ms "
        "| no bytecode cache ms | modules |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in res["entries"]:
        what = e.get("what") or ENTRY_POINTS.get(e["module"], "")
        if e.get("reference") and e["ok"]:
            what += f" (FastAPI {e['fastapi']}, Mangum {e['mangum']}, Python {e['python']})"
        if not e["ok"]:
            lines.append(
                f"| `{e['module']}` | {what} | not measured: does not import here "
                f"(`{e['reason'].replace('|', '/')}`) | | | | | |"
            )
            continue
        lines.append(
            f"| `{e['module']}` | {what} | **{e['import_ms']:.0f}** | {e['import_ms_min']:.0f}-"
            f"{e['import_ms_max']:.0f} | {e['wall_ms']:.0f} | {e['wall_ms'] - base['wall_ms']:.0f} | "
            f"{e['no_pyc_import_ms']:.0f} | {e['modules_loaded'] - base['modules_loaded']} |"
        )
    lines += [
        f"| `python -c 'import os; os._exit(0)'` | baseline: the interpreter alone | - | - | {base['wall_ms']:.0f} "
        "| 0 | - | 0 |",
        "",
        *_against_reference(res),
        *_first_answer_table(res),
        *_targets(res),
        "![cold import](coldstart.png)",
        "",
        "Columns: *import ms* is `time.perf_counter()` around the `import` statement inside the fresh process; "
        "*process ms* is the whole process seen from outside, launch to the end of the import (it exits with "
        "`os._exit`, as teardown is no part of a cold start); *no bytecode cache* imports with "
        "an empty `PYTHONPYCACHEPREFIX` so every module (standard library included) is compiled from source: an "
        "upper bound for a deployment package shipped without `.pyc` files (Lambda's code directory is read-only, "
        "so such a package compiles on every cold start); *modules* is how many modules the import adds over the "
        "baseline.",
        "",
        "## Where the time goes",
        "",
        *_findings(res),
        "Top 10 modules by cumulative import time (median over the `-X importtime` runs; cumulative includes "
        "everything the module imports first, so nested rows overlap).",
        "",
    ]
    for e in res["entries"]:
        if not e["ok"]:
            continue
        lines += [
            f"### `{e['module']}` ({e['import_ms']:.0f} ms)",
            "",
            "| module | cumulative ms | self ms | depth |",
            "|---|---|---|---|",
        ]
        lines += [f"| `{m['module']}` | {m['cum_ms']:.1f} | {m['self_ms']:.1f} | {m['depth']} |" for m in e["top"]]
        lines += [
            "",
            f"Top 10 packages by their modules' own (self) import time, which do not overlap "
            f"(all modules together: {e['importtime_total_ms']:.0f} ms under `-X importtime`):",
            "",
            "| package | self ms | modules |",
            "|---|---|---|",
        ]
        lines += [f"| `{p['package']}` | {p['self_ms']:.1f} | {p['modules']} |" for p in e["by_package"]]
        lines.append("")
    lines += [
        "## Method",
        "",
        f"- Each entry point is imported once untimed (reporting why if it fails, and warming the bytecode cache as a"
        f' built package would carry it), then {res["runs"]} times as `.venv/bin/python -c "import …"` timed, in'
        f" {res['runs']} rounds that each import every entry point and the reference once (a busy moment on the shared"
        f" machine hits them all alike), then {res['runs']} times with `-X importtime`, then {NO_PYC_RUNS} times"
        " without any bytecode cache.",
        "- Environment as on Lambda: `AWS_LAMBDA_FUNCTION_NAME=bench`, `AWS_REGION=us-east-1`, "
        "`POWERTOOLS_TRACE_DISABLED=true`, `REDIS_URL` on loopback, `AUTH_REQUIRED=false`, fake AWS credentials; "
        "nothing else from the caller's environment but `PATH`/`HOME`/locale. Importing must not open connections.",
        f"- Reference row: `{REF_MODULE}` (written to `.bench/ref/` by the run) is a FastAPI app with one GET "
        'route wrapped in `Mangum(app, lifespan="off")`, the smallest handler a FastAPI-on-Lambda service starts '
        "from. It is imported the same way, with the same environment plus `PYTHONPATH=.bench/ref`, by "
        "`.bench/ref-venv/bin/python` (Python of the same minor version as `.venv`; fastapi and mangum pinned in "
        "`mk/bench.mk`).",
        "- The machine is a shared 2-core one; a busy moment shows up as a wide min-max range.",
        "",
        "## Rerun",
        "",
        "```sh",
        "make bench-coldstart                    # about a minute",
        "BENCH_COLD_RUNS=15 make bench-coldstart",
        "```",
        "",
        "Raw numbers of the last run: `.bench/coldstart-results.json`.",
        "",
    ]
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "coldstart.md").write_text("\n".join(lines))
    print("wrote docs/benchmarks/coldstart.md")


def plot(res: dict[str, Any]) -> None:
    """Horizontal bars; runs under the bench's own Python (matplotlib lives in .bench/, not in .venv)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [e for e in res["entries"] if e["ok"]]
    names = [f"{e['module']} (reference)" if e.get("reference") else e["module"] for e in ok]
    fig, ax = plt.subplots(figsize=(11, 1.8 + 0.7 * max(1, len(ok))))
    ys = range(len(ok))
    warm = ax.barh(
        [y + 0.2 for y in ys], [e["import_ms"] for e in ok], 0.4, label="import, bytecode cached", color="#1f77b4"
    )
    cold = ax.barh(
        [y - 0.2 for y in ys],
        [e["no_pyc_import_ms"] for e in ok],
        0.4,
        label="import, no bytecode cache (upper bound)",
        color="#aec7e8",
    )
    ax.bar_label(warm, fmt="%.0f ms", fontsize=8, padding=2)
    ax.bar_label(cold, fmt="%.0f ms", fontsize=8, padding=2)
    ax.axvline(
        res["baseline"]["wall_ms"],
        color="#999999",
        linestyle="--",
        label=f"interpreter start-up alone ({res['baseline']['wall_ms']:.0f} ms, not included)",
    )
    ax.set_yticks(list(ys), names)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds (median of fresh interpreters)")
    ax.set_title(f"Cold import of each Lambda entry point, lower is better ({res['when']})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(DOCS / "coldstart.png", dpi=110)
    print("wrote docs/benchmarks/coldstart.png")


if __name__ == "__main__":
    sys.exit(main())
