"""Deploys with the real pinned CLI under real bubblewrap, real Redis and a scripted model: the agent prepares
with none of the profile's values and cannot reach the deploy target; the runner's command then reaches it (a
loopback server named in AGENT_EGRESS_ALLOW_PRIVATE and the deploy's `allow`) carrying the profile's token,
which no model request, log line or artifact holds in any encoding. An approval-gated deploy waits, deploys
only after its own key approves, never after a rejection or its window's end; a failing deploy ends
`deploy_failed` with its output tail."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, wait_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
DEPLOY_TOKEN = "sk-test-deploy-token-5f2e91c0a7"
FORMS = (
    DEPLOY_TOKEN,
    base64.b64encode(DEPLOY_TOKEN.encode()).decode(),
    base64.b64encode(DEPLOY_TOKEN.encode()).decode().rstrip("="),
    json.dumps(DEPLOY_TOKEN)[1:-1],
    DEPLOY_TOKEN.encode().hex(),
)


class Target(http.server.ThreadingHTTPServer):
    """The deploy target: records what reached it."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Deployed)
        self.seen: list[dict[str, Any]] = []


class _Deployed(http.server.BaseHTTPRequestHandler):
    server: Target

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": self.rfile.read(length)}
        )
        self._answer(b"deployed")

    def do_GET(self) -> None:
        self.server.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": b""})
        self._answer(b"reached-the-target")

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


# The agent's own attempt at the target (through its egress proxy: HTTP_PROXY), and at the token.
AGENT_PROBE = (
    "import os, urllib.request, urllib.error\n"
    "print('token in env:', any('sk-test-deploy' in v for v in os.environ.values()))\n"
    "try:\n"
    "    print('target', urllib.request.urlopen('http://localhost:{port}/agent', timeout=10).read().decode())\n"
    "except urllib.error.HTTPError as exc:\n"
    "    print('target refused', exc.code)\n"
    "except OSError as exc:\n"
    "    print('target closed', type(exc).__name__)\n"
)
# The deploy: it sends the token, says it in several encodings (the log must redact them), prints its URL.
SHIP = (
    "import os, base64, urllib.request as u\n"
    "t = os.environ['DEPLOY_TOKEN']\n"
    "r = u.Request('http://localhost:PORT/deploy', data=b'site', headers={'Authorization': 'Bearer ' + t})\n"
    "print(u.urlopen(r, timeout=10).read().decode())\n"
    "print('raw', t)\n"
    "print('b64', base64.b64encode(t.encode()).decode())\n"
)
DEPLOY = "python3 - <<'EOF'\n" + SHIP + "EOF\necho KILO_DEPLOY_URL=https://widgets.example.test/v42"


def agent_plan(fake: FakeGatewayThread, port: int) -> None:
    fake.agent_plan = [
        {"tool": "write", "args": {"filePath": "probe.py", "content": AGENT_PROBE.format(port=port)}},
        {"tool": "bash", "args": {"description": "probe", "command": "python3 probe.py && rm probe.py"}},
    ]
    fake.agent_text = "PASSED: the build and its tests pass."


def deploy_body(fake_github: FakeGitHub, port: int, command: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "repoUrl": fake_github.repo_url("acme", "widgets"),
        "agent": "deploy",
        "profileEnv": {"GITHUB_TOKEN": GITHUB_TOKEN, "DEPLOY_TOKEN": DEPLOY_TOKEN},
        "deploy": {"command": command or DEPLOY.replace("PORT", str(port)), "allow": [f"localhost:{port}"]},
        **extra,
    }


def settings_for(job_settings: Callable[..., Settings], port: int, **more: Any) -> Settings:
    return job_settings(real_cli=True, agent_sandbox="bwrap", agent_egress_allow_private=f"127.0.0.1:{port}", **more)


def tool_outputs(fake: FakeGatewayThread) -> str:
    return "\n".join(
        str(m.get("content"))
        for c in fake.chats
        for m in c["json"].get("messages", [])
        if isinstance(m, dict) and m.get("role") == "tool"
    )


def holds_token(text: str) -> list[str]:
    return [form for form in FORMS if form in text]


def test_the_agent_prepares_without_the_token_and_the_runner_deploys_with_it(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    target: Target,
    http_client: Callable[..., httpx.Client],
) -> None:
    port = target.server_address[1]
    settings = settings_for(job_settings, port)
    agent_plan(fake, port)
    client = http_client(base_url=serve(settings), timeout=10)
    answer = client.post("/api/kilo/run-agent", json=deploy_body(fake_github, port))
    assert answer.status_code == 202, answer.text
    job = wait_job(client, answer.json()["jobId"], timeout=300)
    log = client.get(f"/api/kilo/job/{job['id']}/logs").text

    assert job["status"] == "succeeded", (job["reason"], job["error"])
    # The runner's command reached the target with the token; the agent did not reach it at all.
    assert [(s["path"], s["auth"]) for s in target.seen] == [("/deploy", f"Bearer {DEPLOY_TOKEN}")]
    said = tool_outputs(fake)
    assert "token in env: False" in said and "target refused 403" in said, said
    deployed = job["result"]["deploy"]
    assert deployed["exitCode"] == 0 and deployed["url"] == "https://widgets.example.test/v42", deployed
    assert deployed["durationMs"] > 0 and "deployed" in deployed["outputTail"]
    assert job["outcome"] == "deployed: https://widgets.example.test/v42"
    assert job["result"]["summary"].endswith("Deployed: https://widgets.example.test/v42")
    assert '"source":"deploy"' in log.replace(" ", "") and "[REDACTED]" in log
    # No model request, log line or artifact holds the token in any form.
    assert not holds_token(json.dumps(fake.requests, default=str)), "a model request holds the token"
    assert not holds_token(log) and not holds_token(json.dumps(job))
    artifacts = [p for p in Path(settings.artifacts_dir).rglob("*") if p.is_file()]
    assert artifacts
    for path in artifacts:
        assert not holds_token(path.read_text(errors="replace")), path


