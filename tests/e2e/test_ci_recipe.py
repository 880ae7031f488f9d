"""The README's GitHub Actions recipe, run as GitHub runs it: each `run:` step after the install in the shell it
declares (`shell: bash` is `bash --noprofile --norc -eo pipefail {0}`), with the step's `env` filled in, against
a real local server. A job that fails must fail the step; one that succeeds passes it; forks are skipped."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kilo_bridge.config import Settings
from tests.fakes.fake_github import FakeGitHub, make_repo
from tests.jobkit import GITHUB_TOKEN
from tests.support import ROOT

# https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-syntax#jobsjob_idstepsshell
GITHUB_SHELLS = {"bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail"], None: ["bash", "-e"]}


def _workflow() -> dict[str, Any]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(name: Kilo review\n.*?)```", readme, re.S)
    assert block, "the README's GitHub Actions recipe"
    workflow: dict[str, Any] = yaml.safe_load(block.group(1))
    return workflow


def _run_steps(job: dict[str, Any], env: dict[str, str], cwd: Path) -> int:
    """The job's `run:` steps after the client's install, as the runner does: stop at the first failure, but
    still run the `if: always()` ones; the job's exit code."""
    shell = job.get("defaults", {}).get("run", {}).get("shell")
    failed = 0
    for step in job["steps"]:
        if "run" not in step or step["run"].lstrip().startswith("pip install"):
            continue  # the client is installed here already (.venv/bin on PATH)
        if failed and step.get("if") != "always()":
            continue
        assert "${{" not in step["run"], "values reach the script through env, never pasted into it"
        script = cwd / "step.sh"
        script.write_text(step["run"])
        done = subprocess.run(
            [*GITHUB_SHELLS[step.get("shell", shell)], str(script)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        failed = failed or done.returncode
    return failed


@pytest.fixture
def env(serve: Callable[..., str], job_settings: Callable[..., Settings], tmp_path: Path) -> dict[str, str]:
    server = serve(job_settings())
    return {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "KILO_BRIDGE_URL": server,
        "KILO_BRIDGE_KEY": "",
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "HEAD_REF": "main",
        "HEAD_SHA": os.urandom(8).hex(),
        "RUN_ATTEMPT": "1",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }


def test_the_recipe_runs_in_bash_with_pipefail_and_skips_forks_with_a_notice() -> None:
    jobs = _workflow()["jobs"]
    assert jobs["review"]["defaults"]["run"]["shell"] == "bash"
    assert jobs["review"]["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert jobs["fork"]["if"] == "github.event.pull_request.head.repo.full_name != github.repository"
    assert "::notice::" in jobs["fork"]["steps"][0]["run"] and "no secrets" in jobs["fork"]["steps"][0]["run"]
    install = next(s for s in jobs["review"]["steps"] if "pip install" in s.get("run", ""))
    assert install["run"].endswith('@$REF"') and install["env"]["REF"] == "${{ vars.KILO_BRIDGE_REF }}"


def test_a_failing_job_fails_the_step(env: dict[str, str], fake_github: FakeGitHub, tmp_path: Path) -> None:
    review = _workflow()["jobs"]["review"]
    # A repository that is not there: the job is accepted, then fails (clone_failed).
    code = _run_steps(review, {**env, "REPO": fake_github.repo_url("acme", "missing")}, tmp_path)
    assert code != 0
    summary = (tmp_path / "summary.md").read_text()
    assert "status:       failed" in summary and "reason:       clone_failed" in summary


def test_a_job_that_succeeds_passes(env: dict[str, str], fake_github: FakeGitHub, tmp_path: Path) -> None:
    make_repo(Path(fake_github.root), "acme", "reviewed")
    code = _run_steps(
        _workflow()["jobs"]["review"], {**env, "REPO": fake_github.repo_url("acme", "reviewed")}, tmp_path
    )
    assert code == 0, (tmp_path / "review.log").read_text()
    assert "status:       succeeded" in (tmp_path / "summary.md").read_text()
