"""The real pinned Kilo CLI as a client of `/v1`: its OpenAI-compatible provider pointed at Kilo Bridge, which
relays to the fake gateway playing the model (a scripted `write` tool call, then text)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import redis

from kilo_bridge.config import load_settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import number

pytestmark = pytest.mark.slow
CLI = load_settings().kilo_cli_path


@pytest.mark.skipif(not Path(CLI).exists(), reason="the pinned Kilo CLI is not installed (make install)")
def test_kilo_cli_through_v1_writes_a_file_and_is_accounted(
    base_url: str, fake: FakeGatewayThread, tmp_path: Path, redis_client: redis.Redis, prefix: str
) -> None:
    fake.agent_plan = [{"tool": "write", "args": {"filePath": "HELLO.md", "content": "hello via bridge\n"}}]
    fake.agent_text = "Wrote HELLO.md."
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    config = {
        "provider": {
            "bridge": {
                "npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": base_url + "/v1", "apiKey": "unused-locally"},
                "models": {"model-a": {}},
            }
        },
        "model": "bridge/model-a",
    }
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "KILO_CONFIG_CONTENT": json.dumps(config),
        "KILO_DISABLE_MODELS_FETCH": "1",
        "KILO_DISABLE_SHARE": "1",
        "KILO_DISABLE_SESSION_INGEST": "1",
        "KILO_NO_DAEMON": "1",
        "KILO_DISABLE_PROJECT_CONFIG": "1",
        "KILO_SESSION_RETRY_LIMIT": "0",
    }
    proc = subprocess.run(
        [CLI, "run", "--auto", "--format", "json", "--dir", str(work), "Add HELLO.md"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (work / "HELLO.md").read_text() == "hello via bridge\n"
    relayed = fake.chats
    assert relayed and all(c["headers"]["user-agent"].startswith("kilo-bridge/") for c in relayed)
    assert any(c["json"].get("tools") for c in relayed)  # streamed, with its 16 tools, through /v1
    assert number(redis_client.hget(prefix + "stats", "ok")) == len(relayed)  # every call accounted
