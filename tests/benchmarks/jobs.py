"""`make bench-jobs`: how fast agent jobs start and how many the API accepts.

One run, side by side, on this machine (loopback only; a real git repository; the stand-in CLI so the
agent itself takes ~no time):

- jobs/second `POST /api/kilo/run-agent` accepts (validate, seal secrets, store, enqueue), at 1 and 16
  concurrent clients;
- time from `run-agent` to the runner's first log line and to the CLI's first event, through the local
  queue and a warm worker, next to the same runner started directly (no queue) — so the queue's share
  is read as a difference measured in the same minute;
- the agent sandbox's cost per job: run-agent → the agent's first event with `AGENT_SANDBOX=bwrap` and
  `none`, the same runner started directly, interleaved (the stand-in CLI under the system Python, in a
  `node_modules` of its own, so bubblewrap can show it to the agent as it shows the real CLI's install).

- with the real pinned CLI under bubblewrap: run-agent → the agent's first model request (at the fake
  gateway), beside a plain `kilo run` on a clone of the same repository pointed at the fake directly
  (BENCH_CLI_RUNS each, interleaved, after one warm-up job);
- the door's cost per model call: a streamed chat completion through the runner's model endpoint (uvicorn on a
  unix socket, reached through socat as the sandboxed agent reaches it) beside the server's `/v1` and the fake
  called directly, on the same job key (BENCH_DOOR_CALLS each, interleaved).

Writes docs/benchmarks/jobs.md (and jobs.png when the plotting venv of `make bench-tools` exists).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.run import free_port  # noqa: E402
from tests.fakes.fake_gateway import FakeGatewayThread  # noqa: E402
from tests.fakes.fake_github import make_repo  # noqa: E402
from tests.jobkit import stand_in_cli  # noqa: E402
from tests.support import text  # noqa: E402

SECONDS = float(os.getenv("BENCH_SECONDS", "3"))
RUNS = int(os.getenv("BENCH_JOB_RUNS", "8"))
SANDBOX_RUNS = int(os.getenv("BENCH_SANDBOX_RUNS", "5"))
CLI_RUNS = int(os.getenv("BENCH_CLI_RUNS", "2"))
DOOR_CALLS = int(os.getenv("BENCH_DOOR_CALLS", "150"))
SYSTEM_PYTHON = "/usr/bin/python3"
REDIS_URL = os.getenv("REDIS_URL", "redis://127.0.0.1:6379/0")
OUT = ROOT / "docs" / "benchmarks"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


async def accept_rate(url: str, repo: str, concurrency: int) -> dict[str, float]:
    body = {
        "repoUrl": repo,
        "agent": "apply-patch-and-pr",
        "prompt": "bench",
        "dryRun": True,
        "profileEnv": {"FAKE_KILO_MODE": "write", "SOME_TOKEN": "bench-secret-not-real"},
    }
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + SECONDS
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                response = await client.post("/api/kilo/run-agent", json=body)
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += response.status_code != 202

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {
        "concurrency": concurrency,
        "jobs_per_s": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 0.5),
        "p99_ms": pct(latencies, 0.99),
        "errors": errors,
    }


def first_lines(r: redis.Redis, prefix: str, job_id: str, timeout: float = 60) -> tuple[float, float, float]:
    """Wall-clock times (s) of the runner's first log line, the CLI's first event, and the job's end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = r.hget(f"{prefix}job:{job_id}", "status")
        if status in (b"succeeded", b"failed", b"cancelled", b"timed_out"):
            break
        time.sleep(0.02)
    entries = log_entries(r, prefix, job_id)

    def ts(entry: dict[str, Any]) -> float:
        return dt.datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()

    runner = ts(entries[0])
    kilo = next(ts(e) for e in entries if e["source"] == "kilo")
    ended = int(r.hget(f"{prefix}job:{job_id}", "finishedMs") or 0) / 1000
    return runner, kilo, ended


