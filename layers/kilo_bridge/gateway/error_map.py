"""Upstream error answers mapped to our errors: a status and body from the Kilo Gateway (or the provider behind
it) become a `GatewayError` with a stable code, its fields kept as data (secrets redacted), the headers
clients act on, and a `Retry-After` for every 429."""

from __future__ import annotations

import math
import re
import time
from typing import Any

from kilo_bridge.gateway.errors import GatewayError
from kilo_bridge.platform.security import redact


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


# The error fields of Kilo's bodies we keep, besides OpenAI's message/type/param/code: its 402 carries
# `title`, `balance` and `buyCreditsUrl`, every other error an `error_type` (Kilo-Org/cloud
# src/lib/llm-proxy-helpers.ts: usageLimitExceededResponse, modelNotAllowedResponse, ...).
KILO_EXTRA_FIELDS = ("title", "balance", "buyCreditsUrl")
# The response headers clients act on; the upstream's request id is Kilo's `request-id` (getOutputHeaders).
_FORWARDED_NAMES = frozenset({"request-id", "retry-after", "x-should-retry"})


def forwarded_headers(headers: Any) -> dict[str, str]:
    """The upstream response headers a client uses: `x-ratelimit-*`, `request-id`, `retry-after`."""
    if headers is None:
        return {}
    out = {}
    for name, value in headers.items():
        low = name.lower()
        if low in _FORWARDED_NAMES or low.startswith("x-ratelimit-"):
            out[low] = value
    return out


def error_fields(payload: Any, secrets: tuple[str, ...]) -> dict[str, Any]:
    """An upstream error body, whatever its shape, as OpenAI's fields plus Kilo's extras (secrets redacted).

    Kilo answers `{"error": "<text>", "error_type", "message"}`, its 402
    `{"error": {"title", "message", "balance", "buyCreditsUrl"}, "error_type"}`, and passes the provider's
    `{"error": {"message", "type", "param", "code"}}` through (OpenRouter puts the status in `code`)."""
    if not isinstance(payload, dict):
        return {}
    err = payload.get("error")
    fields: dict[str, Any] = {}
    if isinstance(err, dict):
        for name in ("message", "type", "param", "code"):
            value = err.get(name)
            if isinstance(value, str) and value:  # an integer `code` is a status, not OpenAI's string code
                fields[name] = value
        for name in KILO_EXTRA_FIELDS:
            if isinstance(err.get(name), (str, int, float)) and not isinstance(err.get(name), bool):
                fields[name] = err[name]
    elif isinstance(err, str) and err:
        fields["message"] = err
    if isinstance(payload.get("message"), str) and payload["message"]:
        fields["message"] = payload["message"]  # Kilo's sentence; its `error` is a short title
    if isinstance(payload.get("error_type"), str) and payload["error_type"]:
        fields["error_type"] = payload["error_type"]
    for name in ("message", "title"):
        if name in fields:
            fields[name] = redact(str(fields[name]), secrets)[:1000]
    return fields


def _native_code(status: int, fields: dict[str, Any]) -> str:
    """Our stable code for an upstream status (web/errors.py maps codes to the native routes' statuses)."""
    error_type = fields.get("error_type")
    if status == 404 and (error_type == "model_not_allowed" or "not allowed" in str(fields.get("message", ""))):
        # Kilo's 404 "Model not allowed for your team." (modelNotAllowedResponse; older builds send no
        # error_type): the organization disallows the model. Its other 404s mean no such model (any more).
        return "model_not_allowed"
    if status == 503 and error_type == "top_up_in_progress":
        return "top_up_in_progress"
    code = _CODE_BY_STATUS.get(status)
    if code:
        return code
    return "upstream_rejected" if 400 <= status < 500 else "upstream_error"


_CODE_BY_STATUS = {
    400: "upstream_bad_request",
    401: "gateway_auth_failed",
    402: "credits_exhausted",
    403: "model_not_allowed",  # a feature-exclusive model or a disallowed provider
    404: "model_not_found",
    408: "upstream_timeout",
    413: "upstream_payload_too_large",
    426: "gateway_upgrade_required",
    429: "upstream_rate_limited",
    503: "upstream_unavailable",
    504: "upstream_timeout",
}
_MESSAGES = {
    "upstream_bad_request": "The Kilo Gateway refused the request",
    "gateway_auth_failed": "The Kilo Gateway rejected the configured KILO_API_KEY",
    "credits_exhausted": "The Kilo credit balance is exhausted",
    "model_not_allowed": "The Kilo Gateway does not allow this model",
    "model_not_found": "The Kilo Gateway does not know this model",
    "upstream_payload_too_large": "The Kilo Gateway refused the request as too large",
    "gateway_upgrade_required": "The Kilo Gateway asks for a newer client; upgrade kilo-bridge",
    "upstream_rate_limited": "The Kilo Gateway is rate limiting this service; retry later",
    "top_up_in_progress": "A Kilo credit top-up is in progress; retry shortly",
    "upstream_unavailable": "The Kilo Gateway is unavailable",
    "upstream_timeout": "The Kilo Gateway timed out",
}


# A relayed 429 without Retry-After gets one: the Codex CLI gives up at once on a 429 that lacks it (and the
# Kilo Gateway's own 429s carry none: llm-gateway/src/responses.ts rateLimitExceededResponse). From the
# rate-limit reset headers when the answer has them, else this short default.
DEFAULT_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 60
_RESET_HEADERS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "x-ratelimit-reset")
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?")


def _reset_seconds(value: str, now: float) -> float | None:
    """A reset header as seconds from now: OpenAI's duration (`1s`, `6m0s`, `20ms`), a Unix time in seconds or
    milliseconds (OpenRouter's `X-RateLimit-Reset`), or plain seconds."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        match = _DURATION.fullmatch(value)
        if not value or match is None:
            return None
        h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
        return h * 3600 + m * 60 + s + ms / 1000
    if number > 1e12:
        return number / 1000 - now
    if number > 1e9:
        return number - now
    return number


def retry_after_for_429(headers: dict[str, str]) -> str:
    """Whole seconds (what `Retry-After` allows) until the upstream's limits reset, 1 to 60."""
    now = time.time()
    resets = [s for name in _RESET_HEADERS if (v := headers.get(name)) and (s := _reset_seconds(v, now)) is not None]
    seconds = max(resets) if resets else DEFAULT_RETRY_AFTER_S
    return str(min(MAX_RETRY_AFTER_S, max(1, math.ceil(seconds))))


def upstream_error(status: int, payload: Any, headers: Any, secrets: tuple[str, ...]) -> GatewayError:
    """An upstream error response as our error: its status and fields kept as data, secrets not."""
    fields = error_fields(payload, secrets)
    code = _native_code(status, fields)
    detail = fields.get("message")
    lead = _MESSAGES.get(code, f"The Kilo Gateway answered HTTP {status}")
    message = f"{lead}: {detail}" if detail else lead + "."
    extra: dict[str, Any] = {k: fields[k] for k in ("buyCreditsUrl", "balance") if k in fields} if status == 402 else {}
    forwarded = forwarded_headers(headers)
    retry_after: str | None = forwarded.pop("retry-after", None)  # the upstream's own, as it came
    if status == 429 and retry_after is None:
        retry_after = retry_after_for_429(forwarded)
    return GatewayError(
        message,
        code=code,
        retry_after=retry_after,
        extra=extra,
        status=status,
        upstream=fields,
        headers=forwarded,
    )


def timeout_error() -> GatewayError:
    return GatewayError("The Kilo Gateway did not answer within KILO_TIMEOUT_MS.", code="upstream_timeout")
