"""`make demo` answers "does it open a pull request?" offline: scripts/demo.sh as a user runs it, its printed
run-agent command run verbatim, the real Kilo CLI (scripted by the fake gateway) writing a file, and a pull
request opened on the loopback fake GitHub; the demo prints the console URL and the cancel, artifacts and
diff commands."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support import REDIS_URL, ROOT, free_port, wait_http

CLI = ROOT / "agent_task" / "node_modules" / ".bin" / "kilo"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, list[str], str]]:
    if not CLI.exists():
        pytest.fail("the pinned Kilo CLI is not installed (make install)")
    port, prefix = free_port(), f"kbdemo{os.getpid()}:"
    env = {
        **os.environ,
        "PORT": str(port),
        "FAKE_PORT": str(free_port()),
        "GITHUB_PORT": str(free_port()),
        "DEMO_DIR": str(tmp_path / "run"),
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": prefix,
        "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "JOB_SECRETS_KEY_FILE": str(tmp_path / "job.key"),
    }
    env.pop("KILO_API_KEY", None)
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the demo and its fakes stop together
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while "listening on" not in (lines[-1] if lines else ""):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            lines.append(line)
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        yield f"http://127.0.0.1:{port}", lines, env["GITHUB_PORT"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)  # to its end, and its output pipe closed
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


def test_the_demo_opens_a_pull_request_offline_and_says_how_to_follow_it(demo: tuple[str, list[str], str]) -> None:
    base, lines, github_port = demo
    text = "".join(lines)
    assert f"demo: the console: {base}/" in text
    for command in (f"-X DELETE {base}/api/kilo/job/JOB_ID", "/artifacts/diff.patch", "/logs", "/pulls"):
        assert command in text, command
    run = next(line.strip() for line in lines if "/api/kilo/run-agent" in line)
    answer = subprocess.run(["bash", "-c", run], capture_output=True, text=True, timeout=60, check=True)
    job_id = json.loads(answer.stdout)["jobId"]
    deadline = time.monotonic() + 180
    while (job := httpx.get(f"{base}/api/kilo/job/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["status"] == "succeeded", job
    pr_url = job["result"]["prUrl"]
    assert re.fullmatch(rf"http://127\.0\.0\.1:{github_port}/demo/widgets/pull/\d+", pr_url)
    assert job["outcome"] == f"pull request opened: {pr_url}"
    pulls = httpx.get(f"http://127.0.0.1:{github_port}/api/v3/repos/demo/widgets/pulls").json()
    assert [p["html_url"] for p in pulls] == [pr_url] and pulls[0]["head"] == f"kilo/{job_id}"
    diff = next(line.strip() for line in lines if "/artifacts/diff.patch" in line).split("#")[0]
    shown = subprocess.run(["bash", "-c", diff.replace("JOB_ID", job_id)], capture_output=True, text=True, check=True)
    assert "HELLO.md" in shown.stdout
