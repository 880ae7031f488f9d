"""Every link the API returns on API Gateway keeps the stage (`/prod`), on both functions, run the way
`make invoke` runs them (scripts/invoke.py) on the events in events/: statusUrl and Location of run-agent,
logUrl and artifact links of a job, the job list and a cancelled job. Each link is then followed, as an
event built from the link, through the function that serves it. PUBLIC_BASE_URL (a custom domain) wins."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from kilo_bridge.config import Settings, settings_env
from scripts.invoke import Context, invoke_stream, load_function
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job

ROOT = Path(__file__).resolve().parents[3]
HOST = "https://abc123.execute-api.us-east-1.amazonaws.com"
BASE = f"{HOST}/prod"  # the stage every sample event was made on


def event(name: str, path: str | None = None, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A sample event from events/, re-aimed at `path` (as API Gateway would send a request for it)."""
    data: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    if path is not None:
        data["path"] = path
        data["requestContext"]["path"] = "/" + data["requestContext"]["stage"] + path
        data["queryStringParameters"] = data["multiValueQueryStringParameters"] = None
    if body is not None:
        data["body"] = json.dumps(body)
    return data


def follow(link: str, name: str) -> dict[str, Any]:
    """The event a client's request for `link` becomes: the link must be on the stage."""
    assert link.startswith(BASE + "/"), link
    return event(name, link[len(BASE) :])


