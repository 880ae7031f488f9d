"""openai-node and the Vercel AI SDK (`@ai-sdk/openai`: the default `openai(model)` is the Responses API,
`.chat()` chat completions) against `/v1`, plain, streamed and erring (tests/clients/node, pinned). The coding
agents of the same package (Claude Code, Codex) are driven by test_coding_agents.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.fake_gateway import FakeGatewayThread

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir(),
    reason="node clients not installed (make install runs npm ci in tests/clients/node)",
)


def run(base_url: str, case: str) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", str(NODE_DIR / "run.mjs"), base_url, case], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.stdout, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "case",
    [
        "openai-chat",
        "openai-chat-stream",
        "ai-chat",
        "ai-chat-stream",
        "ai-default",
        "ai-default-stream",
        "openai-responses-stream",
    ],
)
def test_text_comes_through(base_url: str, fake: FakeGatewayThread, case: str) -> None:
    result = run(base_url, case)
    assert result.get("text") == "Echo: hello node", result
    if case == "ai-default":
        assert fake.calls("/responses") and (result["input"], result["output"]) == (2, 5)
    if case == "openai-responses-stream":
        assert result["last"] == "response.completed"


def test_model_retrieve(base_url: str) -> None:
    assert run(base_url, "openai-retrieve") == {"id": "anthropic/claude-sonnet-4.5", "owned_by": "anthropic"}


def test_errors_keep_status_code_type_and_param(base_url: str, fake: FakeGatewayThread) -> None:
    fake.script(
        [
            {
                "kind": "status",
                "status": 400,
                "body": {
                    "error": {
                        "message": "too long",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                },
            }
        ]
    )
    assert run(base_url, "openai-error") == {
        "status": 400,
        "code": "context_length_exceeded",
        "type": "invalid_request_error",
        "param": "messages",
    }


def test_a_responses_stream_that_fails_midway_is_the_responses_failure(base_url: str, fake: FakeGatewayThread) -> None:
    # Kilo's mid-stream `data: {"error": …}` arrives as `response.failed`: openai-node ends the stream on a typed
    # event (it threw on the plain line), the AI SDK reports the gateway's message (it failed to validate the line).
    fake.script([{"kind": "error_event", "after": 2}])
    failed = run(base_url, "openai-responses-stream-fails")
    assert failed["last"] == "response.failed" and failed["status"] == "failed", failed
    assert failed["code"] == "server_error" and "upstream exploded" in failed["message"]
    fake.script([{"kind": "error_event", "after": 2}])
    reported = run(base_url, "ai-default-stream-fails")
    assert reported["errors"] == ["upstream exploded"], reported  # not "Type validation failed: …"
