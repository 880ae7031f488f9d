"""The OS sandbox around the agent (agent_task/sandbox.py) with real bubblewrap and, as root, a real
unprivileged user: what the agent process can see, read and write. One job with the real pinned CLI whose
scripted model uses bash (allowed to `apply-patch-and-pr`) to reach the server's secrets key, the artifacts,
another job's workspace and the host: none of it is there."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from agent_task.sandbox import Sandbox, SandboxUnavailable, resolve
from kilo_bridge.config import Settings, load_settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, log_events, run_body, wait_job

CANARY = "canary-server-side-3a9d71"
CLI = load_settings().kilo_cli_path


def run_in(sandbox: Sandbox, tmp: Path, script: str, repo_writable: bool = True) -> subprocess.CompletedProcess[str]:
    repo, home = tmp / "repo", tmp / "agent"
    repo.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    argv = sandbox.wrap(["/bin/sh", "-c", script], cwd=repo, writable=[home], readable=[], repo_writable=repo_writable)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    return subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def server_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "server" / "job-secrets.key"
    secret.parent.mkdir()
    secret.write_text(CANARY)
    return secret


def test_bwrap_shows_the_checkout_and_private_dirs_only(tmp_path: Path, server_secret: Path) -> None:
    sandbox = resolve("bwrap", "nobody", CLI)
    assert sandbox.mode == "bwrap"
    done = run_in(
        sandbox,
        tmp_path,
        f"""
        echo in-repo > made.txt && echo repo-writable
        echo home > "$HOME/h" && echo home-writable
        echo t > /tmp/t && echo tmp-writable
        cat {server_secret} || echo no-secret
        ls {tmp_path} ; ls /etc/shadow || echo no-shadow
        touch /usr/x 2>/dev/null || echo usr-read-only
        echo "pids=$(ls /proc | grep -c '^[0-9]')" ; echo "uid=$(id -u)" ; ls /""",
    )
    out = done.stdout
    assert {"repo-writable", "home-writable", "tmp-writable", "no-secret", "no-shadow", "usr-read-only"} <= set(
        out.split()
    ), done
    assert CANARY not in out
    assert "server" not in out.split()  # the test's own directory shows only the paths bound into it
    assert "uid=65534" in out.split()  # not root, even when the runner is
    assert int(next(w for w in out.split() if w.startswith("pids="))[5:]) < 10  # its own pid namespace
    assert "home" not in out.split() and "root" not in out.split() and "run" not in out.split()  # no host dirs
    assert (tmp_path / "repo" / "made.txt").read_text() == "in-repo\n"
    assert not (tmp_path / "t").exists()


def test_bwrap_checkout_is_read_only_for_report_agents(tmp_path: Path) -> None:
    done = run_in(resolve("bwrap", "nobody", CLI), tmp_path, "touch made.txt || echo refused", repo_writable=False)
    assert "refused" in done.stdout and not (tmp_path / "repo" / "made.txt").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_user_mode_runs_the_agent_unprivileged_away_from_the_runners_files(tmp_path: Path, server_secret: Path) -> None:
    server_secret.chmod(0o600)
    sandbox = resolve("user", "nobody", CLI)
    tmp_path.chmod(0o755)
    done = run_in(
        sandbox,
        tmp_path,
        f"id -u; cat {server_secret} || echo no-secret; cat /proc/{os.getpid()}/environ || echo no-environ",
    )
    assert done.stdout.split()[0] == "65534" and "no-secret" in done.stdout and "no-environ" in done.stdout
    assert CANARY not in done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_user_mode_refuses_a_missing_or_root_user() -> None:
    for name in ("no-such-user-kb", "root"):
        with pytest.raises(SandboxUnavailable, match="AGENT_SANDBOX=user"):
            resolve("user", name, CLI)


def test_auto_fails_the_job_naming_the_setting_when_bwrap_cannot_run(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    http_client: Callable[..., httpx.Client],
) -> None:
    # bubblewrap where namespaces are forbidden (Fargate's seccomp profile): it exits 1.
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    (fakebin / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    (fakebin / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fakebin}:{os.environ['PATH']}")
    client = http_client(base_url=serve(job_settings(agent_sandbox="auto")), timeout=10)
    job_id = client.post("/api/kilo/run-agent", json=run_body(fake_github.repo_url("acme", "widgets"))).json()["jobId"]
    job = wait_job(client, job_id)
    assert job["status"] == "failed" and job["reason"] == "sandbox_unavailable", job
    assert "AGENT_SANDBOX=auto" in job["error"] and "No permissions" in job["error"]
    assert job["result"]["filesChanged"] == [] and not fake_github.pulls  # the agent never ran


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_cli_in_bwrap_cannot_reach_server_files_artifacts_or_other_jobs(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    tmp_path: Path,
    http_client: Callable[..., httpx.Client],
) -> None:
    settings = job_settings(real_cli=True, agent_sandbox="bwrap")
    key_file = Path(settings.job_secrets_key_file)
    artifacts = Path(settings.artifacts_dir)
    other_job = Path(settings.job_workdir or "") / "kb-job-other" / "repo"
    other_job.mkdir(parents=True)
    (other_job / "secret.txt").write_text(CANARY)
    outside = tmp_path / "outside-marker"
    # The CLI refuses a bash command naming a path outside the checkout; a script it writes first does not
    # (the CLI sees `sh probe.sh` only): past that layer, the sandbox is what stands.
    probe = (
        f"cat /etc/../{key_file} > probe.txt 2>&1; ls -R {artifacts} >> probe.txt 2>&1\n"
        f"cat {other_job}/secret.txt >> probe.txt 2>&1\n"
        "printenv GITHUB_TOKEN >> probe.txt || echo no-token >> probe.txt\n"
        f"touch {outside}; id -u >> probe.txt\n"
    )
    fake.agent_plan = [
        {"tool": "write", "args": {"filePath": "probe.sh", "content": probe}},
        {"tool": "bash", "args": {"description": "probe", "command": "sh probe.sh"}},
    ]
    fake.agent_text = "Probed."
    client = http_client(base_url=serve(settings), timeout=10)
    job_id = client.post(
        "/api/kilo/run-agent",
        json=run_body(fake_github.repo_url("acme", "widgets"), dryRun=True, profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN}),
    ).json()["jobId"]
    job = wait_job(client, job_id, timeout=240)
    assert job["status"] == "succeeded", job
    assert sorted(job["result"]["filesChanged"]) == ["probe.sh", "probe.txt"], job
    # The key file exists on the server (the job's profileEnv was sealed with it), not in the sandbox.
    key = key_file.read_bytes()
    assert key
    diff = (artifacts / "jobs" / job_id / "diff.patch").read_text()
    log = (artifacts / "jobs" / job_id / "log.jsonl").read_text()
    for text in (diff, log, json.dumps(list(fake.requests))):
        assert CANARY not in text and key.decode(errors="replace").strip() not in text
        assert GITHUB_TOKEN not in text
    assert "No such file" in diff and "+no-token" in diff and "+65534" in diff
    assert "sandbox: bwrap" in log
    assert not outside.exists()


def test_the_patch_leftovers_clean_up_never_follows_an_agent_made_link(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    tmp_path: Path,
    http_client: Callable[..., httpx.Client],
) -> None:
    """A patch that does not apply leaves `docs/guide.md.rej` for the agent; the agent swaps `docs` for a link
    to a host directory holding a file of that name. The runner's clean-up of the leftovers must not delete it."""
    from tests.fakes.fake_github import make_repo
    from tests.jobkit import shell_cli

    make_repo(fake_github.root, "acme", "gadgets", {"README.md": "# gadgets\n", "docs/guide.md": "the guide\n"})
    host = tmp_path / "host-dir"
    host.mkdir()
    victim = host / "guide.md.rej"
    victim.write_text("a host file the runner must never touch\n")
    patch = (
        "diff --git a/docs/guide.md b/docs/guide.md\n--- a/docs/guide.md\n+++ b/docs/guide.md\n"
        "@@ -1 +1 @@\n-a line this checkout does not have\n+the patched line\n"
    )
    agent = f'test -f docs/guide.md.rej && mv docs docs-real && ln -s {host} docs && echo "swapped"'
    client = http_client(base_url=serve(job_settings(kilo_cli=shell_cli(tmp_path))), timeout=10)
    job_id = client.post(
        "/api/kilo/run-agent",
        json={
            "repoUrl": fake_github.repo_url("acme", "gadgets"),
            "agent": "apply-patch-and-pr",
            "dryRun": True,
            "patch": patch,
            "profileEnv": {"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_SHELL": agent},
        },
    ).json()["jobId"]
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", job
    assert "docs/guide.md" in " ".join(
        d for k, d in log_events(client, job_id) if k == "log"
    )  # the patch did leave its leftovers
    assert "docs" in job["result"]["filesChanged"]  # the agent's link is its change, and that is all
    assert victim.read_text() == "a host file the runner must never touch\n"