def one_job(url: str, repo: str) -> tuple[str, float]:
    body = {
        "repoUrl": repo,
        "agent": "apply-patch-and-pr",
        "prompt": "bench",
        "dryRun": True,
        "profileEnv": {"FAKE_KILO_MODE": "write"},
    }
    t0 = time.time()
    job_id = httpx.post(url + "/api/kilo/run-agent", json=body, timeout=10).json()["jobId"]
    return job_id, t0


def follow_up(url: str, parent: str) -> tuple[str, float]:
    t0 = time.time()
    answer = httpx.post(f"{url}/api/kilo/job/{parent}/follow-up", json={"prompt": "bench again", "dryRun": True})
    answer.raise_for_status()
    return answer.json()["jobId"], t0


def sandboxable_cli(tmp: Path) -> str:
    """The stand-in CLI where bubblewrap can show it to the agent: a `node_modules` of its own (bound
    read-only like the real install), run by the system Python (the sandbox shows /usr, not this venv)."""
    install = tmp / "cli" / "node_modules"
    install.mkdir(parents=True)
    (install / "fake_kilo.py").write_text((ROOT / "tests" / "fakes" / "fake_kilo.py").read_text())
    wrapper = install / "kilo"
    wrapper.write_text(f'#!/bin/sh\nexec {SYSTEM_PYTHON} {install / "fake_kilo.py"} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def sandbox_cost(r: redis.Redis, url: str, repo: str, env: dict[str, str], prefix: str) -> dict[str, list[float]]:
    """ms from run-agent to the runner's `kilo run` line and to the agent's first event, per sandbox mode."""
    out: dict[str, list[float]] = {"none": [], "bwrap": [], "none-run": [], "bwrap-run": []}
    for _ in range(SANDBOX_RUNS):
        for mode in ("none", "bwrap"):  # interleaved: machine noise hits both alike
            job_id, t0 = one_job(url, repo)
            subprocess.run(
                [sys.executable, "-m", "agent_task", job_id],
                cwd=ROOT,
                env={**env, "AGENT_SANDBOX": mode},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
            )
            entries, status = job_log(r, prefix, job_id)
            assert status == "succeeded", (mode, status, entries[-3:])
            said = [e for e in entries if e["source"] == "runner" and e["msg"].startswith(f"sandbox: {mode};")]
            assert said, f"the runner did not say it ran the agent with AGENT_SANDBOX={mode}"
            run = next(ts(e) for e in entries if e["msg"].startswith("kilo run --agent"))
            first = next(ts(e) for e in entries if e["source"] == "kilo")
            out[mode].append((first - t0) * 1000)
            out[f"{mode}-run"].append((first - run) * 1000)
    return out


def real_cli_start(r: redis.Redis, url: str, repo: str, env: dict[str, str], prefix: str, tmp: Path) -> dict[str, Any]:
    """ms from run-agent to the agent's first model request (the real CLI in bubblewrap, through the door),
    beside a plain `kilo run` on a clone of the same repository calling the fake itself."""
    from agent_task.kilo import LEASH, QUIET

    fake = FakeGatewayThread()
    fake.__enter__()
    fake.agent_text = "Done."
    out: dict[str, list[float]] = {"bridge": [], "followup": [], "plain": []}
    try:
        job_env = {**env, "KILO_CLI": str(ROOT / "agent_task/node_modules/.bin/kilo"), "AGENT_SANDBOX": "bwrap"}
        job_env["KILO_GATEWAY_BASE"] = fake.url + "/api/gateway"
        config = {
            "provider": {
                "fake": {
                    "npm": "@ai-sdk/openai-compatible",
                    "options": {"baseURL": fake.url + "/v1", "apiKey": "x"},
                    "models": {"model-a": {}},
                }
            },
            "model": "fake/model-a",
        }
        for i in range(CLI_RUNS + 1):  # the first job lists the CLI's agents (kept for the next): a warm-up
            parent = ""
            for path in ("bridge", "followup", "plain"):
                fake.reset()
                fake.agent_text = "Done."
                if path in ("bridge", "followup"):
                    # A follow-up continues the job just run: its session imported, then the next prompt.
                    job_id, t0 = follow_up(url, parent) if path == "followup" else one_job(url, repo)
                    parent = job_id
                    subprocess.run(
                        [sys.executable, "-m", "agent_task", job_id],
                        cwd=ROOT,
                        env=job_env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        check=True,
                    )
                else:
                    checkout = tmp / f"plain-{i}"
                    subprocess.run(["git", "clone", "-q", "--depth", "1", repo, str(checkout)], check=True)
                    home = tmp / f"plain-home-{i}"
                    home.mkdir()
                    plain_env = {"PATH": os.environ["PATH"], "HOME": str(home), **QUIET, **LEASH}
                    plain_env["KILO_CONFIG_CONTENT"] = json.dumps(config)
                    t0 = time.time()
                    subprocess.run(
                        [str(ROOT / "agent_task/node_modules/.bin/kilo"), "run", "--format", "json", "bench"],
                        cwd=checkout,
                        env=plain_env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=300,
                        check=False,
                    )
                chats = [q["at"] for q in fake.requests if q["path"].endswith("/chat/completions")]
                if i and chats:
                    out[path].append((min(chats) - t0) * 1000)
    finally:
        fake.__exit__(None, None, None)
    return out


DOOR_SCRIPT = """
import sys, uvicorn
from kilo_bridge.config import load_settings
from kilo_bridge.web.app import create_door_app
uvicorn.run(create_door_app(load_settings(), sys.argv[2]), uds=sys.argv[1], log_level="warning", lifespan="off")
"""


def door_cost(url: str, env: dict[str, str], prefix: str, tmp: Path) -> dict[str, list[float]]:
    """ms per streamed chat completion: the fake directly, the server's `/v1`, the runner's door (uvicorn on a
    unix socket, behind socat as in the sandbox), on the same job key, interleaved."""
    from kilo_bridge.config import load_settings
    from kilo_bridge.keys.store import KeyStore
    from kilo_bridge.platform.redis import Store

    fake = FakeGatewayThread()
    fake.__enter__()
    procs: list[subprocess.Popen[bytes]] = []
    out: dict[str, list[float]] = {"direct": [], "v1": [], "door": []}
    try:
        door_env = {**env, "REDIS_PREFIX": prefix, "KILO_GATEWAY_BASE": fake.url + "/api/gateway"}
        settings = load_settings(redis_url=REDIS_URL, redis_prefix=prefix)

        async def job_key() -> str:
            store = Store(settings)
            try:
                return await KeyStore(store).create_job_key("job_bench" + uuid.uuid4().hex[:8], 0, 100_000, 3600)
            finally:
                await store.close()

        key = asyncio.run(job_key())
        sock = tmp / "door.sock"
        procs.append(start([sys.executable, "-c", DOOR_SCRIPT, str(sock), key], door_env))
        port = free_port()
        forward = ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,nodelay", f"UNIX-CONNECT:{sock}"]
        v1_port = free_port()
        v1_env = {**door_env, "PORT": str(v1_port)}
        procs.append(start([sys.executable, "-m", "kilo_bridge", "serve"], v1_env))
        wait_ready(f"http://127.0.0.1:{v1_port}")
        while not sock.exists():
            time.sleep(0.05)
        procs.append(start(forward, door_env))
        bases = {
            "direct": fake.url + "/api/gateway",
            "v1": f"http://127.0.0.1:{v1_port}/v1",
            "door": f"http://127.0.0.1:{port}/v1",
        }
        body = {"model": "anthropic/claude-sonnet-4.5", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(timeout=30) as client:
            for name in bases:  # a connection and a first call each, not measured
                for _ in range(50):
                    try:
                        with client.stream("POST", bases[name] + "/chat/completions", json=body, headers=headers) as rr:
                            rr.read()
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
            for _ in range(DOOR_CALLS):
                for name, base in bases.items():
                    t = time.perf_counter()
                    with client.stream("POST", base + "/chat/completions", json=body, headers=headers) as rr:
                        assert rr.status_code == 200, (name, rr.status_code, rr.read())
                        rr.read()
                    out[name].append((time.perf_counter() - t) * 1000)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        fake.__exit__(None, None, None)
    return out


def ts(entry: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()


def log_entries(r: redis.Redis, prefix: str, job_id: str) -> list[dict[str, Any]]:
    """The job's log lines as written to its log stream (each entry's `l` field, JSON)."""
    return [json.loads(fields[b"l"]) for _, fields in r.xrange(f"{prefix}job:{job_id}:log") or [] if fields]


def job_log(r: redis.Redis, prefix: str, job_id: str) -> tuple[list[dict[str, Any]], str]:
    status = r.hget(f"{prefix}job:{job_id}", "status")
    return log_entries(r, prefix, job_id), text(status or b"")


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="kb-bench-jobs-"))
    repo = str(make_repo(tmp / "repos", "acme", "widgets"))
    cli = stand_in_cli(tmp)
    r = redis.Redis.from_url(REDIS_URL)
    tag = uuid.uuid4().hex[:8]
    prefixes = {"direct": f"{{kbbench-d-{tag}}}:", "queue": f"{{kbbench-q-{tag}}}:"}
    base_env = {
        **os.environ,
        "KILO_API_KEY": "bench-key-not-real",
        "REDIS_URL": REDIS_URL,
        "REPO_ALLOW_LOCAL": "true",
        "KILO_CLI": cli,
        "AGENT_SANDBOX": "none",  # this stand-in lives where no sandbox shows it; the sandbox section has its own
        "JOBS_CONCURRENCY": "0",
        "ARTIFACTS_DIR": str(tmp / "artifacts"),
        "JOB_SECRETS_KEY_FILE": str(tmp / "key"),
        "JOB_WORKDIR": str(tmp),
        "KILO_GATEWAY_BASE": "http://127.0.0.1:9/api/gateway",
        "KILO_MAX_RETRIES": "0",
        "PYTHONPATH": os.pathsep.join((str(ROOT / "layers"), str(ROOT))),  # this tree's library, not an install
    }
    procs: list[subprocess.Popen[bytes]] = []
    urls = {}
    try:
        for name, prefix in prefixes.items():
            port = free_port()
            env = {**base_env, "REDIS_PREFIX": prefix, "PORT": str(port)}
            procs.append(start([sys.executable, "-m", "kilo_bridge", "serve"], env))
            urls[name] = f"http://127.0.0.1:{port}"
            if name == "queue":  # a warm dedicated worker on the queued server's prefix
                procs.append(start([sys.executable, "-m", "kilo_bridge", "worker"], env))
        for url in urls.values():
            wait_ready(url)
        direct_env = {**base_env, "REDIS_PREFIX": prefixes["direct"], "BRIDGE_URL": urls["direct"]}

        accept = [asyncio.run(accept_rate(urls["direct"], repo, c)) for c in (1, 16)]
        r.delete(*r.scan_iter(match=prefixes["direct"] + "*", count=1000))  # drop the accepted, never-run jobs

        sandbox_env = {**direct_env, "KILO_CLI": sandboxable_cli(tmp)}
        sandbox = sandbox_cost(r, urls["direct"], repo, sandbox_env, prefixes["direct"])

        cli_start = real_cli_start(r, urls["direct"], repo, direct_env, prefixes["direct"], tmp)
        door = door_cost(urls["direct"], base_env, prefixes["direct"], tmp)

        timings: dict[str, list[tuple[float, float, float]]] = {"direct": [], "queue": []}
        for _ in range(RUNS):
            for name in ("direct", "queue"):  # interleaved: machine noise hits both alike
                job_id, t0 = one_job(urls[name], repo)
                if name == "direct":
                    subprocess.run(
                        [sys.executable, "-m", "agent_task", job_id],
                        cwd=ROOT,
                        env=direct_env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        check=True,
                    )
                runner, kilo, ended = first_lines(r, prefixes[name], job_id)
                timings[name].append(((runner - t0) * 1000, (kilo - t0) * 1000, (ended - t0) * 1000))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        for prefix in prefixes.values():
            keys = list(r.scan_iter(match=prefix + "*", count=1000))
            if keys:
                r.delete(*keys)
    write_report(accept, timings, sandbox, cli_start, door)
    return 0


def write_report(
    accept: list[dict[str, Any]],
    timings: dict[str, list[tuple[float, float, float]]],
    sandbox: dict[str, list[float]],
    cli_start: dict[str, list[float]],
    door: dict[str, list[float]],
) -> None:
    def med(name: str, i: int) -> float:
        return statistics.median(t[i] for t in timings[name])

    rows = "\n".join(
        f"| {a['concurrency']} | {a['jobs_per_s']:.0f} | {a['p50_ms']:.1f} | {a['p99_ms']:.1f} | {a['errors']} |"
        for a in accept
    )
    lat = "\n".join(
        f"| {label} | {med('direct', i):.0f} | {med('queue', i):.0f} | {med('queue', i) - med('direct', i):+.0f} | "
        f"{med('queue', i) / med('direct', i):.2f}x |"
        for i, label in enumerate(("runner's first log line", "CLI's first event", "job finished"))
    )

    def srow(label: str, key: str) -> str:
        none, bwrap = (statistics.median(sandbox[f"{m}{key}"]) for m in ("none", "bwrap"))
        spread = " / ".join(
            f"{min(sandbox[f'{m}{key}']):.0f}..{max(sandbox[f'{m}{key}']):.0f}" for m in ("none", "bwrap")
        )
        return f"| {label} | {none:.0f} | {bwrap:.0f} | {bwrap - none:+.0f} | {spread} |"

    sand = "\n".join(
        (srow("run-agent → the agent's first event", ""), srow("`kilo run` started → its first event", "-run"))
    )

    def cstat(name: str) -> str:
        v = cli_start[name]
        return f"{statistics.median(v):.0f} | {len(v)} ({min(v):.0f}..{max(v):.0f})" if v else "n/a | 0"

    cshare = (
        f"{statistics.median(cli_start['bridge']) - statistics.median(cli_start['plain']):+.0f}"
        if cli_start["bridge"] and cli_start["plain"]
        else "n/a"
    )
    direct50 = statistics.median(door["direct"])
    door_rows = "\n".join(
        f"| {label} | {statistics.median(door[k]):.2f} | {pct(door[k], 0.9):.2f} | "
        f"{statistics.median(door[k]) - direct50:+.2f} |"
        for k, label in (
            ("direct", "fake gateway, directly"),
            ("v1", "server `/v1`"),
            ("door", "runner's door (socat + unix socket)"),
        )
    )
    added = {k: statistics.median(door[k]) - direct50 for k in ("v1", "door")}
    door_ratio = added["door"] / added["v1"] if added["v1"] > 0 else float("nan")
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""# Agent jobs: acceptance rate and start latency

Measured {now} on {platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()}), loopback only,
by `make bench-jobs` (`tests/benchmarks/jobs.py`, BENCH_SECONDS={SECONDS:g}, {RUNS} jobs per path). The agent is the
stand-in CLI (it writes one file and exits), so the numbers are the service's own share: the real Kilo CLI
adds its own start (~14 s cold here) on top.

