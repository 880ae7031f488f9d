"""Helpers for agent-job tests: a stand-in CLI wrapper, job settings, waiting on a job."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import ROOT

GITHUB_TOKEN = "ghp_fake_test_token_0123456789"
FINAL = ("succeeded", "failed", "cancelled", "timed_out")


def stand_in_cli(tmp: Path) -> str:
    """An executable that runs tests/fakes/fake_kilo.py with this interpreter (the runner gives the CLI a
    minimal PATH, so the wrapper names the interpreter itself)."""
    wrapper = tmp / "kilo"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {ROOT / "tests/fakes/fake_kilo.py"} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def shell_cli(tmp: Path) -> str:
    """A stand-in CLI in plain sh, so it runs inside bubblewrap too (which binds the CLI's own file, nothing
    of the test's interpreter): `agent list` names the catalogue's agents (no rules: for agents that may
    write), after running FAKE_KILO_LIST_SHELL if set; `run` runs the job's FAKE_KILO_SHELL (from its profileEnv)
    as the agent, in the checkout."""
    script = tmp / "kilo-sh"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "agent list" ]; then\n'
        '  [ -n "$FAKE_KILO_LIST_SHELL" ] && /bin/sh -c "$FAKE_KILO_LIST_SHELL"\n'
        '  for f in "$KILO_CONFIG_DIR"/agent/*.md; do printf \'%s (primary)\\n[]\\n\' "$(basename "$f" .md)"; done\n'
        "  exit 0\n"
        "fi\n"
        'echo \'{"type":"step_start","part":{}}\'\n'
        'exec /bin/sh -c "$FAKE_KILO_SHELL"\n'
    )
    script.chmod(0o755)
    return str(script)


def job_overrides(tmp: Path, github_api_url: str, cli: str | None) -> dict[str, Any]:
    """Settings for jobs on this machine, with short timings so failure cases resolve in seconds."""
    values: dict[str, Any] = {
        "repo_allow_local": True,
        "github_api_url": github_api_url,
        "jobs_concurrency": 1,
        "job_workdir": str(tmp),
        "job_heartbeat_s": 0.2,
        "job_takeover_s": 1.0,
        "job_kill_grace_s": 1.0,
        "job_lock_ms": 2_000,
        "job_stalled_check_ms": 500,
        # The stand-in reports its own pids (kill tests): no pid namespace. The sandbox has tests of its own.
        "agent_sandbox": "none",
    }
    if cli:
        values["kilo_cli"] = cli
    return values


def wait_job(
    client: httpx.Client, job_id: str, statuses: tuple[str, ...] = FINAL, timeout: float = 60, phase: str | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/api/kilo/job/{job_id}").json()
        if job["status"] in statuses and (phase is None or job["phase"] == phase):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stayed {job['status']}/{job['phase']}: {job}")
        time.sleep(0.1)


def log_events(client: httpx.Client, job_id: str) -> list[tuple[str | None, str]]:
    events: list[tuple[str | None, str]] = []
    kind: str | None = None
    with client.stream("GET", f"/api/kilo/job/{job_id}/logs") as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, line[6:]))
    return events


def run_body(repo_url: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"repoUrl": repo_url, "agent": "apply-patch-and-pr", "prompt": "make a change"}
    body.update(extra)
    return body


def pid_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.split(") ", 1)[1][0] != "Z"  # a zombie is dead, just not reaped yet


def workspaces(workdir: Path) -> list[str]:
    """The job workspaces left in a work directory (the CLI's agent listing, kept per CLI build, is not one)."""
    return sorted(p.name for p in workdir.iterdir() if not p.name.startswith(".kilo-agents-"))
