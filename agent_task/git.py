"""git for the runner: clone, inspect the change, commit and push — with the repository token passed
through GIT_ASKPASS from the environment of git alone: never in the URL, argv, logs or `.git/config`.

Every call disables what a hostile repository or remote could use against us: hooks, credential helpers,
protocols other than https (http/file only for local development and tests), interactive prompts.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

# Answers only for the host that was cloned (git's prompt names the URL); anything else gets nothing.
ASKPASS = """#!/bin/sh
case "$1" in
  *"//$KB_GIT_HOST'"*|*"@$KB_GIT_HOST'"*) ;;
  *) exit 1 ;;
esac
case "$1" in
  Username*) printf '%s\\n' "${KB_GIT_USER:-x-access-token}" ;;
  *) printf '%s\\n' "$KB_GIT_TOKEN" ;;
esac
"""
AUTHOR = ("Kilo Bridge", "kilo-bridge@users.noreply.github.com")


@dataclass(slots=True)
class GitEnv:
    home: Path
    askpass: Path
    token: str | None
    allow_local: bool
    # The clone's git directory, kept outside the checkout (`--separate-git-dir`): every later command names
    # it and the work tree explicitly, so a `.git` the agent writes into its checkout is never read.
    git_dir: Path
    host: str = ""
    work_tree: Path | None = None

    @classmethod
    def create(cls, workspace: Path, token: str | None, allow_local: bool, git_dir: Path | None = None) -> GitEnv:
        home = workspace / "home"
        home.mkdir(parents=True, exist_ok=True)
        askpass = workspace / "askpass.sh"
        askpass.write_text(ASKPASS)
        askpass.chmod(stat.S_IRWXU)
        return cls(home, askpass, token, allow_local, git_dir or workspace / "git")

    def env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.home),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "KB_GIT_HOST": self.host,
            "GIT_ASKPASS": str(self.askpass),
            "GIT_AUTHOR_NAME": AUTHOR[0],
            "GIT_AUTHOR_EMAIL": AUTHOR[1],
            "GIT_COMMITTER_NAME": AUTHOR[0],
            "GIT_COMMITTER_EMAIL": AUTHOR[1],
            "LC_ALL": "C",
        }
        if self.token:
            env["KB_GIT_TOKEN"] = self.token
        return env

    def argv(self, *args: str) -> list[str]:
        protocols = ["-c", "protocol.allow=never", "-c", "protocol.https.allow=always"]
        if self.allow_local:
            protocols += ["-c", "protocol.http.allow=always", "-c", "protocol.file.allow=always"]
        return [
            "git",
            "-c",
            "credential.helper=",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.askPass=" + str(self.askpass),
            "-c",
            "http.followRedirects=false",
            "-c",
            "submodule.recurse=false",
            *protocols,
            *([f"--git-dir={self.git_dir}", f"--work-tree={self.work_tree}"] if self.work_tree else []),
            *args,
        ]

    def reseal(self, config: bytes) -> None:
        """Put back what the clone wrote and drop what the agent may have added: whatever it wrote into the
        git directory (config: fsmonitor, pushurl, insteadOf, filters, pagers; hooks) never runs."""
        (self.git_dir / "config").write_bytes(config)
        for name in ("hooks", "info/attributes", "objects/info/alternates"):
            path = self.git_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()


def clone_argv(g: GitEnv, url: str, dest: Path, branch: str | None) -> list[str]:
    args = ["clone", "--depth", "1", "--single-branch", "--no-tags", f"--separate-git-dir={g.git_dir}"]
    if branch:
        args += ["--branch", branch]
    # "--" ends the options: a URL can never be read as one.
    return g.argv(*args, "--", url, str(dest))