## Jobs accepted per second (`POST /api/kilo/run-agent`, one server process, no worker)

Each request validates the body, seals `profileEnv` (AES-GCM), stores the record (one Lua call) and enqueues
the id (bullmq).

| clients | jobs/s | p50 ms | p99 ms | errors |
|---|---|---|---|---|
{rows}

## From `run-agent` to the runner (median of {RUNS}, ms after the POST was sent)

"direct" starts `python -m agent_task JOB_ID` right after the POST (no queue); "queue" is the local bullmq
queue and a warm `kilo-bridge worker`, which starts the same runner process. Both paths ran interleaved.

| milestone | direct | queue + worker | queue's share | ratio |
|---|---|---|---|---|
{lat}

The runner's first line comes after a fresh Python process has imported the library and claimed the job;
the CLI's first event after the clone. What the queue adds is the worker noticing the job (bullmq's
blocking wait on its marker key) and spawning the runner.

## The agent sandbox's cost per job (median of {SANDBOX_RUNS} each, ms)

The same runner started directly after the POST, with `AGENT_SANDBOX=none` and `bwrap`, interleaved. The
agent is the stand-in CLI under the system Python, installed in a `node_modules` of its own, so bubblewrap
binds it read-only exactly as it binds the real CLI's install. With `bwrap` the runner probes bubblewrap
once (`/bin/true` in a sandbox), then starts two sandboxed CLI processes per job: `kilo agent list` (the
check that the CLI knows the agent) and `kilo run`.

