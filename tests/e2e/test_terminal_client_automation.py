"""`kilo-bridge triggers …` and `kilo-bridge schedules …` as a user runs them (a subprocess) against a real
server: a trigger made on the command line takes a signed call and shows it among its deliveries (its secret
printed once, on stdout only); a schedule made on the command line fires on the server's local queue; and the
API Gateway key travels as x-api-key when it is set."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from kilo_bridge.config import Settings
from kilo_bridge.triggers.service import signature
from tests.e2e.test_terminal_client import REFUSED, kb
from tests.fakes.fake_github import FakeGitHub


def test_a_trigger_made_on_the_command_line_takes_a_signed_call_and_shows_its_delivery(
    serve: Callable[..., str], job_settings: Callable[..., Settings], fake_github: FakeGitHub
) -> None:
    server = serve(job_settings())
    repo = fake_github.repo_url("acme", "widgets")
    made = kb(
        server,
        "triggers",
        "create",
        "alerts",
        "--agent",
        "review",
        "--repo",
        repo,
        "--prompt-template",
        "Look at {{ body.alert.title }}",
        "--max-cost-usd",
        "0.5",
    )
    assert made.returncode == 0, made.stderr
    first, second = made.stdout.splitlines()
    trigger_id, name, agent, shown_repo, url = first.split("  ")
    assert trigger_id.startswith("trg_") and (name, agent, shown_repo) == ("alerts", "review", repo)
    assert url == f"{server}/api/kilo/triggers/{trigger_id}"
    secret = second.removeprefix("secret: ")
    assert second.startswith("secret: ") and len(secret) >= 32
    assert secret not in made.stderr and "shown this once" in made.stderr

    body = b'{"alert": {"title": "Disk full on db-1"}}'
    stamp = str(int(time.time()))
    call = httpx.post(
        url,
        content=body,
        headers={"X-Kilo-Timestamp": stamp, "X-Kilo-Signature": signature(secret, stamp, body)},
    )
    assert call.status_code == 202, call.text
    job_id = call.json()["jobId"]

    delivered = kb(server, "triggers", "deliveries", trigger_id, "--json")
    assert delivered.returncode == 0, delivered.stderr
    (delivery,) = json.loads(delivered.stdout)
    assert delivery["outcome"] == "started" and delivery["jobId"] == job_id
    assert job_id in kb(server, "triggers", "deliveries", trigger_id).stdout

    # Never again: not in the list, not in show, not in JSON.
    listed = kb(server, "triggers", "list")
    assert listed.stdout.startswith(trigger_id + "  alerts") and secret not in listed.stdout
    shown = kb(server, "triggers", "show", trigger_id, "--json")
    view = json.loads(shown.stdout)
    assert view["id"] == trigger_id and view["maxCostUsd"] == 0.5 and "secret" not in view
    assert "Look at {{ body.alert.title }}" in kb(server, "triggers", "show", trigger_id).stdout
    assert [t["id"] for t in json.loads(kb(server, "triggers", "list", "--json").stdout)] == [trigger_id]
    assert secret not in shown.stdout + listed.stdout + delivered.stdout

    as_json = kb(server, "triggers", "create", "ci", "--agent", "review", "--repo", repo, "--json")
    created = json.loads(as_json.stdout)
    assert as_json.returncode == 0 and created["secret"] and created["secret"] not in as_json.stderr

    rotated = kb(server, "triggers", "rotate", trigger_id)
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.splitlines()[1].removeprefix("secret: ")
    assert new_secret != secret and len(new_secret) >= 32 and new_secret not in rotated.stderr
    stamp = str(int(time.time()))
    stale = httpx.post(
        url, content=body, headers={"X-Kilo-Timestamp": stamp, "X-Kilo-Signature": signature(secret, stamp, body)}
    )
    assert stale.status_code == 401  # the old secret verifies nothing now

    assert kb(server, "triggers", "delete", trigger_id).stdout == f"{trigger_id} deleted\n"
    gone = kb(server, "triggers", "show", trigger_id)
    assert gone.returncode == REFUSED and "HTTP 404" in gone.stderr
    bad = kb(server, "triggers", "create", "x", "--agent", "no-such-agent", "--repo", repo)
    assert bad.returncode == REFUSED and "HTTP 422" in bad.stderr


def test_a_schedule_made_on_the_command_line_fires_on_the_local_queue_and_pauses_resumes_and_goes(
    serve: Callable[..., str], job_settings: Callable[..., Settings], fake_github: FakeGitHub
) -> None:
    # SCHEDULE_TEST_EVERY_MS stands in for the cron: the server's local worker fires it every 300 ms.
    server = serve(job_settings(schedule_test_every_ms=300))
    repo = fake_github.repo_url("acme", "widgets")
    made = kb(
        server,
        "schedules",
        "create",
        "nightly dependency update",
        "--cron",
        "0 3 * * *",
        "--timezone",
        "Europe/Berlin",
        "--repo",
        repo,
        "--agent",
        "dependency-update",
        "--dry-run",
        "--timeout-s",
        "600",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    schedule = json.loads(made.stdout)
    sid = schedule["id"]
    assert schedule["state"] == "enabled" and schedule["nextRunAt"] and schedule["timezone"] == "Europe/Berlin"
    run = {k: v for k, v in schedule["run"].items() if v is not None}
    assert run == {"repoUrl": repo, "agent": "dependency-update", "dryRun": True, "timeoutMs": 600_000}

    deadline = time.monotonic() + 60
    while not (jobs := json.loads(kb(server, "jobs", "list", "--json").stdout)):
        assert time.monotonic() < deadline, "the schedule never fired"
        time.sleep(0.3)
    assert jobs[0]["agent"] == "dependency-update" and jobs[0]["repoUrl"] == repo

    line = kb(server, "schedules", "list").stdout
    assert line.startswith(f"{sid}  enabled 0 3 * * * (Europe/Berlin)  next ") and "nightly dependency update" in line
    paused = kb(server, "schedules", "pause", sid, "--json")
    assert json.loads(paused.stdout)["state"] == "paused" and json.loads(paused.stdout)["nextRunAt"] is None
    assert kb(server, "schedules", "show", sid).stdout.startswith(f"{sid}  paused  0 3 * * * (Europe/Berlin)  -  ")
    assert json.loads(kb(server, "schedules", "resume", sid, "--json").stdout)["state"] == "enabled"
    assert [s["id"] for s in json.loads(kb(server, "schedules", "list", "--json").stdout)] == [sid]
    assert kb(server, "schedules", "delete", sid).stdout == f"{sid} deleted\n"
    gone = kb(server, "schedules", "show", sid)
    assert gone.returncode == REFUSED and "HTTP 404" in gone.stderr
    too_often = kb(server, "schedules", "create", "x", "--cron", "*/5 * * * *", "--repo", repo, "--agent", "review")
    assert too_often.returncode == REFUSED and "HTTP 422" in too_often.stderr and "10 minutes" in too_often.stderr


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        payload = b'{"schedules": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_gateway_key_goes_as_x_api_key_and_the_service_key_as_bearer(
    recorder: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = recorder
    done = kb(url, "schedules", "list", KILO_BRIDGE_KEY="kb_fake_service", KILO_BRIDGE_GATEWAY_KEY="fake-gateway-key")
    assert done.returncode == 0, done.stderr
    assert seen[-1]["x-api-key"] == "fake-gateway-key" and seen[-1]["authorization"] == "Bearer kb_fake_service"
    assert kb(url, "schedules", "list", KILO_BRIDGE_GATEWAY_KEY="").returncode == 0
    assert "x-api-key" not in seen[-1]
