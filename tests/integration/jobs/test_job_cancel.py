"""A cancel ends the agent's whole process tree at once in every phase — while the CLI starts (`kilo agent
list`) and while the agent runs — the job shows `cancelling` until it is `cancelled`, and nothing the agent
does after the cancel becomes the job's work. Asserted on events (a marker the agent writes, the job's final
state, the pids it reported); the time bounds are generous, only there to fail instead of hanging."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from kilo_bridge.config import Settings
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, pid_alive, run_body, shell_cli, wait_job


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def cancel(client: httpx.Client, job_id: str) -> None:
    response = client.delete(f"/api/kilo/job/{job_id}")
    assert response.status_code == 202, response.text
    # At once, before the runner has noticed: the API says the job is being cancelled.
    assert response.json()["status"] == "cancelling" and response.json()["cancelRequested"] is True
    assert client.get(f"/api/kilo/job/{job_id}").json()["status"] in ("cancelling", "cancelled")


def test_a_cancel_while_the_cli_starts_ends_it_at_once(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    tmp_path: Path,
    http_client: Callable[..., httpx.Client],
) -> None:
    pids, started = tmp_path / "pids", tmp_path / "listing"
    # `kilo agent list` that hangs (a slow CLI start): the cancel must not wait for it.
    listing = f"echo $$ >> {pids}; sleep 300 & echo $! >> {pids}; touch {started}; wait"
    client = http_client(base_url=serve(job_settings(kilo_cli=shell_cli(tmp_path), job_kill_grace_s=30)), timeout=10)
    body = run_body(
        fake_github.repo_url("acme", "widgets"),
        profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_LIST_SHELL": listing, "FAKE_KILO_SHELL": "exit 0"},
    )
    job_id = client.post("/api/kilo/run-agent", json=body).json()["jobId"]
    wait_for(started)
    cancel(client, job_id)
    job = wait_job(client, job_id, timeout=60)  # the hung listing alone would hold it for 300 s
    assert (job["status"], job["reason"]) == ("cancelled", "cancelled_by_user"), job
    assert [pid for pid in map(int, pids.read_text().split()) if pid_alive(pid)] == []


def test_a_cancel_while_the_agent_runs_kills_its_tree_and_keeps_nothing_it_did_after(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    tmp_path: Path,
    http_client: Callable[..., httpx.Client],
) -> None:
    pids, running = tmp_path / "pids", tmp_path / "running"
    agent = f"""
    echo before > before.txt
    trap 'echo late > after-cancel.txt; echo late > after-cancel-2.txt' TERM
    setsid sh -c 'while :; do date > escaped.txt; sleep 0.05; done' </dev/null >/dev/null 2>&1 &
    echo $! >> {pids}; echo $$ >> {pids}
    touch {running}
    while :; do sleep 0.1; done
    """
    # A long grace: what an agent does in it (its TERM trap) comes after the cancel.
    client = http_client(base_url=serve(job_settings(kilo_cli=shell_cli(tmp_path), job_kill_grace_s=30)), timeout=10)
    body = run_body(
        fake_github.repo_url("acme", "widgets"), profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_SHELL": agent}
    )
    job_id = client.post("/api/kilo/run-agent", json=body).json()["jobId"]
    wait_for(running)
    cancel(client, job_id)
    job = wait_job(client, job_id, timeout=60)
    assert (job["status"], job["reason"]) == ("cancelled", "cancelled_by_user"), job
    # Its whole tree is gone, the process that left the group for a session of its own too.
    assert [pid for pid in map(int, pids.read_text().split()) if pid_alive(pid)] == []
    # The work before the cancel is the job's partial result; what it did on the signal is not.
    files = job["result"]["filesChanged"]
    assert "before.txt" in files and not any(name.startswith("after-cancel") for name in files), files
    assert not job["result"].get("prUrl")
