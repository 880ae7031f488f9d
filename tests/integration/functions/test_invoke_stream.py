"""`make invoke FN=stream EVENT=events/stream/…` runs the stream app as the Lambda Web Adapter would and prints
the SSE as it arrives (the command the Makefile runs, in a fresh process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.fake_gateway import FakeGatewayThread

ROOT = Path(__file__).resolve().parents[3]
KEY = "invoke-stream-key-not-real"


def run_invoke(
    event: str, fake: FakeGatewayThread, prefix: str, fn: str = "stream"
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KILO_API_KEY": KEY,
        "KILO_GATEWAY_BASE": f"{fake.url}/api/gateway",
        "REDIS_PREFIX": prefix,
        "JOBS_CONCURRENCY": "0",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "REDIS_URL": os.getenv("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
    return subprocess.run(
        [sys.executable, "scripts/invoke.py", fn, event],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_invoke_stream_prints_the_sse(fake: FakeGatewayThread, prefix: str) -> None:
    done = run_invoke("events/stream/generate-stream.json", fake, prefix)
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition("\n\n")
    assert head.startswith("HTTP 200") and "content-type: text/event-stream" in head
    assert "event: delta" in body and "event: done" in body
    assert KEY not in done.stdout


@pytest.mark.parametrize("fn", ["stream", "StreamFunction"])
def test_invoke_stream_answers_errors_as_json(fn: str, fake: FakeGatewayThread, prefix: str) -> None:
    done = run_invoke("events/stream/job-logs.json", fake, prefix, fn)  # the sample job does not exist here
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP 404") and '"not_found"' in done.stdout
