"""Kernel limits on the agent's process tree (agent_task/limits.py), with real bubblewrap and the kernel's own
cgroups and rlimits: a job that starts 2,000 processes, allocates 8 GB, writes a 3 GB file or fills its /tmp is
held at the limit, the host keeps answering, and the job ends `resource_limit` naming the setting.

The limits here are small (64 processes, 64 MB, 8 MB, 16 MB) so that a machine shared by many stays safe; the
first test shows they are in force before anything is allocated."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from agent_task import limits, procs
from kilo_bridge.config import Settings
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, log_events, run_body, shell_cli, wait_job

ALLOCATE_8GB = (
    "python3 -c 'import sys\nheld = []\n"
    'while len(held) < 512: held.append(bytes([1]) * (16 << 20))\nprint("allocated 8 GB")\''
)
FORK_2000 = 'i=0; while [ $i -lt 2000 ]; do sleep 120 & i=$((i+1)); done 2>/dev/null; echo "forked $i"'
WRITE_3GB = "head -c 3221225472 /dev/zero > big.bin; echo wrote"
FILL_TMP = "head -c 3221225472 /dev/zero > /tmp/fill; echo filled"


def test_the_memory_limit_is_in_force_before_the_child_allocates(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(agent_max_memory_mb=32, agent_max_procs=32)

    async def run() -> tuple[int, list[str], str]:
        with limits.confined(settings, "job_probe", None) as box:
            rc, out, _ = await procs.capture(
                ["python3", "-c", "x = bytes([1]) * (256 << 20); print('allocated')"],
                env={"PATH": "/usr/bin:/bin"},
                cwd="/",
                timeout_s=60,
                confine=box.join,
            )
            return rc, box.hits(), box.describe("bwrap") + out.decode()

    rc, hits, said = asyncio.run(run())
    assert "allocated" not in said
    if "cgroup" in said.split("memory 32 MB", 1)[1].split(";")[0]:
        assert rc == -9 and any(h.startswith("AGENT_MAX_MEMORY_MB") for h in hits), (rc, hits)
    else:  # RLIMIT_DATA: the allocation itself fails
        assert rc != 0


@pytest.mark.parametrize(
    ("overrides", "shell", "named"),
    [
        ({"agent_max_procs": 64}, FORK_2000, "AGENT_MAX_PROCS"),
        ({"agent_max_memory_mb": 64}, ALLOCATE_8GB, "AGENT_MAX_MEMORY_MB"),
        ({"agent_max_file_mb": 8}, WRITE_3GB, "AGENT_MAX_FILE_MB"),
        ({"agent_tmp_mb": 16}, FILL_TMP, "AGENT_TMP_MB"),
    ],
    ids=["processes", "memory", "file", "tmp"],
)
def test_a_job_is_held_at_each_limit_and_ends_naming_it(
    overrides: dict[str, int],
    shell: str,
    named: str,
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    tmp_path: Path,
    http_client: Callable[..., httpx.Client],
) -> None:
    settings = job_settings(agent_sandbox="bwrap", kilo_cli=shell_cli(tmp_path), **overrides)
    base = serve(settings)
    client = http_client(base_url=base, timeout=30)
    body = run_body(
        fake_github.repo_url("acme", "widgets"), profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_SHELL": shell}
    )
    job_id = client.post("/api/kilo/run-agent", json=body).json()["jobId"]

    # The host keeps answering while the job runs into its limit.
    answers: list[tuple[int, float]] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=base, timeout=10) as health:
            while not done.is_set():
                started = time.monotonic()
                answers.append((health.get("/healthz").status_code, time.monotonic() - started))
                done.wait(0.2)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        job = wait_job(client, job_id, timeout=180)
    finally:
        done.set()
        prober.join(15)
    assert (job["status"], job["reason"]) == ("failed", "resource_limit"), job
    assert named in job["error"], job["error"]
    assert answers and all(status == 200 for status, _ in answers)
    assert max(took for _, took in answers) < 5  # a generous bound: answered, not stalled behind the job

    runner_lines = [data for kind, data in log_events(client, job_id) if kind == "log" and '"runner"' in data]
    mechanism = runner_lines[1]  # among the log's first lines, before the clone
    assert "limits: processes" in mechanism, runner_lines[:3]
    assert "RLIMIT_FSIZE" in mechanism and "tmpfs size" in mechanism
    assert any("limit hit: " + named in line for line in runner_lines)
    assert not job["result"] or not job["result"].get("prUrl")


def test_a_dead_runners_empty_cgroup_is_removed_by_the_next_run(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    with limits.confined(settings, "job_probe", None) as box:
        parents = [place.parent for place in box.dirs]
    if not parents:
        pytest.skip("no writable cgroup here: the limits are rlimits")
    ended = subprocess.Popen(["true"])
    ended.wait()  # a runner's pid that is no more
    leftovers = [parent / f"kilo-agent-job_gone-{ended.pid}-0" for parent in parents]
    for place in leftovers:
        place.mkdir()
    with limits.confined(settings, "job_next", None):
        pass
    assert not any(place.exists() for place in leftovers)


def test_without_a_cgroup_the_rlimits_hold_each_process(tmp_path: Path) -> None:
    """Fargate's case (no writable cgroup): memory and one file's size per process, by setrlimit in the child."""
    box = limits.Confinement(limits.Limits(procs=64, memory_mb=64, file_mb=8, tmp_mb=16))
    assert box.cgroup == "none" and "RLIMIT_DATA" in box.describe("user")

    async def run(code: str) -> tuple[int, str]:
        rc, out, err = await procs.capture(
            ["python3", "-c", code], env={"PATH": "/usr/bin:/bin"}, cwd=str(tmp_path), timeout_s=60, confine=box.join
        )
        return rc, (out + err).decode()

    rc, said = asyncio.run(run("x = bytes([1]) * (256 << 20); print('allocated')"))
    assert rc != 0 and "MemoryError" in said and "allocated" not in said
    rc, said = asyncio.run(
        run("import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); open('big', 'wb').write(bytes(16 << 20))")
    )
    assert rc != 0 and "File too large" in said
    assert (tmp_path / "big").stat().st_size <= 8 << 20