| from | none | bwrap | sandbox's cost | range none / bwrap |
|---|---|---|---|---|
{sand}

The real Kilo CLI's own start-up (seconds; `kilo agent list` alone ~6 s warm here) is paid with and
without the sandbox alike; what the sandbox adds is the table's difference, per job.

## The real CLI: run-agent → its first model request (median of {CLI_RUNS}, ms)

The runner started directly after the POST, the real pinned CLI in bubblewrap (its own network namespace,
its model calls through the runner's door), after one warm-up job (which lists the CLI's agents once for this
CLI build and catalogue); beside it a plain `kilo run` on a fresh clone of the same repository, the fake
gateway its provider (the same quiet and leash switches: no default plugins, no project config), timed from its
spawn. Load average at the end of the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (a shared machine:
single runs are noisy). Both to the first chat request the fake
received.

| path | median | runs |
|---|---|---|
| run-agent → first model request (the bridge's job) | {cstat("bridge")} |
| follow-up → first model request (the same job continued: its session imported) | {cstat("followup")} |
| plain `kilo run` → first model request | {cstat("plain")} |
| **the bridge's share** | **{cshare}** | |

A follow-up (`POST /api/kilo/job/{{id}}/follow-up` of the job just run, timed from that POST) starts one more CLI
process than a fresh job before its model request: `kilo import` of the parent's sealed session, which `kilo run
--session` then continues; the difference between its row and the fresh job's is mostly that process's start.

Before this work the same comparison read 13.9 s against 11.3 s (2.6 s of the bridge's own, a `kilo agent list`
per job among it).

## The door's cost per model call (ms per streamed chat completion, {DOOR_CALLS} each, interleaved)

The same job key on every path (the same single admission Lua call and accounting): the fake gateway called
directly; the server's `/v1` (the hop agents took before); the runner's door — the `/v1` routes on uvicorn on a
unix socket, reached through a socat forwarder as the sandboxed agent reaches them.

| path | p50 | p90 | added p50 over direct |
|---|---|---|---|
{door_rows}

The door costs {door_ratio:.2f}x the old hop's added time per call; an agent step against a real model takes
seconds.
"""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "jobs.md").write_text(text)
    print(text)
    plot_python = os.getenv("BENCH_PLOT_PYTHON", str(ROOT / ".bench" / "plot-venv" / "bin" / "python"))
    if Path(plot_python).exists():
        data = {name: [med(name, i) for i in range(3)] for name in ("direct", "queue")}
        script = f"""
import matplotlib; matplotlib.use("Agg")
import matplotlib.pyplot as plt
data = {data!r}
labels = ["first runner line", "first CLI event", "job finished"]
fig, ax = plt.subplots(figsize=(7, 3.5))
for k, (name, values) in enumerate(data.items()):
    ax.bar([i + k * 0.38 for i in range(3)], values, width=0.38, label=name)
ax.set_xticks([i + 0.19 for i in range(3)], labels)
ax.set_ylabel("ms after run-agent (median)")
ax.set_title("Agent job start: direct runner vs local queue + worker")
ax.legend()
fig.tight_layout()
fig.savefig({str(OUT / "jobs.png")!r}, dpi=110)
"""
        subprocess.run([plot_python, "-c", script], check=False)


if __name__ == "__main__":
    sys.exit(main())
