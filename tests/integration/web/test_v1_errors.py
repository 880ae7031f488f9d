"""Errors on `/v1` as a real openai SDK (default retries) sees them: the gateway's status, code, type and
param; Kilo's extras; one upstream call per SDK attempt; our own errors in OpenAI's shape."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from openai.types.shared import ErrorObject

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "x"}]


def sdk(base_url: str, retries: int = 2) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused-locally", max_retries=retries, timeout=10)


def strict_error(exc: openai.APIStatusError) -> ErrorObject:
    body = exc.response.json()
    return ErrorObject.model_validate(body["error"], strict=True)


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_refusal_keeps_its_status_and_is_not_retried(base_url: str, fake: FakeGatewayThread, status: int) -> None:
    fake.script(
        [
            {
                "kind": "status",
                "status": status,
                "body": {
                    "error": {
                        "message": "This model's maximum context length is 8 tokens",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                },
            }
        ]
    )
    with pytest.raises(openai.APIStatusError) as info:
        sdk(base_url).chat.completions.create(model="fake/model-a", messages=MSG)
    assert info.value.status_code == status
    err = strict_error(info.value)
    assert (err.code, err.type, err.param) == ("context_length_exceeded", "invalid_request_error", "messages")
    assert len(fake.chats) == 1  # the SDK does not retry a 4xx, and neither do we


@pytest.mark.parametrize("status", [408, 409])
def test_statuses_the_sdk_retries_pass_through(base_url: str, fake: FakeGatewayThread, status: int) -> None:
    fake.script([{"kind": "status", "status": status}])
    with pytest.raises(openai.APIStatusError) as info:
        sdk(base_url, retries=0).chat.completions.create(model="fake/model-a", messages=MSG)
    assert info.value.status_code == status


def test_429_is_retried_by_the_client_only(base_url: str, fake: FakeGatewayThread) -> None:
    fake.script([{"kind": "status", "status": 429, "headers": {"x-ratelimit-remaining-requests": "0"}}] * 3)
    with pytest.raises(openai.RateLimitError) as info:
        sdk(base_url).chat.completions.create(model="fake/model-a", messages=MSG)
    # 1 + the SDK's 2 retries; before, each of them was retried 2 more times by us (9 upstream calls).
    assert len(fake.chats) == 3
    # Kilo sends no Retry-After (nor reset headers here): a short one of ours, which the Codex CLI needs to retry.
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-should-retry" not in info.value.response.headers  # retrying a 429 is the client's call
    assert strict_error(info.value).code == "rate_limit_exceeded"  # Kilo's name for it


def test_402_carries_kilos_buy_credits_link(base_url: str, fake: FakeGatewayThread) -> None:
    fake.script([{"kind": "status", "status": 402}])
    with pytest.raises(openai.APIStatusError) as info:
        sdk(base_url).chat.completions.create(model="fake/model-a", messages=MSG)
    assert info.value.status_code == 402
    body = info.value.response.json()
    assert body["error_type"] == "usage_limit_exceeded"
    assert body["error"]["buyCreditsUrl"] == "https://app.kilo.ai/profile"
    assert body["error"]["balance"] == fake.balance
    strict_error(info.value)


def test_model_not_allowed_is_kilos_404_on_v1_and_403_on_the_native_route(
    base_url: str, fake: FakeGatewayThread
) -> None:
    fake.script([{"kind": "status", "status": 404}, {"kind": "status", "status": 404}])
    with pytest.raises(openai.NotFoundError) as info:
        sdk(base_url).chat.completions.create(model="fake/model-a", messages=MSG)
    assert strict_error(info.value).code == "model_not_allowed"
    assert "not allowed for your team" in info.value.message
    native = httpx.post(base_url + "/api/kilo/generate", json={"prompt": "x"})
    assert native.status_code == 403 and native.json()["error"]["code"] == "model_not_allowed"


def test_top_up_in_progress_says_retry_after_5(
    serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    url = serve(make_settings(kilo_timeout_ms=2000))  # 5 s does not fit: the native route does not wait
    fake.script([{"kind": "status", "status": 503, "reason": "top_up_in_progress"}] * 2)
    with pytest.raises(openai.InternalServerError) as info:
        sdk(url, retries=0).chat.completions.create(model="fake/model-a", messages=MSG)
    assert info.value.status_code == 503 and info.value.response.headers["retry-after"] == "5"
    assert info.value.response.json()["error_type"] == "top_up_in_progress"
    native = httpx.post(url + "/api/kilo/generate", json={"prompt": "x"})
    assert native.status_code == 503 and native.headers["retry-after"] == "5"
    assert native.json()["error"]["code"] == "top_up_in_progress"


@pytest.mark.parametrize(
    ("status", "reason", "ours", "code"),
    [
        (401, None, 503, "gateway_auth_failed"),  # Kilo's nested-error 401 (PAID_MODEL_AUTH_REQUIRED)
        (401, "promotion_limit", 503, "gateway_auth_failed"),
        (401, "invalid_token", 503, "gateway_auth_failed"),  # older builds' flat shape
        (426, None, 502, "gateway_upgrade_required"),
    ],
)
def test_our_own_key_or_version_refused_is_an_error_no_retry_can_fix(
    base_url: str, fake: FakeGatewayThread, status: int, reason: str | None, ours: int, code: str
) -> None:
    fake.script([{"kind": "status", "status": status, "reason": reason}] * 3)
    with pytest.raises(openai.InternalServerError) as info:
        sdk(base_url).chat.completions.create(model="fake/model-a", messages=MSG)
    # Kilo refusing the bridge's own key is the operator's problem: 503 gateway_auth_failed, never the caller's 401.
    assert info.value.status_code == ours
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(fake.chats) == 1  # the SDK obeyed x-should-retry: false
    assert strict_error(info.value).code == code


@pytest.mark.parametrize("status", [400, 402, 403, 404, 413, 422])
def test_a_refusal_no_retry_can_change_says_so(base_url: str, fake: FakeGatewayThread, status: int) -> None:
    fake.script([{"kind": "status", "status": status}])
    resp = httpx.post(base_url + "/v1/chat/completions", json={"model": "fake/model-a", "messages": MSG})
    assert resp.status_code == status and resp.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_a_failure_a_retry_may_fix_leaves_it_to_the_client(base_url: str, fake: FakeGatewayThread, status: int) -> None:
    fake.script([{"kind": "status", "status": status}])
    resp = httpx.post(base_url + "/v1/chat/completions", json={"model": "fake/model-a", "messages": MSG})
    assert resp.status_code == status and "x-should-retry" not in resp.headers


def test_our_own_401_on_v1_says_no_retry_can_fix_it(
    serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    url = serve(make_settings(auth_required=True))
    bodies: dict[str, dict[str, object]] = {
        "/v1/chat/completions": {"messages": MSG},
        "/v1/messages": {"messages": MSG, "max_tokens": 5},
        "/v1/responses": {"input": "x"},
    }
    for path, body in bodies.items():
        resp = httpx.post(url + path, json={"model": "fake/model-a", **body}, headers={"x-api-key": "kb_not-a-key"})
        assert resp.status_code == 401 and resp.headers["x-should-retry"] == "false", path
    assert not fake.chats


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/responses", {"previous_response_id": "resp_123"}),
        ("/responses", {"store": True}),
        ("/responses", {"providerOptions": {"openai": {"store": False}}}),
        ("/chat/completions", {"providerOptions": {"anthropic": {}}}),
    ],
)
def test_what_kilo_refuses_reaches_the_sdk_as_its_400(
    base_url: str, fake: FakeGatewayThread, path: str, extra: dict[str, object]
) -> None:
    client = sdk(base_url)
    with pytest.raises(openai.BadRequestError) as info:
        if path == "/responses":
            client.responses.create(model="fake/model-a", input="x", extra_body=extra)
        else:
            client.chat.completions.create(model="fake/model-a", messages=MSG, extra_body=extra)
    assert strict_error(info.value).code == "unsupported_field"
    assert info.value.response.headers["x-should-retry"] == "false"
    name = next(iter(extra))
    assert name in info.value.message
    assert len(fake.calls(path)) == 1


def test_our_own_errors_use_openais_shape(base_url: str, fake: FakeGatewayThread) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        sdk(base_url).chat.completions.create(model="fake/model-a", messages=[])
    err = strict_error(info.value)
    assert (err.type, err.param, err.code) == ("invalid_request_error", "messages", "invalid_request")
    missing = httpx.get(base_url + "/v1/no-such-route")
    assert missing.status_code == 404
    ErrorObject.model_validate(missing.json()["error"], strict=True)
    assert not fake.chats


def test_midstream_error_is_an_openai_error_event(base_url: str, fake: FakeGatewayThread) -> None:
    fake.script([{"kind": "error_event", "after": 1}])
    with httpx.stream(
        "POST", base_url + "/v1/chat/completions", json={"model": "fake/model-a", "messages": MSG, "stream": True}
    ) as resp:
        lines = [line for line in resp.iter_lines() if line.startswith('data: {"error"')]
    assert len(lines) == 1
    error = httpx.Response(200, content=lines[0][6:]).json()["error"]
    ErrorObject.model_validate(error, strict=True)
    assert error["message"].endswith("upstream exploded")
