"""The local server as a user starts it (`python -m kilo_bridge serve`, what `make run` runs), driven
with the README's curl commands, in front of the fake gateway in its own process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import REDIS_URL, ROOT, TEST_KEY, free_port, wait_http

README = (ROOT / "README.md").read_text()


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return line
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}")
    raise AssertionError(f"no line with {needle!r}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    fake = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/fakes/fake_gateway.py"), "--port", "0", "--always-usage"],
        stdout=subprocess.PIPE,
        text=True,
    )
    found = re.search(r"http://\S+", _wait_for_line(fake, "listening"))
    assert found is not None
    fake_url = found.group(0)
    port = free_port()
    prefix = f"kbe2e{os.getpid()}:"
    tmp = tmp_path_factory.mktemp("server")
    env = {
        **os.environ,
        "KILO_API_KEY": TEST_KEY,
        "KILO_GATEWAY_BASE": f"{fake_url}/api/gateway",
        "PORT": str(port),
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": prefix,
        "ARTIFACTS_DIR": str(tmp / "artifacts"),
        "JOB_SECRETS_KEY_FILE": str(tmp / "job.key"),
        "JOB_WORKDIR": str(tmp),
        # The README's job names a github.com repository: queued here, never run (loopback traffic only).
        "JOBS_CONCURRENCY": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "kilo_bridge", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    banner = _wait_for_line(proc, "listening")
    assert f"127.0.0.1:{port}" in banner and TEST_KEY not in banner
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    yield f"http://127.0.0.1:{port}", port
    proc.terminate()
    fake.terminate()
    proc.communicate(timeout=10)  # to their ends, and their output pipes closed
    fake.communicate(timeout=10)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


def _readme_curls() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    commands = []
    for block in blocks:
        joined = block.replace("\\\n", " ")
        commands += [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip().startswith("curl")]
    return commands


def test_readme_curl_examples_work_verbatim(server: tuple[str, int]) -> None:
    _url, port = server
    commands = _readme_curls()
    assert len(commands) >= 4
    for command in commands:
        command = command.replace("localhost:5000", f"localhost:{port}")
        out = subprocess.run(
            ["bash", "-c", command + " -sS --fail-with-body"], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, (command, out.stdout, out.stderr)
        if "generate-stream" in command:
            assert "event: delta" in out.stdout and "event: done" in out.stdout
        else:
            json.loads(out.stdout)


def test_docs_and_openapi_are_served(server: tuple[str, int]) -> None:
    url, _ = server
    doc = httpx.get(url + "/api/kilo/openapi.json").json()
    assert "/api/kilo/generate" in doc["paths"]
    assert "swagger-ui" in httpx.get(url + "/api/kilo/docs").text


def test_bad_setting_stops_the_server_with_the_variable_named() -> None:
    env = {**os.environ, "KILO_TIMEOUT_MS": "soon", "KILO_API_KEY": "test-key-not-real-secret"}
    out = subprocess.run(
        [sys.executable, "-m", "kilo_bridge", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(ROOT),
    )
    assert out.returncode == 2
    assert "KILO_TIMEOUT_MS" in out.stderr
    assert "test-key-not-real-secret" not in out.stderr + out.stdout
