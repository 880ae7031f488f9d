"""`make invoke FN=stream EVENT=events/stream/…` runs the stream app as the Lambda Web Adapter would and prints
the SSE as it arrives (the command the Makefile runs, in a fresh process)."""

from __future__ import annotations

import json
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


def stream_function_env() -> dict[str, str]:
    """The StreamFunction's own variables in template.yaml that the app reads (its upstream deadline and its
    streams' end), as Lambda gives them to it."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    tpl = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # noqa: S506  (a SafeLoader subclass)
    variables = tpl["Resources"]["StreamFunction"]["Properties"]["Environment"]["Variables"]
    return {k: str(variables[k]) for k in ("KILO_TIMEOUT_MS", "KILO_STREAM_MAX_S")}


def test_a_streamed_chat_completion_arrives_chunk_by_chunk(fake: FakeGatewayThread, prefix: str) -> None:
    """`make invoke FN=stream EVENT=events/stream/chat-completions-stream.json`: the first content chunk reaches the
    client while the upstream is still in the middle of its answer (it stalls after two pieces), not at its end."""
    fake.script([{"kind": "stall", "after": 2, "silence_ms": 20_000, "text": "one two three four five"}])
    env = {
        **os.environ,
        **stream_function_env(),
        "KILO_API_KEY": KEY,
        "KILO_GATEWAY_BASE": f"{fake.url}/api/gateway",
        "REDIS_PREFIX": prefix,
        "JOBS_CONCURRENCY": "0",
        "REDIS_URL": os.getenv("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
    with subprocess.Popen(
        [sys.executable, "scripts/invoke.py", "stream", "events/stream/chat-completions-stream.json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:  # its pipes closed at the end
        try:
            assert proc.stdout is not None
            seen_before_the_end = None
            for line in proc.stdout:
                if line.startswith("data: {") and '"content": "one' in line:
                    seen_before_the_end = fake.streams_finished == 0
                    break
            assert seen_before_the_end is True, "the first chunk arrived only after the upstream had finished"
            rest = proc.stdout.read()
            assert proc.wait(120) == 0, proc.stderr.read() if proc.stderr else ""
            assert "data: [DONE]" in rest and fake.streams_finished == 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_plain_answer_may_take_a_minute(fake: FakeGatewayThread, prefix: str, tmp_path: Path) -> None:
    """A plain (non-streamed) /v1 call through the stream function, upstream answering after 60 s: past the buffered
    path's 29 s and the library's 30 s default, within the function's own upstream deadline."""
    fake.script([{"kind": "slow", "latency_ms": 60_000, "text": "worth the wait"}])
    env = {
        **os.environ,
        **stream_function_env(),
        "KILO_API_KEY": KEY,
        "KILO_GATEWAY_BASE": f"{fake.url}/api/gateway",
        "REDIS_PREFIX": prefix,
        "JOBS_CONCURRENCY": "0",
        "REDIS_URL": os.getenv("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
    done = subprocess.run(
        [sys.executable, "scripts/invoke.py", "stream", "events/stream/chat-completions.json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition("\n\n")
    assert head.startswith("HTTP 200"), done.stdout[:500]
    assert json.loads(body)["choices"][0]["message"]["content"] == "worth the wait"
