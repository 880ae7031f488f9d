"""A hostile agent against the runner's git (real git, a real bare repository behind the fake GitHub): it sets
`core.fsmonitor`, `remote.origin.pushurl`, `url.*.pushInsteadOf` and a hook in the clone's git directory,
and replaces the checkout's `.git` with one of its own. None of it runs, and the push goes to the URL that
was cloned only. The agent is a shell script standing in for the CLI, with no sandbox (`AGENT_SANDBOX=none`,
the weakest case: it can write the runner's git directory)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx

from kilo_bridge.config import Settings
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job

AGENT = """#!/bin/sh
if [ "$1" = agent ]; then printf 'apply-patch-and-pr (primary)\\n[]\\n'; exit 0; fi
M={markers}
git config core.fsmonitor "touch $M/fsmonitor; false"
git config remote.origin.pushurl {evil}
git config url.{evil}.pushInsteadOf {real}
git config core.hooksPath "$(pwd)/hooks"
mkdir -p hooks && printf '#!/bin/sh\\ntouch %s/hook\\n' "$M" > hooks/pre-commit && chmod +x hooks/pre-commit
gitdir=$(sed -n 's/^gitdir: //p' .git)
mkdir -p "$gitdir/hooks" && cp hooks/pre-commit "$gitdir/hooks/pre-commit"
cp hooks/pre-commit "$gitdir/hooks/pre-push"
rm .git && mkdir .git && printf '[core]\\n\\tfsmonitor = touch %s/own-git\\n' "$M" > .git/config
echo changed > CHANGED.md
echo '{{"type":"text","part":{{"text":"done"}}}}'
"""


def test_agent_written_git_config_and_hooks_never_run_and_the_push_goes_to_the_cloned_url(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    tmp_path: Path,
    http_client: Callable[..., httpx.Client],
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    evil = tmp_path / "evil.git"
    subprocess.run(["git", "init", "-q", "--bare", str(evil)], check=True)
    real = fake_github.repo_url("acme", "widgets")
    cli = tmp_path / "hostile-kilo"
    cli.write_text(AGENT.format(markers=markers, evil=f"file://{evil}", real=real))
    cli.chmod(0o755)
    client = http_client(base_url=serve(job_settings(kilo_cli=str(cli), agent_sandbox="none")), timeout=10)
    job_id = client.post("/api/kilo/run-agent", json=run_body(real, profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN})).json()[
        "jobId"
    ]
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["filesChanged"] == ["CHANGED.md", "hooks/pre-commit"], job
    assert sorted(p.name for p in markers.iterdir()) == []  # no fsmonitor, no hook, not the agent's .git
    bare = fake_github.root / "acme" / "widgets.git"
    shown = subprocess.run(
        ["git", "-C", str(bare), "show", f"kilo/{job_id}:CHANGED.md"], capture_output=True, text=True
    )
    assert shown.stdout == "changed\n"
    refs = subprocess.run(["git", "-C", str(evil), "for-each-ref"], capture_output=True, text=True)
    assert refs.stdout == ""
    assert fake_github.pulls and fake_github.pulls[0]["head"] == f"kilo/{job_id}"


def test_askpass_answers_only_for_the_cloned_host(tmp_path: Path) -> None:
    from agent_task.git import GitEnv

    git = GitEnv.create(tmp_path, GITHUB_TOKEN, allow_local=True)
    git.host = "github.com"
    env = git.env()

    def ask(prompt: str) -> str:
        done = subprocess.run([str(git.askpass), prompt], env=env, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    assert ask("Password for 'https://x-access-token@github.com': ") == GITHUB_TOKEN
    assert ask("Username for 'https://github.com': ") == "x-access-token"
    for other in (
        "Password for 'https://x-access-token@evil.example': ",
        "Password for 'https://x-access-token@github.com.evil.example': ",
        "Username for 'https://evil.example/github.com': ",
    ):
        assert ask(other) == ""