def test_a_failing_deploy_ends_deploy_failed_with_its_output_tail(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    target: Target,
    http_client: Callable[..., httpx.Client],
) -> None:
    port = target.server_address[1]
    agent_plan(fake, port)
    client = http_client(base_url=serve(settings_for(job_settings, port)), timeout=10)
    command = "echo uploading 3 files; echo 'error: quota exceeded for project widgets' >&2; exit 7"
    job_id = client.post("/api/kilo/run-agent", json=deploy_body(fake_github, port, command)).json()["jobId"]
    job = wait_job(client, job_id, timeout=300)

    assert (job["status"], job["reason"]) == ("failed", "deploy_failed"), job
    assert "exited with 7" in job["error"] and "quota exceeded" in job["error"]
    assert job["result"]["deploy"]["exitCode"] == 7
    assert job["result"]["deploy"]["outputTail"][-2:] == [
        "uploading 3 files",
        "error: quota exceeded for project widgets",
    ]
    assert target.seen == []


def test_an_approval_gated_deploy_waits_and_deploys_only_after_its_own_key_approves(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    target: Target,
    key_factory: Callable[..., str],
    http_client: Callable[..., httpx.Client],
) -> None:
    port = target.server_address[1]
    agent_plan(fake, port)
    owner, other = {"x-api-key": key_factory("team-a")}, {"x-api-key": key_factory("team-b")}
    settings = settings_for(job_settings, port, auth_required=True, deploy_approval_ttl_s=600, jobs_concurrency=2)
    client = http_client(base_url=serve(settings), timeout=10)
    body = deploy_body(fake_github, port, requireApproval=True)
    approved_id = client.post("/api/kilo/run-agent", json=body, headers=owner).json()["jobId"]
    rejected_id = client.post("/api/kilo/run-agent", json=body, headers=owner).json()["jobId"]

    as_owner = http_client(base_url=client.base_url, headers=owner, timeout=10)
    waiting = wait_job(as_owner, approved_id, ("awaiting_approval",), timeout=300)
    approval = waiting["approval"]
    assert approval["command"] == DEPLOY.replace("PORT", str(port)) and approval["build"].startswith("PASSED")
    assert approval["decision"] is None and approval["expiresAt"]
    assert target.seen == []  # nothing deploys while it waits
    assert client.post(f"/api/kilo/job/{approved_id}/approve", headers=other).status_code == 404
    approved = kb(str(client.base_url), "jobs", "approve", approved_id, KILO_BRIDGE_KEY=owner["x-api-key"])
    assert approved.returncode == 0 and approved.stdout == f"{approved_id} running (approved)\n", approved
    again = client.post(f"/api/kilo/job/{approved_id}/reject", headers=owner)
    assert again.status_code == 409, again.text  # a decision is taken once
    done = wait_job(as_owner, approved_id, timeout=120)
    assert done["status"] == "succeeded", (done["reason"], done["error"])
    assert [s["path"] for s in target.seen] == ["/deploy"]

    wait_job(as_owner, rejected_id, ("awaiting_approval",), timeout=300)
    rejected = kb(str(client.base_url), "jobs", "reject", rejected_id, KILO_BRIDGE_KEY=owner["x-api-key"])
    assert rejected.returncode == 0 and "(rejected)" in rejected.stdout, rejected
    assert client.post(f"/api/kilo/job/{rejected_id}/approve", headers=owner).status_code == 409
    ended = wait_job(as_owner, rejected_id, timeout=120)
    assert (ended["status"], ended["reason"]) == ("cancelled", "deploy_rejected"), ended
    assert [s["path"] for s in target.seen] == ["/deploy"]  # the rejected one never deployed


def test_a_deploy_whose_approval_window_ends_is_cancelled_without_deploying(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    target: Target,
    http_client: Callable[..., httpx.Client],
) -> None:
    port = target.server_address[1]
    agent_plan(fake, port)
    client = http_client(base_url=serve(settings_for(job_settings, port, deploy_approval_ttl_s=1)), timeout=10)
    job_id = client.post("/api/kilo/run-agent", json=deploy_body(fake_github, port, requireApproval=True)).json()[
        "jobId"
    ]
    job = wait_job(client, job_id, timeout=300)

    assert (job["status"], job["reason"]) == ("cancelled", "approval_expired"), job
    assert job["approval"]["decision"] == "expired"
    assert client.post(f"/api/kilo/job/{job_id}/approve").status_code == 409
    assert target.seen == []


def kb(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The terminal client, as a user runs it."""
    argv = [sys.executable, "-m", "kilo_bridge", *args, "--url", url.rstrip("/")]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, **env}, check=False)
