"""The bridge is the meter: a job's agent calls the bridge's own `/v1` on a key of the job's own, so its cost
is what the bridge metered (never what the agent prints), its cap holds at admission, and neither the gateway
key nor the organization id ever reaches the agent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from kilo_bridge.config import Settings
from kilo_bridge.keys.store import JOB_KEY_PREFIX, KeyStore
from kilo_bridge.platform.redis import Store
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, log_events, run_body, wait_job

ORG = "org-fake-0123"
KILO_KEY = "test-key-not-real-0123456789"  # what make_settings configures as KILO_API_KEY


def _start(client: httpx.Client, body: dict[str, object]) -> str:
    response = client.post("/api/kilo/run-agent", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["jobId"])


def test_the_agent_gets_a_job_key_not_the_gateway_key_and_the_bridge_applies_key_and_org(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    fake: FakeGatewayThread,
    tmp_path: Path,
    http_client: Callable[..., httpx.Client],
) -> None:
    dump = tmp_path / "agent-env.json"
    fake.script([{"kind": "ok", "cost": 0.01}] * 2)
    client = http_client(base_url=serve(job_settings(kilo_org_id=ORG)), timeout=10)
    job_id = _start(
        client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            dryRun=True,
            profileEnv={
                "GITHUB_TOKEN": GITHUB_TOKEN,
                "FAKE_KILO_MODE": "env",
                "FAKE_KILO_STEPS": "2",
                "FAKE_KILO_ENV_DUMP": str(dump),
            },
        ),
    )
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", job
    env = json.loads(dump.read_text())
    values = "\n".join(env.values())
    assert KILO_KEY not in values and ORG not in values and GITHUB_TOKEN not in values
    assert not {"KILO_API_KEY", "KILO_ORG_ID"} & set(env)
    job_key = env["KILO_GATEWAY_KEY"]
    assert job_key.startswith(JOB_KEY_PREFIX)
    # The bridge relayed the agent's calls with the real key and the organization.
    chats = [r for r in fake.requests if r["path"].endswith("/chat/completions")]
    assert len(chats) == 2
    assert all(c["headers"]["authorization"] == f"Bearer {KILO_KEY}" for c in chats)
    assert all(c["headers"].get("x-kilocode-organizationid") == ORG for c in chats)
    assert job["result"]["costUsd"] == pytest.approx(0.02)
    # Once the job has ended, its key opens nothing.
    refused = client.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {job_key}"},
        json={"model": "fake/model-a", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert refused.status_code == 401
    assert job_key not in client.get(f"/api/kilo/job/{job_id}/logs").text


def test_a_job_key_opens_only_v1_and_only_until_revoked(
    serve: Callable[..., str], make_settings: Callable[..., Settings], http_client: Callable[..., httpx.Client]
) -> None:
    settings = make_settings(auth_required=True)

    async def mint() -> str:
        store = Store(settings)
        try:
            return await KeyStore(store).create_job_key("job_" + "ab" * 12, 1_000_000_000, 60, 60)
        finally:
            await store.close()

    job_key = asyncio.run(mint())
    client = http_client(base_url=serve(settings), headers={"Authorization": f"Bearer {job_key}"}, timeout=10)
    chat = {"model": "fake/model-a", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", json=chat).status_code == 200
    assert client.get("/v1/models").status_code == 200
    for method, path in (
        ("GET", "/api/kilo/jobs"),
        ("GET", "/api/kilo/stats"),
        ("GET", "/api/kilo/credits"),
        ("POST", "/api/kilo/generate"),
    ):
        response = client.request(method, path, json={"prompt": "hi"} if method == "POST" else None)
        assert response.status_code == 401, (path, response.text)

    async def revoke() -> None:
        store = Store(settings)
        try:
            await KeyStore(store).revoke_job_key(job_key)
        finally:
            await store.close()

    asyncio.run(revoke())
    assert client.post("/v1/chat/completions", json=chat).status_code == 401


def test_gateway_errors_the_agent_meets_are_in_the_live_log_and_name_the_reason(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    fake: FakeGatewayThread,
    http_client: Callable[..., httpx.Client],
) -> None:
    # The gateway keeps answering 429 (after our own retries): the job ends with that reason, not a timeout.
    fake.script([{"kind": "status", "status": 429}] * 20)
    client = http_client(base_url=serve(job_settings(kilo_max_retries=0)), timeout=10)
    job_id = _start(
        client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            dryRun=True,
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "steps", "FAKE_KILO_STEPS": "3"},
        ),
    )
    job = wait_job(client, job_id)
    assert (job["status"], job["reason"]) == ("failed", "gateway_rate_limited"), job
    assert "upstream_rate_limited" in job["error"]
    lines = [data for kind, data in log_events(client, job_id) if kind == "log"]
    assert any('"source":"bridge"' in line and "upstream_rate_limited" in line for line in lines), lines


def test_a_refused_server_key_stops_the_agent_at_once_and_names_gateway_auth_failed(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    fake: FakeGatewayThread,
    http_client: Callable[..., httpx.Client],
) -> None:
    # Kilo refuses the server's own key: no retry can help, so the job says so and ends with that reason.
    fake.script([{"kind": "status", "status": 401}] * 20)
    client = http_client(base_url=serve(job_settings(kilo_max_retries=0)), timeout=10)
    job_id = _start(
        client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            dryRun=True,
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "steps", "FAKE_KILO_STEPS": "3"},
        ),
    )
    job = wait_job(client, job_id)
    assert (job["status"], job["reason"]) == ("failed", "gateway_auth_failed"), job
    lines = [json.loads(data) for kind, data in log_events(client, job_id) if kind == "log"]
    said = [line["msg"] for line in lines]
    assert "starting the Kilo CLI…" in said
    assert any(line["source"] == "bridge" and "refused the server's KILO_API_KEY" in line["msg"] for line in lines)


def test_a_worker_without_a_server_beside_it_meters_its_agent_through_its_own_door(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    # BRIDGE_URL answers nothing: the runner serves the agent's model endpoint itself, metered the same way.
    fake.script([{"kind": "ok", "cost": 0.02}] * 3)
    client = http_client(base_url=serve(job_settings(bridge_url="http://127.0.0.1:9")), timeout=10)
    job_id = _start(
        client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            dryRun=True,
            profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "steps", "FAKE_KILO_STEPS": "3"},
        ),
    )
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", job
    assert len(fake.chats) == 3 and job["result"]["costUsd"] == pytest.approx(0.06)


def test_forged_token_counts_in_the_agents_output_never_reach_the_result(
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> None:
    # The agent prints step_finish events claiming -4,998,000 tokens each; the upstream's usage says otherwise.
    fake.script([{"kind": "ok", "usage": {"prompt_tokens": 7, "completion_tokens": 3, "cost": 0.01}}] * 3)
    client = http_client(base_url=serve(job_settings()), timeout=10)
    job_id = _start(
        client,
        run_body(
            fake_github.repo_url("acme", "widgets"),
            dryRun=True,
            profileEnv={
                "GITHUB_TOKEN": GITHUB_TOKEN,
                "FAKE_KILO_MODE": "steps",
                "FAKE_KILO_STEPS": "3",
                "FAKE_KILO_STEP_TOKENS": "-4998000",
            },
        ),
    )
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", job
    assert (job["result"]["inputTokens"], job["result"]["outputTokens"]) == (21, 9), job["result"]
