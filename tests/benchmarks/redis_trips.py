"""`make bench-redis`: how many Redis commands each kind of request costs Kilo Bridge, by command name.

The server runs as `make bench` / `make bench-compare` start it (`python -m kilo_bridge serve`, the fake Kilo Gateway
as its upstream, a run-unique REDIS_PREFIX, JOBS_CONCURRENCY=0 so queued jobs stay queued). For each route it sends
N sequential requests and reads the local Redis's `INFO commandstats` and `INFO stats` (total_commands_processed)
before and after. That Redis is shared (other clients, tests, the server's own timers), so every busy window is
followed by an idle window of the same length whose commands are subtracted, and the whole is repeated and the
median kept. A second, smaller pass watches `MONITOR` to tell which commands the server sends itself (network
requests) from those its Lua scripts run inside one EVALSHA; MONITOR names the sending connection, so that pass
counts only the server's own connections and is immune to other clients. Loopback only. Writes
docs/benchmarks/redis.md.

Env: BENCH_REDIS_N (requests per route and repetition, default 500), BENCH_REDIS_REPS (default 3),
BENCH_REDIS_SAMPLE (requests per route under MONITOR, default 20), REDIS_URL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import redis

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests.benchmarks` importable
    sys.path.insert(0, str(ROOT))

from tests.benchmarks._load import KEY, Server, free_port  # noqa: E402

N = int(os.getenv("BENCH_REDIS_N", "500"))
REPS = int(os.getenv("BENCH_REDIS_REPS", "3"))
SAMPLE = int(os.getenv("BENCH_REDIS_SAMPLE", "20"))
REDIS_URL = os.getenv("REDIS_URL", "redis://127.0.0.1:6379/0")
SETTLE_S = 0.3  # accounting runs as a background task after the answer is sent: let it land in the window
MODEL = "fake/model-a"
DOCS = ROOT / "docs" / "benchmarks"
RESULTS = ROOT / ".bench" / "redis-results.json"
ROUTES = ("generate", "chat stream", "credits", "run-agent")
WHAT = {
    "generate": "`POST /api/kilo/generate` (plain answer)",
    "chat stream": '`POST /v1/chat/completions` with `"stream": true`',
    "credits": "`GET /api/kilo/credits`",
    "run-agent": "`POST /api/kilo/run-agent` (`repoUrl` https://github.com/acme/widgets.git, `dryRun`, queued only)",
}


def send(client: httpx.Client, route: str, agent: str) -> None:
    """One request of `route`, read to the end; anything but success stops the run (counts would be wrong)."""
    if route == "generate":
        r = client.post("/api/kilo/generate", json={"prompt": "count my redis calls", "model": MODEL})
        ok, detail = r.status_code == 200, r.text
    elif route == "chat stream":
        body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "count my redis calls"}]}
        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            raw = b"".join(r.iter_bytes())
        ok, detail = r.status_code == 200 and b"[DONE]" in raw, raw.decode(errors="replace")
    elif route == "credits":
        r = client.get("/api/kilo/credits")
        ok, detail = r.status_code == 200, r.text
    else:
        r = client.post(
            "/api/kilo/run-agent",
            json={
                "repoUrl": "https://github.com/acme/widgets.git",
                "agent": agent,
                "prompt": "count my redis calls",
                "dryRun": True,
            },
        )
        ok, detail = r.status_code == 202, r.text
    if not ok:
        raise RuntimeError(f"{route}: HTTP {r.status_code}: {detail[:200]}")


def snapshot(r: redis.Redis) -> tuple[dict[str, int], int]:
    """(calls by command name, total_commands_processed). Two INFO calls of our own, which are left out below."""
    stats = r.info("commandstats")
    total = int(r.info("stats")["total_commands_processed"])
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}, total


def delta(a: tuple[dict[str, int], int], b: tuple[dict[str, int], int]) -> tuple[Counter[str], int]:
    calls = Counter({k: b[0].get(k, 0) - a[0].get(k, 0) for k in set(a[0]) | set(b[0])})
    calls["info"] -= 2  # our own two INFO calls of snapshot b (or a's second and b's first: two either way)
    return +calls, b[1] - a[1] - 2


def measure_window(r: redis.Redis, client: httpx.Client, route: str, agent: str) -> dict[str, Any]:
    """N requests, then an idle window as long: per-request commands = (busy - idle) / N."""
    before = snapshot(r)
    began = time.monotonic()
    for _ in range(N):
        send(client, route, agent)
    time.sleep(SETTLE_S)
    after = snapshot(r)
    busy_s = time.monotonic() - began
    busy, busy_total = delta(before, after)
    idle_before = snapshot(r)
    time.sleep(busy_s)
    idle, idle_total = delta(idle_before, snapshot(r))
    names = set(busy) | set(idle)
    return {
        "per_request": {k: (busy[k] - idle[k]) / N for k in names},
        "total": (busy_total - idle_total) / N,
        "idle_per_s": idle_total / busy_s,
        "busy_s": busy_s,
    }


# -- MONITOR pass ----------------------------------------------------------------------------------------------------

_LINE = re.compile(r"^\+(\d+\.\d+) \[(\d+) ([^\]]+)\] (.*)$")
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


class Monitor:
    """A raw MONITOR connection read in a thread: (client, command name, whole line) of every command."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.sendall(b"MONITOR\r\n")
        self.lines: list[tuple[str, str, str]] = []
        self._stop = threading.Event()
        self._buf = b""
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def _read(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            self._buf += chunk
            *done, self._buf = self._buf.split(b"\r\n")
            for raw in done:
                m = _LINE.match(raw.decode(errors="replace"))
                if m:
                    args = _ARG.findall(m.group(4))
                    self.lines.append((m.group(3), args[0].lower() if args else "?", m.group(4)))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def redis_client_ports(pid: int, redis_port: int) -> set[str]:
    """The "127.0.0.1:<port>" addresses of a process's (and its children's) connections to Redis, from /proc."""
    inodes: set[str] = set()
    pids = [pid]
    with contextlib.suppress(OSError):  # uvicorn without --workers has no children
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        for fd in Path(f"/proc/{p}/fd").glob("*"):
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    out = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            local, remote, inode = cols[1], cols[2], cols[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == redis_port:
                out.add(f"127.0.0.1:{int(local.rsplit(':', 1)[1], 16)}")
    return out


def monitor_pass(
    host: str, port: int, server: Server, client: httpx.Client, route: str, agent: str, tag: str
) -> dict[str, Any]:
    """SAMPLE requests under MONITOR: commands per request sent by the server, and run inside its Lua scripts."""
    send(client, route, agent)  # connections to Redis exist before the addresses are read
    with Monitor(host, port) as mon:
        time.sleep(0.1)
        for _ in range(SAMPLE):
            send(client, route, agent)
        time.sleep(SETTLE_S)
    assert server.proc is not None
    ours = redis_client_ports(server.proc.pid, port)
    sent: Counter[str] = Counter()
    in_lua: Counter[str] = Counter()
    for who, name, line in mon.lines:
        if who in ours:
            sent[name] += 1
        elif who == "lua" and tag in line:  # script calls name their keys, which carry the run-unique hash tag
            in_lua[name] += 1
    return {
        "sent": {k: v / SAMPLE for k, v in sent.items()},
        "in_lua": {k: v / SAMPLE for k, v in in_lua.items()},
        "connections": len(ours),
    }


# -- main --------------------------------------------------------------------------------------------------------------


def main() -> int:
    began = time.monotonic()
    url = urlparse(REDIS_URL)
    rhost, rport = url.hostname or "127.0.0.1", url.port or 6379
    r = redis.Redis.from_url(REDIS_URL)
    version = r.info("server")["redis_version"]
    tag = f"{{kbredis-{os.getpid()}}}"
    prefix = tag + ":"
    tmp = Path(tempfile.mkdtemp(prefix="kb-bench-redis-"))
    up_port, port = free_port(), free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("KILO_", "REDIS_PREFIX", "JOB"))}
    fake = Server(
        "fake gateway",
        [sys.executable, "tests/fakes/fake_gateway.py", "--port", str(up_port), "--always-usage"],
        base_env,
        up_port,
    )
    bridge = Server(
        "kilo bridge",
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "kilo_bridge", "serve"],
        {
            **base_env,
            "KILO_API_KEY": KEY,
            "KILO_GATEWAY_BASE": f"http://127.0.0.1:{up_port}/api/gateway",
            "PORT": str(port),
            "REDIS_URL": REDIS_URL,
            "REDIS_PREFIX": prefix,
            "AUTH_REQUIRED": "false",
            "JOBS_CONCURRENCY": "0",
            "JOB_SECRETS_KEY_FILE": str(tmp / "job-secrets.key"),
            "ARTIFACTS_DIR": str(tmp / "artifacts"),
            "JOB_WORKDIR": str(tmp),
        },
        port,
    )
    windows: dict[str, list[dict[str, Any]]] = {route: [] for route in ROUTES}
    monitored: dict[str, dict[str, Any]] = {}
    try:
        fake.start()
        bridge.start()
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while True:  # ready = answers its health check (the fake starts faster than the bridge)
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or bridge.proc is None or bridge.proc.poll() is not None:
                    raise RuntimeError("kilo bridge did not start:\n" + "\n".join(bridge.tail))
                time.sleep(0.2)
            names = [a["name"] for a in client.get("/api/kilo/agents").json().get("agents", [])]
            agent = "apply-patch-and-pr" if "apply-patch-and-pr" in names else names[0]
            for route in ROUTES:  # warm every path (imports, scripts loaded, pools filled) outside the windows
                for _ in range(20):
                    send(client, route, agent)
            for rep in range(REPS):
                for route in ROUTES:
                    w = measure_window(r, client, route, agent)
                    windows[route].append(w)
                    print(
                        f"rep {rep + 1}/{REPS} {route:12} {w['total']:6.2f} commands/request "
                        f"(idle {w['idle_per_s']:.1f}/s, {w['busy_s']:.1f} s)",
                        flush=True,
                    )
            for route in ROUTES:
                monitored[route] = monitor_pass(rhost, rport, bridge, client, route, agent, tag)
                m = monitored[route]
                print(
                    f"MONITOR {route:12} sent {sum(m['sent'].values()):.2f}/request {dict(m['sent'])}  "
                    f"inside Lua {sum(m['in_lua'].values()):.2f}/request",
                    flush=True,
                )
    finally:
        bridge.stop()
        fake.stop()
        keys = list(r.scan_iter(match=prefix + "*", count=1000)) + list(r.scan_iter(match=tag + "*", count=1000))
        if keys:
            r.delete(*set(keys))
    result = summarize(windows, monitored)
    result.update(
        when=f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        redis=version,
        n=N,
        reps=REPS,
        sample=SAMPLE,
        platform=platform.platform(),
        cores=os.cpu_count(),
        agent=agent,
        wall_s=time.monotonic() - began,
        commit=_commit(),
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    write_report(result)
    print(f"done in {result['wall_s']:.0f} s")
    return 0


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return "?"


def summarize(windows: dict[str, list[dict[str, Any]]], monitored: dict[str, dict[str, Any]]) -> dict[str, Any]:
    routes = {}
    for route, ws in windows.items():
        names = sorted(
            {k for w in ws for k in w["per_request"]} | set(monitored[route]["sent"]) | set(monitored[route]["in_lua"])
        )
        per_cmd = {k: statistics.median(w["per_request"].get(k, 0.0) for w in ws) for k in names}
        routes[route] = {
            "commands": {
                k: {
                    "commandstats": per_cmd[k],
                    "sent": monitored[route]["sent"].get(k, 0.0),
                    "in_lua": monitored[route]["in_lua"].get(k, 0.0),
                }
                for k in names
            },
            "total": statistics.median(w["total"] for w in ws),
            "total_range": [min(w["total"] for w in ws), max(w["total"] for w in ws)],
            "commandstats_sum": sum(per_cmd.values()),
            "sent": sum(monitored[route]["sent"].values()),
            "in_lua": sum(monitored[route]["in_lua"].values()),
            "idle_per_s": statistics.median(w["idle_per_s"] for w in ws),
            "connections": monitored[route]["connections"],
        }
    return {"routes": routes}


def write_report(res: dict[str, Any]) -> None:
    lines = [
        "# Redis commands per request",
        "",
        f"Measured {res['when']} by `make bench-redis` (`tests/benchmarks/redis_trips.py`) at commit {res['commit']}, "
        f"against the local Redis {res['redis']} on 127.0.0.1:6379; {res['platform']}, {res['cores']} cores. "
        f"{res['n']} sequential requests per route, {res['reps']} repetitions, median; whole run "
        f"{res['wall_s']:.0f} s.",
        "",
        "## Summary",
        "",
        "*Sent by the server* is what the server itself sends to Redis per request (each one a command on the wire; "
        "commands of one pipeline share a network round trip); *inside Lua* is what its scripts run within one "
        "`EVALSHA`, in Redis, without a round trip. Both come from the MONITOR pass. *INFO total* is "
        "`total_commands_processed` per request (busy minus idle window, median), which counts both kinds.",
        "",
        "| route | sent by the server | inside Lua | INFO total (min-max) | idle commands/s on this Redis |",
        "|---|---|---|---|---|",
    ]
    for route in ROUTES:
        x = res["routes"][route]
        lines.append(
            f"| {WHAT[route]} | **{x['sent']:.2f}** | {x['in_lua']:.2f} | {x['total']:.2f} "
            f"({x['total_range'][0]:.2f}-{x['total_range'][1]:.2f}) | {x['idle_per_s']:.1f} |"
        )
    lines += [
        "",
        "## By command",
        "",
        "Per request. *commandstats* is `INFO commandstats` calls (busy minus idle window, median of the "
        "repetitions): it counts commands run inside Lua too, and anything another client did that the idle window "
        "did not cancel out (values within ±0.02 of a whole number are as exact as this shared Redis allows).",
        "",
    ]
    for route in ROUTES:
        x = res["routes"][route]
        rows = sorted(x["commands"].items(), key=lambda kv: -max(kv[1]["commandstats"], kv[1]["sent"], kv[1]["in_lua"]))
        # commands the server never sent (per MONITOR) and that stay under 0.05 a request are other clients' noise
        shown = [(k, v) for k, v in rows if v["sent"] or v["in_lua"] or abs(v["commandstats"]) >= 0.05]
        noise = sum(v["commandstats"] for k, v in rows if (k, v) not in shown)
        lines += [
            f"### {WHAT[route]}",
            "",
            "| command | commandstats | sent by the server | inside Lua |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{k.upper()}` | {v['commandstats']:.2f} | {v['sent']:.2f} | {v['in_lua']:.2f} |" for k, v in shown
        ]
        if len(shown) < len(rows):
            lines.append(
                f"| {len(rows) - len(shown)} other commands, each under 0.05 (other clients) | {noise:+.2f} "
                "| 0.00 | 0.00 |"
            )
        lines += [f"| all | {x['commandstats_sum']:.2f} | {x['sent']:.2f} | {x['in_lua']:.2f} |", ""]
    lines += [
        "## Method",
        "",
        "- Server: `.venv/bin/python -m kilo_bridge serve` (one uvicorn worker) with the fake Kilo Gateway "
        "(`tests/fakes/fake_gateway.py --always-usage`) as upstream, `REDIS_PREFIX` unique to the run, "
        "`AUTH_REQUIRED=false`, `JOBS_CONCURRENCY=0` (jobs are accepted and queued, never run). Every route is "
        "warmed with 20 requests first (Lua scripts loaded, connection pool filled).",
        f"- Each window: `INFO commandstats` and `INFO stats` (our two INFO calls are left out), {res['n']} "
        f"sequential keep-alive requests, {SETTLE_S} s for background work (usage accounting runs after the "
        "answer is sent), INFO again; then an idle window of the same length, whose commands (the server's "
        "timers and any other client of this Redis) are subtracted. Repeated "
        f"{res['reps']} times per route, interleaved across routes; the median is reported.",
        "- This Redis is shared: other clients (tests, other benchmarks) may run commands during a window. The "
        "idle window and the median absorb steady background traffic; a burst that lands in one busy window "
        "shows as a wide min-max range.",
        f"- MONITOR pass: {res['sample']} requests per route while a `MONITOR` connection records every command. "
        "The server's connections are read from `/proc` (its sockets to port 6379), so *sent by the server* "
        "counts only them; commands run by Lua carry no connection, and are counted when they name a key with the "
        "run's unique hash tag.",
        f"- `run-agent` used the agent `{res['agent']}` with a prompt; `dryRun` true.",
        "",
        "## Rerun",
        "",
        "```sh",
        "make bench-redis                        # about a minute",
        "BENCH_REDIS_N=2000 BENCH_REDIS_REPS=5 make bench-redis",
        "```",
        "",
        "Raw numbers of the last run: `.bench/redis-results.json`.",
        "",
    ]
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "redis.md").write_text("\n".join(lines))
    print("wrote docs/benchmarks/redis.md")


if __name__ == "__main__":
    sys.exit(main())
