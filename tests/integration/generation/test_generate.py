"""POST /api/kilo/generate against the fake gateway and the real Redis: through a real uvicorn, and in process
(Starlette's TestClient) for what is only request validation, error bodies and headers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import TEST_KEY, Response, free_port

JSON = {"Content-Type": "application/json"}


def stat(redis_client: redis.Redis, prefix: str, field: str, key: str = "stats") -> int:
    return int(redis_client.hget(prefix + key, field) or 0)


def assert_error(resp: Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert err["code"] == code
    assert err["requestId"] == resp.headers["x-request-id"]
    assert TEST_KEY not in resp.text
    assert "Traceback" not in resp.text
    return err


def test_generate_returns_text_usage_and_cost(
    client: httpx.Client, fake: FakeGatewayThread, redis_client: redis.Redis, prefix: str
) -> None:
    resp = client.post(
        "/api/kilo/generate",
        json={
            "prompt": "Write a concise README",
            "model": "fake/model-a",
            "system": "be brief",
            "maxTokens": 50,
            "temperature": 0.2,
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["text"].startswith("Echo: Write a concise README")
    assert body["model"] == "fake/model-a"
    assert body["requestId"] == resp.headers["x-request-id"]
    usage = body["usage"]
    assert usage["totalTokens"] == usage["promptTokens"] + usage["completionTokens"] > 0
    # fake/model-a is listed at 1e-6 USD per prompt token and 2e-6 per completion token
    expected = usage["promptTokens"] * 1e-6 + usage["completionTokens"] * 2e-6
    assert usage["costUsd"] == pytest.approx(expected)

    sent = fake.chats[-1]
    assert sent["headers"]["authorization"] == f"Bearer {TEST_KEY}"
    assert sent["json"]["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Write a concise README"},
    ]
    assert sent["json"]["max_tokens"] == 50 and sent["json"]["temperature"] == 0.2

    # accounting is written right after the answer is sent
    stats = client.get("/api/kilo/stats").json()
    assert stats["totals"]["ok"] == 1 and stats["totals"]["requests"] == 1
    assert stats["totals"]["promptTokens"] == usage["promptTokens"]
    assert stats["byModel"]["fake/model-a"]["ok"] == 1
    assert stats["totals"]["spendUsd"] == pytest.approx(expected)


def test_default_model_is_used_when_none_given(client: httpx.Client, fake: FakeGatewayThread) -> None:
    assert client.post("/api/kilo/generate", json={"prompt": "hi"}).status_code == 200
    assert fake.chats[-1]["json"]["model"] == "kilo-auto/balanced"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "x", "maxTokens": 0}, "maxTokens"),
        ({"prompt": "x", "temperature": 9}, "temperature"),
        ({"prompt": "x", "model": "bad model id; rm -rf"}, "model"),
        ({"prompt": "x", "unknown": 1}, "unknown"),
    ],
)
def test_invalid_bodies_get_422_with_field_details(
    app_client: TestClient, fake: FakeGatewayThread, body: dict[str, Any], field: str
) -> None:
    err = assert_error(app_client.post("/api/kilo/generate", json=body), 422, "invalid_request")
    assert field in {d["field"] for d in err["details"]}
    assert not fake.chats  # nothing reached the gateway


def test_malformed_json_and_form_posts(app_client: TestClient, fake: FakeGatewayThread) -> None:
    assert_error(app_client.post("/api/kilo/generate", content=b'{"prompt": ', headers=JSON), 400, "invalid_json")
    assert_error(app_client.post("/api/kilo/generate", data={"prompt": "x"}), 415, "unsupported_media_type")
    assert not fake.chats


def test_oversized_bodies_over_a_socket(client: httpx.Client, fake: FakeGatewayThread) -> None:
    big = b'{"prompt": "' + b"a" * 1_100_000 + b'"}'
    assert_error(client.post("/api/kilo/generate", content=big, headers=JSON), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while reading
        yield b'{"prompt": "'
        for _ in range(30):
            yield b"a" * 50_000
        yield b'"}'

    assert_error(client.post("/api/kilo/generate", content=chunks(), headers=JSON), 413, "payload_too_large")
    assert not fake.chats


def test_prompt_length_cap(make_app_client: Callable[..., TestClient], make_settings: Callable[..., Settings]) -> None:
    app = make_app_client(make_settings(max_prompt_chars=10))
    resp = app.post("/api/kilo/generate", json={"prompt": "x" * 11})
    assert_error(resp, 413, "prompt_too_long")


def test_no_key_configured_is_503_and_calls_nothing(
    make_app_client: Callable[..., TestClient], make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    app = make_app_client(make_settings(kilo_api_key=None))
    err = assert_error(app.post("/api/kilo/generate", json={"prompt": "x"}), 503, "not_configured")
    assert "KILO_API_KEY" in err["message"]
    assert not fake.chats
    health = app.get("/healthz").json()
    assert health["gatewayConfigured"] is False and health["status"] == "degraded"


@pytest.mark.parametrize(
    ("scenario", "status", "code"),
    [
        ({"kind": "status", "status": 400}, 400, "upstream_bad_request"),
        ({"kind": "status", "status": 403}, 403, "model_not_allowed"),
        ({"kind": "status", "status": 500}, 502, "upstream_error"),
    ],
)
def test_upstream_errors_are_mapped(
    client: httpx.Client,
    fake: FakeGatewayThread,
    redis_client: redis.Redis,
    prefix: str,
    scenario: dict[str, Any],
    status: int,
    code: str,
) -> None:
    fake.script([scenario])
    assert_error(client.post("/api/kilo/generate", json={"prompt": "x"}), status, code)
    assert len(fake.chats) == 1  # 4xx/500 are not retried
    assert stat(redis_client, prefix, "failed") == 1


def test_bad_key_upstream_401_is_a_clear_503(
    serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    url = serve(make_settings(kilo_api_key="bad-key"))
    err = assert_error(httpx.post(url + "/api/kilo/generate", json={"prompt": "x"}), 503, "gateway_auth_failed")
    assert "KILO_API_KEY" in err["message"] and "bad-key" not in err["message"]


def test_402_means_zero_credits(client: httpx.Client, fake: FakeGatewayThread) -> None:
    fake.script([{"kind": "status", "status": 402}])
    err = assert_error(client.post("/api/kilo/generate", json={"prompt": "x"}), 402, "credits_exhausted")
    assert err["buyCreditsUrl"].startswith("https://")
    credits = client.get("/api/kilo/credits", params={"refresh": "false"}).json()
    assert credits["remainingUsd"] == 0 and credits["balanceUsd"] == 0


def test_429_then_success_is_retried_honouring_retry_after(client: httpx.Client, fake: FakeGatewayThread) -> None:
    fake.script([{"kind": "status", "status": 429, "retry_after": "0.2"}, {"kind": "status", "status": 503}])
    resp = client.post("/api/kilo/generate", json={"prompt": "x"})
    assert resp.status_code == 200, resp.text
    assert len(fake.chats) == 3


def test_persistent_429_is_returned_with_retry_after(
    serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    url = serve(make_settings(kilo_max_retries=1))
    fake.script([{"kind": "status", "status": 429, "retry_after": "0"}] * 2)
    resp = httpx.post(url + "/api/kilo/generate", json={"prompt": "x"})
    assert_error(resp, 429, "upstream_rate_limited")
    assert resp.headers["retry-after"] == "0"
    assert len(fake.chats) == 2


def test_retry_after_beyond_the_deadline_is_not_waited_for(
    serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    url = serve(make_settings(kilo_timeout_ms=1000))
    fake.script([{"kind": "status", "status": 429, "retry_after": "30"}])
    resp = httpx.post(url + "/api/kilo/generate", json={"prompt": "x"}, timeout=5)
    assert_error(resp, 429, "upstream_rate_limited")
    assert resp.headers["retry-after"] == "30"
    assert len(fake.chats) == 1


def test_slow_upstream_times_out_with_504(
    serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    url = serve(make_settings(kilo_timeout_ms=300))
    fake.script([{"kind": "slow", "latency_ms": 3000}])
    err = assert_error(httpx.post(url + "/api/kilo/generate", json={"prompt": "x"}, timeout=5), 504, "upstream_timeout")
    assert "KILO_TIMEOUT_MS" in err["message"]


def test_unreachable_gateway_is_502_after_retries(
    serve: Callable[..., str], make_settings: Callable[..., Settings]
) -> None:
    url = serve(make_settings(kilo_gateway_base=f"http://127.0.0.1:{free_port()}/api/gateway", kilo_max_retries=1))
    assert_error(httpx.post(url + "/api/kilo/generate", json={"prompt": "x"}), 502, "upstream_unreachable")


def test_request_id_is_echoed_and_unknown_routes_use_the_error_shape(app_client: TestClient) -> None:
    resp = app_client.get("/api/kilo/nope", headers={"x-request-id": "my-trace-1"})
    err = assert_error(resp, 404, "not_found")
    assert err["requestId"] == "my-trace-1"
    assert_error(app_client.get("/api/kilo/generate"), 405, "method_not_allowed")
    assert resp.headers["x-content-type-options"] == "nosniff"
