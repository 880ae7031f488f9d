"""Coding agents as clients of `/v1`, unchanged: Claude Code (`claude -p`, the Messages API) and the Codex CLI
(`codex exec`, the Responses API), pinned in tests/clients/node, each answering in text and making one tool round
trip through Kilo Bridge against the fake gateway playing the model.

Each runs in a network namespace of its own (bubblewrap) where only loopback exists, so nothing it does can leave
the machine whatever its settings; the bridge's port is brought in over a unix socket (socat on both sides), at
the same address. Telemetry, error reports, update checks and other non-essential traffic are switched off too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from kilo_bridge.config import Settings
from tests.conftest import serve_app
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import number

BIN = Path(__file__).resolve().parents[2] / "clients" / "node" / "node_modules" / ".bin"
CLAUDE, CODEX = BIN / "claude", BIN / "codex"
pytestmark = [
    pytest.mark.skipif(
        not (CLAUDE.exists() and CODEX.exists()),
        reason="coding agents not installed (make install: tests/clients/node)",
    ),
    pytest.mark.skipif(not (shutil.which("bwrap") and shutil.which("socat")), reason="needs bubblewrap and socat"),
]
MODEL = "fake/model-a"
RUN_TIMEOUT_S = 60  # a bound for a hung client; a run takes a few seconds

# Claude Code: no telemetry, error reports, update checks, release notes or other calls home; every model role on
# the fake's model (its "haiku" calls included).
CLAUDE_ENV = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_NON_ESSENTIAL_MODEL_CALLS": "1",
    "ANTHROPIC_MODEL": MODEL,
    "ANTHROPIC_SMALL_FAST_MODEL": MODEL,
    "ANTHROPIC_DEFAULT_HAIKU_MODEL": MODEL,
}
# Codex: its own CODEX_HOME holds this config (a provider for the bridge on the Responses API; no analytics,
# feedback, OpenTelemetry export or update check).
CODEX_CONFIG = """\
model = "{model}"
model_provider = "bridge"
check_for_update_on_startup = false