def use(settings: Settings, monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    for name, value in {**settings_env(settings), **extra}.items():
        monkeypatch.setenv(name, value)


def call(api: ModuleType, data: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = api.handler(data, Context(function_name="ApiFunction", aws_request_id="links-1"))
    headers = {k.lower(): v for k, v in response["headers"].items()}
    body = json.loads(response["body"]) if headers.get("content-type", "").startswith("application/json") else None
    return response["statusCode"], headers, body if body is not None else response["body"]


def links_of(job: dict[str, Any]) -> list[str]:
    return [job["logUrl"], *(a["url"] for a in job["artifacts"].values())]


def test_every_link_keeps_the_stage_and_works(
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    serve: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    http_client: Callable[..., httpx.Client],
) -> None:
    settings = job_settings(jobs_concurrency=0)
    use(settings, monkeypatch)
    api = load_function("api")
    repo = fake_github.repo_url("acme", "widgets")

    body = run_body(repo, dryRun=True, profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN})
    status, headers, accepted = call(api, event("api/run-agent.json", body=body))
    assert status == 202, accepted
    job_id = accepted["jobId"]
    assert accepted["statusUrl"] == headers["location"] == f"{BASE}/api/kilo/job/{job_id}"

    # A second job, cancelled while queued: the cancel answer's links too.
    second = event("api/run-agent.json", body=run_body(repo, dryRun=True, prompt="another"))
    for headers_of in (second["headers"], second["multiValueHeaders"]):
        headers_of.pop("Idempotency-Key", None)  # the sample's key belongs to the first body
    status, _, other = call(api, second)
    assert status == 202, other
    status, _, cancelled = call(api, follow(other["statusUrl"], "api/job-cancel.json"))
    assert (status, cancelled["status"]) == (202, "cancelled"), cancelled
    assert cancelled["logUrl"] == f"{BASE}/api/kilo/job/{other['jobId']}/logs"

    # A local worker on the same Redis runs the first job to the end (the ECS task's part, in AWS).
    worker = http_client(base_url=serve(job_settings(jobs_concurrency=1)), timeout=10)
    finished = wait_job(worker, job_id)
    assert finished["status"] == "succeeded", (finished["reason"], finished["error"])

    status, _, job = call(api, follow(accepted["statusUrl"], "api/job-get.json"))
    assert status == 200, job
    assert set(job["artifacts"]) == {"log.jsonl", "diff.patch", "result.json"}
    for link in links_of(job):
        assert link.startswith(f"{BASE}/api/kilo/job/{job_id}/"), link
    status, _, listed = call(api, event("api/jobs.json", "/api/kilo/jobs"))
    assert status == 200 and {j["id"]: links_of(j) for j in listed["jobs"]}[job_id] == links_of(job)

    # Followed: the artifact links through the short-route function, the log link through the stream function.
    status, _, diff = call(api, follow(job["artifacts"]["diff.patch"]["url"], "api/job-artifact.json"))
    assert status == 200 and "+a change" in diff
    logs = invoke_stream(follow(job["logUrl"], "stream/job-logs.json"))
    assert logs["statusCode"] == 200 and logs["headers"]["content-type"].startswith("text/event-stream")
    assert "event: end" in logs["body"] and '"succeeded"' in logs["body"]

    # The stream function builds the same links from the adapter's x-amzn-request-context header.
    streamed = invoke_stream(follow(accepted["statusUrl"], "api/job-get.json"))
    assert streamed["statusCode"] == 200 and links_of(json.loads(streamed["body"])) == links_of(job)


def test_public_base_url_wins_on_both_functions(
    job_settings: Callable[..., Settings], fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(job_settings(jobs_concurrency=0), monkeypatch, PUBLIC_BASE_URL="https://api.example.com/kilo/")
    api = load_function("api")
    status, headers, accepted = call(
        api, event("api/run-agent.json", body=run_body(fake_github.repo_url("acme", "widgets")))
    )
    assert status == 202
    expected = f"https://api.example.com/kilo/api/kilo/job/{accepted['jobId']}"
    assert accepted["statusUrl"] == headers["location"] == expected
    streamed = invoke_stream(follow(f"{BASE}/api/kilo/job/{accepted['jobId']}", "api/job-get.json"))
    assert json.loads(streamed["body"])["logUrl"] == expected + "/logs"


@pytest.mark.parametrize(
    ("context_path", "path", "prefix"),
    [
        ("/prod/api/kilo/jobs", "/api/kilo/jobs", "/prod"),  # execute-api URL: the stage
        ("/api/kilo/jobs", "/api/kilo/jobs", ""),  # a custom domain mapped at its root: nothing to add
        ("/prod/api/kilo/j%C3%B6bs", "/api/kilo/jöbs", "/prod"),  # paths that do not line up: the stage
        ("/a?b/api/kilo/jobs", "/api/kilo/jobs", ""),  # never anything but plain segments in a link
    ],
)
def test_prefix_from_the_request_context(context_path: str, path: str, prefix: str) -> None:
    from kilo_bridge.web.routing import _gateway_prefix

    assert _gateway_prefix({"path": context_path, "stage": "prod"}, path) == prefix


def test_a_client_sent_request_context_is_ignored_off_the_adapter(
    job_settings: Callable[..., Settings], fake_github: FakeGitHub, serve: Callable[..., str]
) -> None:
    url = serve(job_settings(jobs_concurrency=0))
    spoof = json.dumps({"stage": "evil", "path": "/evil/api/kilo/run-agent"})
    response = httpx.post(
        f"{url}/api/kilo/run-agent",
        json=run_body(fake_github.repo_url("acme", "widgets")),
        headers={"x-amzn-request-context": spoof},
    )
    assert response.status_code == 202
    assert response.json()["statusUrl"] == f"{url}/api/kilo/job/{response.json()['jobId']}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),  # the template's default: no custom domain
        ("https://api.example.com/", "https://api.example.com"),
        ("https://api.example.com/kilo", "https://api.example.com/kilo"),
    ],
)
def test_public_base_url_setting(value: str, expected: str | None) -> None:
    from kilo_bridge.config import load_settings

    assert load_settings(public_base_url=value).public_base_url == expected


@pytest.mark.parametrize("value", ["ftp://api.example.com", "https://api.example.com/?a=b", "https://u:p@example.com"])
def test_public_base_url_refuses_what_a_link_must_not_carry(value: str) -> None:
    from kilo_bridge.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        load_settings(public_base_url=value)
