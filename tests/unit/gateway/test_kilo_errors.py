"""Kilo's real error bodies (tests/fakes/fake_gateway.error_body cites each) become the right domain error,
and the web layer renders it: the native routes with our codes, `/v1` as the gateway answered."""

from __future__ import annotations

import pytest
from openai.types.shared import ErrorObject

from kilo_bridge.gateway.error_map import upstream_error
from kilo_bridge.web.errors import ApiError
from tests.fakes.fake_gateway import error_body

KEY = "test-key-not-real-0123456789"


@pytest.mark.parametrize(
    ("status", "reason", "native_status", "code"),
    [
        (400, None, 400, "upstream_bad_request"),
        (401, None, 503, "gateway_auth_failed"),
        (402, None, 402, "credits_exhausted"),
        (403, None, 403, "model_not_allowed"),
        (404, None, 403, "model_not_allowed"),  # "Model not allowed for your team." is a 404 at Kilo
        (404, "not_found", 404, "model_not_found"),
        (408, None, 504, "upstream_timeout"),
        (409, None, 409, "upstream_rejected"),  # an unlisted 4xx keeps its status, never 502
        (413, None, 413, "upstream_payload_too_large"),
        (422, None, 422, "upstream_rejected"),
        (426, None, 502, "gateway_upgrade_required"),
        (429, None, 429, "upstream_rate_limited"),
        (503, None, 503, "upstream_unavailable"),
        (503, "top_up_in_progress", 503, "top_up_in_progress"),
        (500, None, 502, "upstream_error"),
    ],
)
def test_each_kilo_status_maps_to_a_native_status(
    status: int, reason: str | None, native_status: int, code: str
) -> None:
    err = upstream_error(status, error_body(status, reason, 0.0), {}, (KEY,))
    assert (err.code, err.status) == (code, status)  # the upstream status travels as data
    api = ApiError.of(err)
    assert api.status == native_status


@pytest.mark.parametrize("status", [400, 402, 403, 404, 408, 409, 413, 422, 429, 500, 503])
def test_v1_keeps_the_upstream_status_and_openai_shape(status: int) -> None:
    api = ApiError.of(upstream_error(status, error_body(status, None, 0.0), {}, ()), passthrough=True)
    assert api.status == status
    body = api.openai_body()
    ErrorObject.model_validate(body["error"], strict=True)  # what the openai SDK parses


def test_402_keeps_kilos_buy_credits_link_and_balance() -> None:
    err = upstream_error(402, error_body(402, None, -0.25), {}, ())
    assert err.extra == {"buyCreditsUrl": "https://app.kilo.ai/profile", "balance": -0.25}
    native = ApiError.of(err).body("rid")["error"]
    assert native["buyCreditsUrl"] == "https://app.kilo.ai/profile" and native["code"] == "credits_exhausted"
    v1 = ApiError.of(err, passthrough=True).openai_body()
    assert v1["error_type"] == "usage_limit_exceeded"
    assert v1["error"]["buyCreditsUrl"] == "https://app.kilo.ai/profile" and v1["error"]["balance"] == -0.25
    assert v1["error"]["title"] == "Low Credit Warning!"


def test_a_providers_openai_error_keeps_its_code_type_and_param() -> None:
    body = {
        "error": {
            "message": f"too long for Bearer {KEY}",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    v1 = ApiError.of(upstream_error(400, body, {}, (KEY,)), passthrough=True).openai_body()["error"]
    assert (v1["code"], v1["type"], v1["param"]) == ("context_length_exceeded", "invalid_request_error", "messages")
    assert KEY not in v1["message"]


def test_rate_limit_headers_and_request_id_travel_and_a_429_gets_a_retry_after() -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "request-id": "req_1", "Content-Type": "application/json"}
    err = upstream_error(429, error_body(429, None, 0), headers, ())
    api = ApiError.of(err, passthrough=True)
    # Kilo's 429s carry no Retry-After: a short default, so that a client that needs one (Codex) retries.
    assert api.headers == {"x-ratelimit-remaining-requests": "0", "request-id": "req_1", "Retry-After": "1"}
    top_up = ApiError.of(upstream_error(503, error_body(503, "top_up_in_progress", 0), {"Retry-After": "5"}, ()))
    assert top_up.headers["Retry-After"] == "5"


def test_errors_no_retry_can_fix_say_so() -> None:
    for status, ours in ((401, 503), (426, 502)):
        api = ApiError.of(upstream_error(status, error_body(status, None, 0), {}, ()), passthrough=True)
        assert api.status == ours and api.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        ({"x-ratelimit-reset-requests": "6m0s"}, "60"),  # OpenAI's duration, capped at a minute
        ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "20ms"}, "1"),
        ({"x-ratelimit-reset-tokens": "7.2s"}, "8"),
        ({"x-ratelimit-reset": "12"}, "12"),  # plain seconds
        ({"x-ratelimit-reset": "not a time"}, "1"),
    ],
)
def test_a_429_without_retry_after_gets_one_from_the_reset_headers(reset: dict[str, str], expected: str) -> None:
    err = upstream_error(429, error_body(429, None, 0), reset, ())
    assert ApiError.of(err, passthrough=True).headers["Retry-After"] == expected


def test_a_429_reset_given_as_a_unix_time_counts_from_now() -> None:
    import time

    in_ms = str(int((time.time() + 30) * 1000))  # OpenRouter's X-RateLimit-Reset is in milliseconds
    err = upstream_error(429, error_body(429, None, 0), {"x-ratelimit-reset": in_ms}, ())
    assert 29 <= int(ApiError.of(err).headers["Retry-After"]) <= 31
    own = upstream_error(429, error_body(429, None, 0), {"Retry-After": "3"}, ())
    assert ApiError.of(own).headers["Retry-After"] == "3"  # an upstream's own is kept
