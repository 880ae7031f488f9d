"""The agent's one door out, with the real pinned CLI under real bubblewrap, real Redis and a scripted model:
a script the agent writes into its checkout and runs with `bash` tries the bridge's Redis, the bridge's own
port, the upstream gateway, another loopback server and the outside — none answers, and the job still succeeds
with every model call metered through the runner's endpoint. A `build` job (network `allowlist`) reaches an
allow-listed loopback server through the egress proxy and is refused an unlisted one, the refusal in its log
and its result."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job
from tests.support import REDIS_URL

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ALLOWED_BODY = "reached-the-allowed-server-41c7"


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = ALLOWED_BODY.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback_servers() -> Iterator[tuple[int, int]]:
    """Two plain HTTP servers on 127.0.0.1: (the one a build may reach, one no list names)."""
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield servers[0].server_address[1], servers[1].server_address[1]
    for s in servers:
        s.shutdown()
        s.server_close()


PROBE = """
import socket, sys
for name, host, port in [{targets}]:
    try:
        socket.create_connection((host, port), timeout=3).close()
        print(name, "OPEN")
    except OSError as exc:
        print(name, "closed", type(exc).__name__)
"""


def tool_outputs(fake: FakeGatewayThread) -> str:
    return "\n".join(
        str(m.get("content"))
        for c in fake.chats
        for m in c["json"].get("messages", [])
        if isinstance(m, dict) and m.get("role") == "tool"
    )


def test_from_inside_a_job_nothing_of_the_host_answers_and_every_model_call_is_metered(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    loopback_servers: tuple[int, int],
    http_client: Callable[..., httpx.Client],
) -> None:
    settings = job_settings(real_cli=True, agent_sandbox="bwrap")
    base = serve(settings)
    targets = {
        "redis": ("127.0.0.1", urlsplit(REDIS_URL).port or 6379),
        "bridge": ("127.0.0.1", urlsplit(base).port),
        "gateway": ("127.0.0.1", urlsplit(fake.url).port),  # the upstream itself: no unmetered way round
        "loopback": ("127.0.0.1", loopback_servers[1]),
        "outside": ("192.0.2.1", 80),  # TEST-NET-1 (RFC 5737): an outside address no network routes
        "proxy": ("127.0.0.1", 3128),  # a `none` agent has no egress proxy
    }
    listed = ", ".join(f"({n!r}, {h!r}, {p})" for n, (h, p) in targets.items())
    fake.agent_plan = [
        {"tool": "write", "args": {"filePath": "probe.py", "content": PROBE.format(targets=listed)}},
        {"tool": "bash", "args": {"description": "probe", "command": "python3 probe.py"}},
    ]
    fake.agent_text = "Probed."
    fake.script([{"kind": "ok", "cost": 0.0125}] * 30)  # OpenRouter's usage.cost on every answer
    client = http_client(base_url=base, timeout=10)
    job_id = client.post(
        "/api/kilo/run-agent",
        json=run_body(fake_github.repo_url("acme", "widgets"), dryRun=True, profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN}),
    ).json()["jobId"]
    job = wait_job(client, job_id, timeout=240)

    assert job["status"] == "succeeded", (job["reason"], job["error"])
    said = tool_outputs(fake)
    for name in targets:
        assert f"{name} closed" in said, (name, said)
    assert "OPEN" not in said
    calls = [r for r in fake.requests if r["path"].endswith("/chat/completions")]
    assert len(calls) >= 3  # the tool calls, the closing text and the title call the CLI never reports
    assert job["result"]["costUsd"] == pytest.approx(0.0125 * len(calls))
    assert job["result"]["inputTokens"] > 0 and job["result"]["egressDenied"] == 0


def test_a_build_job_reaches_an_allow_listed_server_through_the_proxy_and_is_refused_another(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    loopback_servers: tuple[int, int],
    http_client: Callable[..., httpx.Client],
) -> None:
    allowed, unlisted = loopback_servers
    settings = job_settings(
        real_cli=True,
        agent_sandbox="bwrap",
        agent_egress_allow=f"localhost:{allowed}",
        agent_egress_allow_private=f"127.0.0.1:{allowed}",
    )
    fetch = (
        "import urllib.request, urllib.error\n"
        f"for port in ({allowed}, {unlisted}):\n"
        "    try:\n"
        "        print(port, urllib.request.urlopen(f'http://localhost:{port}/', timeout=10).read().decode())\n"
        "    except urllib.error.HTTPError as exc:\n"
        "        print(port, 'refused', exc.code, exc.read().decode().strip())\n"
    )
    fake.agent_plan = [
        {"tool": "bash", "args": {"description": "fetch", "command": f'python3 -c "{fetch}"'}},
    ]
    fake.agent_text = "PASSED: fetched."
    client = http_client(base_url=serve(settings), timeout=10)
    job_id = client.post(
        "/api/kilo/run-agent",
        json=run_body(
            fake_github.repo_url("acme", "widgets"),
            agent="build",
            prompt=None,
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN},
        ),
    ).json()["jobId"]
    job = wait_job(client, job_id, timeout=240)
    log = client.get(f"/api/kilo/job/{job_id}/logs").text

    assert job["status"] == "succeeded", (job["reason"], job["error"])
    said = tool_outputs(fake)
    assert f"{allowed} {ALLOWED_BODY}" in said, said
    assert f"{unlisted} refused 403" in said and "allow-list" in said, said
    assert job["result"]["egressDenied"] >= 1, job["result"]
    refusal = next((x for x in log.splitlines() if '"egress"' in x and f"localhost:{unlisted}" in x), None)
    assert refusal and "allow-list" in refusal, log
    assert "network: allowlist" in log


def test_setup_installs_from_an_allow_listed_host_through_the_proxy_and_fails_on_another(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    loopback_servers: tuple[int, int],
    http_client: Callable[..., httpx.Client],
) -> None:
    """A profile's setup (say, installing dependencies) runs in the sandbox behind the job's door: the
    allow-listed host answers it through the egress proxy; a host no list names ends the job `setup_failed`."""
    allowed, unlisted = loopback_servers
    settings = job_settings(
        real_cli=True,
        agent_sandbox="bwrap",
        agent_egress_allow=f"localhost:{allowed}",
        agent_egress_allow_private=f"127.0.0.1:{allowed}",
    )
    fake.agent_text = "PASSED: built."
    client = http_client(base_url=serve(settings), timeout=10)

    def setup_job(name: str, port: int) -> dict[str, Any]:
        url = f"http://localhost:{port}/"
        fetch = f"python3 -c \"import urllib.request as u; print(u.urlopen('{url}', timeout=10).read().decode())\""
        saved = client.post(
            "/api/kilo/profiles", json={"name": name, "env": {"GITHUB_TOKEN": GITHUB_TOKEN}, "setup": [fetch]}
        )
        assert saved.status_code == 201, saved.text
        body = run_body(fake_github.repo_url("acme", "widgets"), agent="build", prompt=None, profile=name)
        answer = client.post("/api/kilo/run-agent", json=body)
        assert answer.status_code == 202, answer.text
        return wait_job(client, answer.json()["jobId"], timeout=240)

    installed = setup_job("deps-allowed", allowed)
    assert installed["status"] == "succeeded", (installed["reason"], installed["error"])
    log = client.get(f"/api/kilo/job/{installed['id']}/logs").text
    assert any('"setup"' in line and ALLOWED_BODY in line for line in log.splitlines()), log

    refused = setup_job("deps-unlisted", unlisted)
    assert (refused["status"], refused["reason"]) == ("failed", "setup_failed"), refused
    assert "403" in refused["error"], refused["error"]
    assert ALLOWED_BODY not in refused["error"]