[model_providers.bridge]
name = "Kilo Bridge"
base_url = "{base}/v1"
env_key = "KILO_BRIDGE_KEY"
wire_api = "responses"
request_max_retries = {request_retries}
stream_max_retries = {stream_retries}

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
"""


@contextmanager
def unix_door(base_url: str, sock: Path) -> Iterator[None]:
    """The bridge's TCP port, reachable through the unix socket `sock` (socat, stopped afterwards)."""
    port = base_url.rsplit(":", 1)[1]
    proc = subprocess.Popen(["socat", f"UNIX-LISTEN:{sock},fork", f"TCP:127.0.0.1:{port}"])
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():  # socat creates the socket file once it listens
            assert proc.poll() is None and time.monotonic() < deadline, "socat did not listen"
            time.sleep(0.01)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def run_loopback_only(
    argv: list[str], base_url: str, env: dict[str, str], cwd: Path, tmp: Path
) -> subprocess.CompletedProcess[str]:
    """`argv` in a network namespace holding only loopback, where `base_url` reaches the bridge as outside."""
    port = base_url.rsplit(":", 1)[1]
    sock = tmp / "bridge.sock"
    inner = (
        f"socat TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:{sock} </dev/null >/dev/null 2>&1 & "
        # the client starts once the inner end listens (an event, not a pause)
        f"until (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do sleep 0.02; done; "
        '"$@"; status=$?; kill %1; exit $status'
    )
    cmd = ["bwrap", "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent", "--", "bash", "-c", inner, "-"]
    with unix_door(base_url, sock):
        return subprocess.run(
            [*cmd, *argv],
            cwd=cwd,
            env={"PATH": os.environ["PATH"], **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("the secret word is pineapple\n")
    return work


def claude(base_url: str, tmp: Path, work: Path, prompt: str, key: str = "sk-test-claude") -> dict[str, Any]:
    home = tmp / "claude-home"
    home.mkdir(exist_ok=True)
    env = {
        **CLAUDE_ENV,
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": key,
    }
    argv = [str(CLAUDE), "-p", prompt, "--output-format", "json", "--allowedTools", "Read", "--max-turns", "4"]
    proc = run_loopback_only(argv, base_url, env, work, tmp)
    assert proc.stdout.strip(), proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def codex(
    base_url: str, tmp: Path, work: Path, prompt: str, request_retries: int = 2, stream_retries: int = 2
) -> list[dict[str, Any]]:
    home = tmp / "codex-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        CODEX_CONFIG.format(model=MODEL, base=base_url, request_retries=request_retries, stream_retries=stream_retries)
    )
    # TMPDIR elsewhere than CODEX_HOME's parent: Codex refuses to put its sandbox helper under the temp dir.
    (tmp / "codex-tmp").mkdir(exist_ok=True)
    env = {"HOME": str(home), "CODEX_HOME": str(home), "TMPDIR": str(tmp / "codex-tmp"), "KILO_BRIDGE_KEY": "sk-test"}
    argv = [str(CODEX), "exec", "--skip-git-repo-check", "--json", prompt]
    proc = run_loopback_only(argv, base_url, env, work, tmp)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert events, proc.stderr[-2000:]
    return events


def agent_messages(events: list[dict[str, Any]]) -> list[str]:
    return [e["item"]["text"] for e in events if e.get("type") == "item.completed" and "text" in e.get("item", {})]


# ------------------------------------------------------------------------------------------------ Claude Code


def test_claude_code_answers_and_makes_a_tool_round_trip(
    base_url: str, fake: FakeGatewayThread, tmp_path: Path, workdir: Path, redis_client: redis.Redis, prefix: str
) -> None:
    fake.agent_plan = [{"tool": "Read", "args": {"file_path": str(workdir / "notes.txt")}}]
    fake.agent_text = "The note says pineapple."
    result = claude(base_url, tmp_path, workdir, "What does notes.txt say?")
    assert (result["is_error"], result["result"]) == (False, "The note says pineapple."), result
    calls = fake.calls("/messages")
    results = [p for m in calls[-1]["json"]["messages"] for p in m["content"] if isinstance(p, dict)]
    tool_result = next(p for p in results if p.get("type") == "tool_result")
    assert "pineapple" in json.dumps(tool_result["content"])  # Claude Code ran the tool and sent its output back
    # Claude Code's Messages API headers and `?beta=true` reach the gateway (the body's beta fields need them).
    for call in calls:
        assert call["query"] == "beta=true", call["query"]
        assert call["headers"]["anthropic-version"] == "2023-06-01"
        assert "claude-code-" in call["headers"]["anthropic-beta"]
    assert number(redis_client.hget(prefix + "stats", "ok")) == len(calls)  # every call admitted and accounted


def test_claude_code_stops_at_once_on_a_revoked_key(
    make_settings: Callable[..., Settings], fake: FakeGatewayThread, tmp_path: Path, workdir: Path
) -> None:
    from kilo_bridge.web.app import create_app

    app = create_app(make_settings(auth_required=True))
    seen: list[str] = []

    async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(f"{scope['method']} {scope['path']}")
        await app(scope, receive, send)

    with serve_app(counted) as url:
        result = claude(url, tmp_path, workdir, "hello", key="kb_revoked-or-never-issued-key")
    # Our 401 says `x-should-retry: false` (as Anthropic's API does): one attempt, then Claude Code says why.
    # Without it Claude Code kept retrying the 401 for minutes.
    assert result["is_error"] and result["api_error_status"] == 401, result
    assert "Invalid API key" in result["result"]
    assert seen.count("POST /v1/messages") == 1, seen
    assert not fake.calls("/messages")  # never reached the gateway


# ---------------------------------------------------------------------------------------------------- Codex


def test_codex_answers_and_makes_a_tool_round_trip(
    base_url: str, fake: FakeGatewayThread, tmp_path: Path, workdir: Path
) -> None:
    fake.agent_plan = [{"tool": "exec_command", "args": {"cmd": "cat notes.txt"}}]
    fake.agent_text = "The note says pineapple."
    events = codex(base_url, tmp_path, workdir, "What does notes.txt say?")
    assert agent_messages(events)[-1] == "The note says pineapple.", events
    assert events[-1]["type"] == "turn.completed"
    calls = fake.calls("/responses")
    outputs = [i for i in calls[-1]["json"]["input"] if i.get("type") == "function_call_output"]
    assert "the secret word is pineapple" in outputs[0]["output"]  # ran in Codex's own sandbox, output sent back
    assert all(c["json"].get("store") is not True for c in calls)  # Kilo refuses stored responses


def test_codex_retries_a_gateway_429_that_came_without_retry_after(
    base_url: str, fake: FakeGatewayThread, tmp_path: Path, workdir: Path
) -> None:
    # Kilo's 429 carries no Retry-After; Codex gives up at once on such a 429 ("exceeded retry limit").
    fake.script([{"kind": "status", "status": 429}])
    fake.agent_text = "Done after a retry."
    events = codex(base_url, tmp_path, workdir, "hello")
    assert agent_messages(events)[-1] == "Done after a retry.", events
    assert len(fake.calls("/responses")) == 2


def test_codex_reads_a_stream_that_fails_midway_as_a_failed_response(
    base_url: str, fake: FakeGatewayThread, tmp_path: Path, workdir: Path
) -> None:
    fake.script([{"kind": "error_event", "after": 1}])  # Kilo's mid-stream `data: {"error": …}`
    events = codex(base_url, tmp_path, workdir, "hello", stream_retries=0)
    failed = [e for e in events if e.get("type") == "turn.failed"]
    # `response.failed` carries the gateway's reason; an untyped error line read as "stream closed before
    # response.completed" (a cut connection), which Codex replays.
    assert failed and "upstream exploded" in failed[0]["error"]["message"], events
    assert "stream closed before response.completed" not in json.dumps(events)
    assert len(fake.calls("/responses")) == 1
