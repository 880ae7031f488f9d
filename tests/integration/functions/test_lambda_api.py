"""functions/api (Mangum + Powertools) invoked on every API Gateway event in events/api, against the
fake gateway and the real Redis — what `sam local invoke ApiFunction -e events/api/<file>` would run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from scripts.invoke import Context, load_function
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import REDIS_URL, ROOT, TEST_KEY

EVENTS = sorted((ROOT / "events" / "api").glob("*.json"))
EXPECTED = {
    "generate.json": 200,
    "generate-invalid.json": 422,
    "credits.json": 200,
    "stats.json": 200,
    "me.json": 401,  # an open server called without a key: no key to show
    "metrics.json": 404,  # Prometheus is the local server's: off on Lambda (CloudWatch has the figures)
    "stats-badge.json": 200,
    "models.json": 200,
    "healthz.json": 200,
    "messages-count-tokens.json": 200,
    "model-get.json": 200,
    "console.json": 200,
    "console-asset.json": 200,
    "openapi.json": 200,
    "docs.json": 200,
    "admin-keys-list.json": 404,  # no ADMIN_API_KEY here: the admin API is off
    "admin-audit.json": 404,
    "admin-teams.json": 404,
    "admin-login.json": 404,
    "run-agent.json": 202,
    "run-agent-invalid.json": 422,
    "agents.json": 200,
    "jobs.json": 200,
    "profiles.json": 200,
    "github-webhook.json": 404,  # no GitHub App configured here, so the route is off
    "triggers.json": 200,
    "schedules.json": 200,
    "trigger-call.json": 404,  # no such trigger here (signed with "kbt_example-not-real")
    "job-get.json": 404,
    "job-cancel.json": 404,
    "job-artifact.json": 404,  # the event's job id does not exist here
}


@pytest.fixture
def api_module(monkeypatch: pytest.MonkeyPatch, fake: FakeGatewayThread, prefix: str) -> Iterator[ModuleType]:
    env = {
        "KILO_API_KEY": TEST_KEY,
        "KILO_GATEWAY_BASE": f"{fake.url}/api/gateway",
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": prefix,
        "AUTH_REQUIRED": "false",
        "POWERTOOLS_METRICS_NAMESPACE": "KiloBridgeTests",
        "PROMETHEUS_METRICS": "false",  # as template.yaml's Globals
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield load_function("api")  # built from this environment, as at a Lambda cold start


def test_every_route_has_an_event() -> None:
    from kilo_bridge.web.routes import api

    covered = {json.loads(p.read_text())["path"] for d in ("api", "stream") for p in ROOT.glob(f"events/{d}/*.json")}
    fixed_paths = {e.path for e in api.endpoints if "{" not in e.path}
    assert fixed_paths <= covered


@pytest.mark.parametrize("event_file", EVENTS, ids=[p.name for p in EVENTS])
def test_handler_on_event(api_module: ModuleType, event_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = json.loads(event_file.read_text())
    response = api_module.handler(event, Context(function_name="ApiFunction", aws_request_id="lambda-request-1"))
    assert response["statusCode"] == EXPECTED[event_file.name], response["body"]
    headers = {k.lower(): v for k, v in response["headers"].items()}
    # the API Gateway request id is the correlation id, end to end
    assert headers["x-request-id"] == event["requestContext"]["requestId"]
    if headers["content-type"].startswith("application/json"):
        body = json.loads(response["body"])
        if response["statusCode"] >= 400:
            assert body["error"]["requestId"] == event["requestContext"]["requestId"]
    assert TEST_KEY not in response["body"]
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metrics = [entry for entry in logs if "_aws" in entry]
    assert metrics, "no EMF metrics were emitted"
    assert metrics[-1]["Requests"] in (1, [1])


def test_the_console_loads_its_files_and_calls_the_api_under_the_stage(api_module: ModuleType) -> None:
    # Its links are relative to a <base> at the API's public root: on API Gateway that root carries the stage.
    event = json.loads((ROOT / "events/api/console.json").read_text())
    response = api_module.handler(event, Context(function_name="ApiFunction", aws_request_id="lambda-request-2"))
    assert response["statusCode"] == 200
    assert '<base href="https://abc123.execute-api.us-east-1.amazonaws.com/prod/">' in response["body"]
    assert 'src="console/console.js"' in response["body"] and 'src="/console' not in response["body"]
