"""`make run`'s start banner checks what a first job would trip on, before any job: the console's address,
whether Redis answers (and where), the agents' sandbox; a port in use stops it with the port and how to pick
another, never after a line claiming to listen."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support import REDIS_URL, ROOT, TEST_KEY, free_port


def _banner(env: dict[str, str], tmp_path: Path, until: str) -> list[str]:
    """The server's lines up to the one containing `until`; the server is stopped after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kilo_bridge", "serve"],
        env={
            **os.environ,
            "KILO_API_KEY": TEST_KEY,
            "PORT": str(free_port()),
            "REDIS_URL": REDIS_URL,
            "REDIS_PREFIX": f"kbbanner{os.getpid()}:",
            "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
            "JOB_SECRETS_KEY_FILE": str(tmp_path / "job.key"),
            "JOB_WORKDIR": str(tmp_path),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 30
    try:
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line.rstrip("\n"))
            if until in line:
                return lines
        raise AssertionError(f"no line with {until!r} in {lines}")
    finally:
        proc.terminate()
        proc.communicate(timeout=20)  # to its end, and its output pipe closed


def test_the_banner_names_the_console_redis_and_a_working_sandbox(tmp_path: Path) -> None:
    lines = _banner({"JOBS_CONCURRENCY": "1"}, tmp_path, "sandbox")
    text = "\n".join(lines)
    listening = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
    assert listening is not None, text
    port = listening.group(1)
    assert f"console  http://127.0.0.1:{port}/" in text
    assert f"redis    {REDIS_URL} answers (REDIS_URL" in text
    assert "sandbox  bubblewrap (AGENT_SANDBOX=auto): agent jobs run sandboxed" in text


def test_no_bubblewrap_is_said_at_start_with_how_to_fix_it(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH without bwrap
    bare.mkdir()
    lines = _banner({"JOBS_CONCURRENCY": "1", "PATH": str(bare)}, tmp_path, "sandbox")
    sandbox = lines[-1]
    assert "NOT WORKING: bubblewrap is not installed" in sandbox
    assert "apt-get install -y bubblewrap" in sandbox and "AGENT_SANDBOX=none" in sandbox


def test_redis_that_does_not_answer_is_named_with_its_address(tmp_path: Path) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    lines = _banner({"JOBS_CONCURRENCY": "0", "REDIS_URL": nowhere}, tmp_path, "redis ")
    assert f"redis    {nowhere} DOES NOT ANSWER" in lines[-1] and "REDIS_URL" in lines[-1]


def test_a_port_in_use_names_the_port_and_never_says_listening(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "kilo_bridge", "serve"],
            env={**os.environ, "KILO_API_KEY": TEST_KEY, "PORT": str(port), "REDIS_URL": REDIS_URL},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert out.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in out.stderr and f"PORT={port + 1}" in out.stderr
    assert "listening" not in out.stdout + out.stderr
