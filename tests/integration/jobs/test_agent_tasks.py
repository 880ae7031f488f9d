"""What a run may ask for: the source document's own example, each agent's default task, and a patch."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx

from kilo_bridge.config import Settings
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, log_events, run_body, wait_job
from tests.support import ROOT

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "PATH": "/usr/bin:/bin",
}
CLEAN_PATCH = """diff --git a/README.md b/README.md
--- a/README.md
+++ b/README.md
@@ -1 +1,3 @@
 # demo
+
+Patched by the run.
"""


def git(work: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(work), *args], check=True, capture_output=True, text=True, env=GIT_ENV
    ).stdout


def test_the_source_documents_example_is_accepted_verbatim(
    serve: Callable[..., str], make_settings: Callable[..., Settings], http_client: Callable[..., httpx.Client]
) -> None:
    # kilo-sponsor-integration.md's run-agent body, as written there (only the host allowlist is ours).
    body = {
        "repoUrl": "https://github.com/your-org/your-repo.git",
        "agent": "apply-patch-and-pr",
        "profileEnv": {"GITHUB_TOKEN": "ghp_..."},
        "timeoutMs": 120000,
        "dryRun": False,
    }
    client = http_client(base_url=serve(make_settings()), timeout=10)
    response = client.post("/api/kilo/run-agent", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"


def test_every_agent_shows_the_task_it_runs_without_a_prompt(
    serve: Callable[..., str], make_settings: Callable[..., Settings]
) -> None:
    agents = httpx.get(serve(make_settings()) + "/api/kilo/agents").json()["agents"]
    by_name = {a["name"]: a for a in agents}
    assert {"apply-patch-and-pr", "review", "build", "dependency-update"} <= set(by_name)
    assert all(a["defaultPrompt"] and not a["requiresPrompt"] for a in agents)
    assert by_name["apply-patch-and-pr"]["acceptsPatch"] and not by_name["review"]["acceptsPatch"]
    assert by_name["build"]["after"] == "report"


def test_a_patch_is_applied_before_the_agent_and_lands_in_the_pull_request(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    client = http_client(base_url=serve(job_settings()), timeout=10)
    job_id = client.post(
        "/api/kilo/run-agent",
        json={
            "repoUrl": fake_github.repo_url("acme", "widgets"),
            "agent": "apply-patch-and-pr",
            "patch": CLEAN_PATCH,
            "profileEnv": {"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_ECHO_TASK": "1"},
        },
    ).json()["jobId"]
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", job
    assert set(job["result"]["filesChanged"]) == {"README.md", "CHANGE.md"}  # the patch and the agent's work
    bare = str(fake_github.root / "acme" / "widgets.git")
    readme = subprocess.run(["git", "-C", bare, "show", f"kilo/{job_id}:README.md"], capture_output=True, text=True)
    assert readme.stdout == "# demo\n\nPatched by the run.\n"
    lines = "\n".join(d for k, d in log_events(client, job_id) if k == "log")
    assert "patch applied cleanly" in lines and "builds and its tests pass" in lines


def test_a_stale_patch_leaves_conflicts_for_the_agent_and_a_broken_one_fails_clearly(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    work = fake_github.root / ".work-acme-widgets"
    base = git(work, "rev-parse", "HEAD").strip()
    (work / "README.md").write_text("# demo, as the patch's author saw it\n")
    stale = git(work, "diff")  # against the first commit: its blob is in the history
    git(work, "checkout", "-q", "--", "README.md")
    (work / "README.md").write_text("# demo, changed on main since\n")
    git(work, "commit", "-qam", "moved on")
    git(work, "push", "-q", str(fake_github.root / "acme" / "widgets.git"), "HEAD:main")
    assert base != git(work, "rev-parse", "HEAD").strip()
    client = http_client(base_url=serve(job_settings()), timeout=10)
    repo = fake_github.repo_url("acme", "widgets")
    env = {"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_ECHO_TASK": "1"}
    job_id = client.post(
        "/api/kilo/run-agent",
        json={"repoUrl": repo, "agent": "apply-patch-and-pr", "dryRun": True, "patch": stale, "profileEnv": env},
    ).json()["jobId"]
    stale_job = wait_job(client, job_id)
    assert stale_job["status"] == "succeeded", (stale_job["reason"], stale_job["error"])
    lines = "\n".join(d for k, d in log_events(client, job_id) if k == "log")
    assert "with conflicts in README.md" in lines and "resolve every conflict" in lines and ".rej" in lines
    broken = client.post(
        "/api/kilo/run-agent",
        json={
            "repoUrl": repo,
            "agent": "apply-patch-and-pr",
            "patch": "diff --git a/NOPE b/NOPE\n--- a/NOPE\n+++ b/NOPE\n@@ -1 +1 @@\n-x\n+y\n",
            "profileEnv": env,
        },
    ).json()["jobId"]
    job = wait_job(client, broken)
    assert (job["status"], job["reason"]) == ("failed", "patch_failed"), job


def test_a_patch_is_refused_for_an_agent_that_takes_none(
    serve: Callable[..., str], make_settings: Callable[..., Settings]
) -> None:
    response = httpx.post(
        serve(make_settings(repo_allow_local=True)) + "/api/kilo/run-agent",
        json={"repoUrl": "https://github.com/acme/widgets.git", "agent": "review", "patch": CLEAN_PATCH},
    )
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "patch"


def test_the_cli_lists_its_agents_once_per_build_and_catalogue_not_once_per_job(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    tmp_path: Path,
    http_client: Callable[..., httpx.Client],
) -> None:
    listed = tmp_path / "listed.log"
    agents = tmp_path / "agents"
    shutil.copytree(ROOT / "agent_task/agents", agents)
    client = http_client(base_url=serve(job_settings(agents_dir=str(agents))), timeout=10)
    env = {"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_LIST_LOG": str(listed)}

    def run() -> None:
        body = run_body(fake_github.repo_url("acme", "widgets"), dryRun=True, profileEnv=env)
        job = wait_job(client, client.post("/api/kilo/run-agent", json=body).json()["jobId"])
        assert job["status"] == "succeeded", job

    run()
    run()
    assert listed.read_text().count("listed") == 1  # the second job used the first one's check
    definition = agents / "kilo/agent/apply-patch-and-pr.md"
    definition.write_text(definition.read_text() + "\nA changed definition.\n")
    run()
    assert listed.read_text().count("listed") == 2  # a changed catalogue is checked again
