"""API keys, per-key budgets and limits, enforced at admission (one Redis round trip). Which requests need
which key is checked in process (Starlette's TestClient); limits and budgets on a real uvicorn."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from kilo_bridge.keys.store import digest
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import REDIS_URL, ROOT, text_hash

ADMIN = "admin-key-not-real-0123456789"


@pytest.fixture
def locked(serve: Callable[..., str], make_settings: Callable[..., Settings]) -> str:
    """A server that requires keys, with an admin key."""
    return serve(make_settings(auth_required=True, admin_api_key=ADMIN))


@pytest.fixture
def locked_app(make_app_client: Callable[..., TestClient], make_settings: Callable[..., Settings]) -> TestClient:
    """The same app in process."""
    return make_app_client(make_settings(auth_required=True, admin_api_key=ADMIN))


def create_key(target: str | TestClient, **body: object) -> dict[str, Any]:
    """A key made through the admin API: of the server at a base URL, or of the app behind a TestClient."""
    post = (lambda path, **kw: httpx.post(target + path, **kw)) if isinstance(target, str) else target.post
    resp = post("/api/kilo/admin/keys", json={"name": "ci", **body}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def test_keys_are_required_except_for_health_badge_and_docs(locked_app: TestClient, fake: FakeGatewayThread) -> None:
    for method, path in [
        ("POST", "/api/kilo/generate"),
        ("POST", "/api/kilo/generate-stream"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/api/kilo/stats"),
        ("GET", "/api/kilo/credits"),
    ]:
        resp = locked_app.request(method, path, json={"prompt": "x"})
        assert resp.status_code == 401, (path, resp.text)
        assert resp.json()["error"]["code"] == "unauthorized"
        assert resp.headers["www-authenticate"] == "Bearer"
    for path in ("/healthz", "/api/kilo/stats/badge", "/api/kilo/openapi.json"):
        assert locked_app.get(path).status_code == 200
    assert not fake.chats


def test_key_works_in_both_headers_and_revocation_is_immediate(
    locked: str, redis_client: redis.Redis, prefix: str
) -> None:
    key = create_key(locked)
    assert key["key"].startswith("kb_")
    # stored only as a digest
    stored = text_hash(redis_client, f"{prefix}apikey:{digest(key['key'])}")
    assert stored and key["key"] not in "".join([*stored, *stored.values()])
    assert not list(redis_client.scan_iter(match=f"*{key['key']}*"))
    for headers in ({"Authorization": f"Bearer {key['key']}"}, {"x-api-key": key["key"]}):
        assert httpx.post(locked + "/api/kilo/generate", json={"prompt": "x"}, headers=headers).status_code == 200
    assert httpx.get(locked + "/api/kilo/stats", headers={"x-api-key": key["key"]}).status_code == 200
    revoked = httpx.delete(f"{locked}/api/kilo/admin/keys/{key['id']}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert revoked.json()["revoked"] is True
    assert (
        httpx.post(locked + "/api/kilo/generate", json={"prompt": "x"}, headers={"x-api-key": key["key"]}).status_code
        == 401
    )
    assert httpx.get(locked + "/api/kilo/stats", headers={"x-api-key": key["key"]}).status_code == 401
    listed = httpx.get(locked + "/api/kilo/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert listed["keys"][0]["requests"] == 2 and "key" not in listed["keys"][0]


def test_admin_routes_need_the_admin_key(locked_app: TestClient) -> None:
    key = create_key(locked_app)
    for headers in ({}, {"x-api-key": key["key"]}, {"Authorization": "Bearer wrong"}):
        assert locked_app.get("/api/kilo/admin/keys", headers=headers).status_code == 401
    assert locked_app.delete("/api/kilo/admin/keys/zzz", headers={"x-api-key": ADMIN}).status_code == 404


def test_requests_per_minute(locked: str) -> None:
    key = create_key(locked, rpm=2)
    headers = {"x-api-key": key["key"]}
    codes = [httpx.post(locked + "/api/kilo/generate", json={"prompt": "x"}, headers=headers) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert 1 <= int(codes[-1].headers["retry-after"]) <= 60
    assert codes[-1].json()["error"]["code"] == "rate_limited"


def test_tokens_per_minute(locked: str) -> None:
    key = create_key(locked, tpm=5)
    headers = {"x-api-key": key["key"]}
    first = httpx.post(locked + "/api/kilo/generate", json={"prompt": "a b c d e f"}, headers=headers)
    assert first.status_code == 200 and first.json()["usage"]["totalTokens"] >= 5
    assert httpx.post(locked + "/api/kilo/generate", json={"prompt": "x"}, headers=headers).status_code == 429


def test_budget_refuses_before_any_upstream_call(locked: str, fake: FakeGatewayThread) -> None:
    key = create_key(locked, budgetUsd=0.000001)
    resp = httpx.post(
        locked + "/api/kilo/generate", json={"prompt": "x", "model": "fake/model-a"}, headers={"x-api-key": key["key"]}
    )
    assert resp.status_code == 402 and resp.json()["error"]["code"] == "budget_exceeded"
    assert not fake.chats


def test_a_budget_of_zero_is_refused_not_unlimited(locked_app: TestClient) -> None:
    for budget in (0, 1e-12):
        resp = locked_app.post(
            "/api/kilo/admin/keys",
            json={"name": "ci", "budgetUsd": budget},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert resp.status_code == 422, (budget, resp.text)


def test_a_call_that_cannot_be_priced_costs_the_key_its_reservation(
    locked: str, fake: FakeGatewayThread, redis_client: redis.Redis, prefix: str
) -> None:
    key = create_key(locked, budgetUsd=1)
    resp = httpx.post(
        locked + "/api/kilo/generate",
        json={"prompt": "x", "model": "vendor/not-in-price-list"},
        headers={"x-api-key": key["key"]},
    )
    assert resp.status_code == 200 and resp.json()["usage"]["costUsd"] is None
    record = redis_client.hgetall(f"{prefix}apikey:{digest(key['key'])}")
    # BUDGET_FALLBACK_ESTIMATE_USD (0.05) was reserved; with no price it is what the key is charged.
    assert (int(record[b"spend_nusd"]), int(record[b"reserved_nusd"])) == (50_000_000, 0)
    # With no maxTokens the upstream is told the cap the reservation was made for.
    assert fake.chats[-1]["json"]["max_tokens"] == 4096


def test_a_priced_call_is_charged_its_cost_and_capped(
    locked: str, fake: FakeGatewayThread, redis_client: redis.Redis, prefix: str
) -> None:
    key = create_key(locked, budgetUsd=1)
    resp = httpx.post(
        locked + "/api/kilo/generate",
        json={"prompt": "x", "model": "fake/model-a", "maxTokens": 7},
        headers={"x-api-key": key["key"]},
    )
    cost = resp.json()["usage"]["costUsd"]
    record = redis_client.hgetall(f"{prefix}apikey:{digest(key['key'])}")
    assert cost and int(record[b"spend_nusd"]) == round(cost * 1e9)
    assert fake.chats[-1]["json"]["max_tokens"] == 7  # the caller's own cap is kept


async def _burst(url: str, key: str, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=200)) as client:

        async def one() -> int:
            resp = await client.post(
                "/api/kilo/generate",
                headers={"x-api-key": key},
                json={"prompt": "a b c", "model": "fake/model-a", "maxTokens": 10},
            )
            return resp.status_code

        return await asyncio.gather(*(one() for _ in range(n)))


def test_budget_holds_under_200_concurrent_requests(locked: str, redis_client: redis.Redis, prefix: str) -> None:
    # estimate per request: (3 chars... ) prompt ~ (len//3+1) tokens at 1e-6 + 10 tokens at 2e-6 ≈ 2.5e-5 USD
    budget = 0.0005
    key = create_key(locked, budgetUsd=budget)
    codes = asyncio.run(_burst(locked, key["key"], 200))
    assert set(codes) == {200, 402}
    assert 0 < codes.count(200) < 200
    record = redis_client.hgetall(f"{prefix}apikey:{digest(key['key'])}")
    spent = int(record[b"spend_nusd"]) / 1e9
    assert spent <= budget
    assert int(record[b"reserved_nusd"]) == 0  # every reservation settled


def test_usage_per_key_in_the_cli(redis_client: redis.Redis, prefix: str) -> None:
    env = {**os.environ, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix}
    run = [sys.executable, "-m", "kilo_bridge", "keys"]
    created = subprocess.run(
        [*run, "create", "--name", "ci", "--budget-usd", "10", "--rpm", "60"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    info = json.loads(created.stdout)
    assert info["budgetUsd"] == 10 and info["rpm"] == 60 and info["key"].startswith("kb_")  # camelCase, as HTTP
    assert "not shown again" in created.stderr
    listed = json.loads(subprocess.run([*run, "list"], env=env, capture_output=True, text=True, check=True).stdout)
    assert [k["id"] for k in listed] == [info["id"]] and "key" not in listed[0]
    assert "budget_usd" not in listed[0] and listed[0]["budgetUsd"] == 10
    revoked = subprocess.run([*run, "revoke", info["id"]], env=env, capture_output=True, text=True, check=True)
    assert json.loads(revoked.stdout)["revoked"] is True
    missing = subprocess.run([*run, "revoke", "000000000000"], env=env, capture_output=True, text=True)
    assert missing.returncode == 1 and "No such key" in missing.stderr


def test_stats_show_a_key_its_own_usage_only(locked: str) -> None:
    mine, theirs = create_key(locked, budgetUsd=1), create_key(locked)
    for key, n in ((mine, 2), (theirs, 1)):
        for _ in range(n):
            assert (
                httpx.post(
                    locked + "/api/kilo/generate",
                    json={"prompt": "x", "model": "fake/model-a"},
                    headers={"x-api-key": key["key"]},
                ).status_code
                == 200
            )
    by_key = httpx.get(locked + "/api/kilo/stats", headers={"x-api-key": mine["key"]}).json()["byKey"]
    assert list(by_key) == [f"ci:{mine['id']}"]
    usage = by_key[f"ci:{mine['id']}"]
    assert (usage["requests"], usage["ok"]) == (2, 2) and usage["spendUsd"] > 0
