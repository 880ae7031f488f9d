"""`kilo-bridge serve` on several cores: WEB_CONCURRENCY web processes plus exactly one job-worker process,
all stopped by SIGTERM and gone when `serve` dies. Which process holds which connection is read from
/proc (the kernel's socket tables), not from any debug route."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from kilo_bridge.config import Settings, settings_env
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, pid_alive, run_body, wait_job
from tests.support import ROOT, free_port, wait_http

pytestmark = pytest.mark.slow


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


def _cmdline(pid: int) -> str:
    return (Path(f"/proc/{pid}/cmdline").read_bytes()).replace(b"\0", b" ").decode()


def _sockets(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _tcp() -> list[tuple[int, int, str, str]]:
    """(local port, remote port, state, inode) of every TCP socket."""
    rows = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            cols = line.split()
            rows.append((int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16), cols[3], cols[9]))
    return rows


def _owners(pids: list[int], match: Callable[[int, int, str], bool]) -> set[int]:
    inodes = {inode for local, remote, state, inode in _tcp() if match(local, remote, state)}
    return {pid for pid in pids if _sockets(pid) & inodes}


@pytest.fixture
def server(job_settings: Callable[..., Settings], prefix: str) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    port = free_port()
    env = {
        **os.environ,
        **settings_env(job_settings(port=port, web_concurrency=2)),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "kilo_bridge", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc)
    yield proc, url, port
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def _web_workers(serve_pid: int) -> list[int]:
    return [p for p in _children(serve_pid) if "multiprocessing.spawn" in _cmdline(p)]


def _job_workers(serve_pid: int) -> list[int]:
    return [p for p in _children(serve_pid) if "kilo_bridge worker" in _cmdline(p)]


def test_requests_are_served_by_both_web_processes(server: tuple[subprocess.Popen[str], str, int]) -> None:
    proc, _url, port = server
    workers = _web_workers(proc.pid)
    assert len(workers) == 2
    connections: list[http.client.HTTPConnection] = []
    serving: set[int] = set()
    try:
        while len(serving) < 2 and len(connections) < 200:  # the kernel hands each accept to one of them
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            assert conn.getresponse().read()
            connections.append(conn)  # kept open: the process that answered still holds it
            serving = _owners(workers, lambda local, _remote, state: local == port and state == "01")
    finally:
        for conn in connections:
            conn.close()
    assert serving == set(workers)


def test_one_job_worker_runs_a_job_exactly_once(
    server: tuple[subprocess.Popen[str], str, int],
    fake_github: FakeGitHub,
    prefix: str,
    redis_client: redis.Redis,
    http_client: Callable[..., httpx.Client],
) -> None:
    proc, url, _port = server
    job_workers = _job_workers(proc.pid)
    assert len(job_workers) == 1
    client = http_client(base_url=url, timeout=10)
    body = run_body(
        fake_github.repo_url("acme", "widgets"), profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "write"}
    )
    response = client.post("/api/kilo/run-agent", json=body)
    assert response.status_code == 202, response.text
    job = wait_job(client, response.json()["jobId"])
    assert job["status"] == "succeeded", job
    assert len(fake_github.pulls) == 1
    # bullmq names its worker's Redis connections after the queue: only the job-worker process holds them
    # (and the reaper runs beside that worker, in LocalWorker): none of the web processes does.
    named = {
        int(c["addr"].rsplit(":", 1)[1]) for c in redis_client.client_list() if c.get("name") == f"{prefix}agent-jobs"
    }
    assert named
    everyone = _children(proc.pid)
    assert _owners(everyone, lambda local, _remote, _state: local in named) == set(job_workers)


def test_sigterm_stops_every_process(server: tuple[subprocess.Popen[str], str, int]) -> None:
    proc, url, _port = server
    family = _children(proc.pid)
    assert len(_web_workers(proc.pid)) == 2 and len(_job_workers(proc.pid)) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/healthz")
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in family if pid_alive(p)] == []


def test_the_children_die_with_serve(server: tuple[subprocess.Popen[str], str, int]) -> None:
    proc, _url, _port = server
    assert len(_web_workers(proc.pid)) == 2 and len(_job_workers(proc.pid)) == 1
    family = _children(proc.pid)  # multiprocessing's resource tracker too
    proc.kill()  # no chance to stop anything itself: the kernel tells each child (PR_SET_PDEATHSIG)
    proc.wait(10)
    deadline = time.monotonic() + 30
    while any(pid_alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in family if pid_alive(p)] == []
