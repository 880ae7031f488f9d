import pytest

from kilo_bridge.gateway.error_map import upstream_error
from kilo_bridge.web.errors import ApiError

KEY = "test-key-not-real-0123456789"


@pytest.mark.parametrize(
    ("upstream", "status", "code"),
    [
        (400, 400, "upstream_bad_request"),
        (401, 503, "gateway_auth_failed"),
        (402, 402, "credits_exhausted"),
        (403, 403, "model_not_allowed"),
        (429, 429, "upstream_rate_limited"),
        (500, 502, "upstream_error"),
        (502, 502, "upstream_error"),
        (503, 503, "upstream_unavailable"),
        (504, 504, "upstream_timeout"),
    ],
)
def test_status_mapping_never_echoes_the_key(upstream: int, status: int, code: str) -> None:
    # Kilo's 402 keeps the link inside `error` (cloud llm-proxy-helpers.ts usageLimitExceededResponse), not `metadata`.
    payload = {"error": {"message": f"bad things with Bearer {KEY}", "buyCreditsUrl": "https://x/buy", "balance": 0}}
    err = ApiError.of(upstream_error(upstream, payload, {"Retry-After": "7"}, (KEY,)))
    assert (err.status, err.code) == (status, code)
    assert KEY not in err.json_bytes("rid").decode()
    if upstream == 429:
        assert err.headers["Retry-After"] == "7"  # the upstream's own; Kilo's 429s carry none
    if upstream == 402:
        assert err.extra["buyCreditsUrl"] == "https://x/buy"
