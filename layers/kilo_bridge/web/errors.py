"""One error shape everywhere, `{"error": {"code", "message", "requestId", ...}}`, and the one table that
turns a domain error's code into an HTTP status. Nothing below `web/` knows a status code."""

from __future__ import annotations

from typing import Any

import orjson

from kilo_bridge.errors import BridgeError
from kilo_bridge.gateway.errors import GatewayError

# code → status. A code missing here is a 500: every domain error the service raises is listed.
STATUS_BY_CODE: dict[str, int] = {
    # the request itself
    "bad_request": 400,
    "invalid_json": 400,
    "upstream_bad_request": 400,
    "upstream_rejected": 400,  # another 4xx from the gateway: ApiError.of keeps the gateway's own status
    "unauthorized": 401,
    "budget_exceeded": 402,
    "credits_exhausted": 402,
    "forbidden": 403,
    "key_revoked": 403,
    "model_not_allowed": 403,
    "not_found": 404,
    "model_not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
    "upstream_payload_too_large": 413,
    "prompt_too_long": 413,
    "unsupported_media_type": 415,
    "invalid_request": 422,
    "unknown_agent": 422,
    "rate_limited": 429,
    "too_many_jobs": 429,
    "upstream_rate_limited": 429,
    "client_disconnected": 499,  # nginx's convention; only ever logged or put in an event
    # the service and its dependencies
    "internal_error": 500,
    "bad_gateway": 502,
    "gateway_auth_failed": 503,  # Kilo refused our KILO_API_KEY: the operator's to fix, never the caller's
    "gateway_upgrade_required": 502,  # Kilo's 426 asks this server for an upgrade, not the caller
    "upstream_error": 502,
    "upstream_unreachable": 502,
    "upstream_malformed": 502,
    "upstream_stream_broken": 502,
    "unavailable": 503,
    "overloaded": 503,  # this process is at MAX_CONCURRENT_REQUESTS or out of file descriptors
    "not_configured": 503,
    "store_unavailable": 503,
    "queue_unavailable": 503,
    "upstream_unavailable": 503,
    "top_up_in_progress": 503,
    "gateway_timeout": 504,
    "upstream_timeout": 504,
    "stream_too_long": 504,
}
# Statuses Starlette raises itself (routing) mapped to our codes.
CODE_BY_STATUS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


# Our errors that no retry can fix although their status invites one (a client SDK retries 408, 409, 429
# and 5xx): answered with `x-should-retry: false`, which the openai and anthropic SDKs (and Claude Code) obey.
NOT_RETRYABLE = frozenset({"gateway_auth_failed", "gateway_upgrade_required", "not_configured"})
# Statuses no retry can change (the request or the key is wrong). Anthropic's API marks them `x-should-retry:
# false`; without it Claude Code retries a 401 for minutes. 408, 409, 429 and 5xx keep the client's own policy.
FINAL_STATUSES = frozenset({400, 401, 402, 403, 404, 405, 413, 415, 422})
# OpenAI's error `type` by status, for errors that bring none.
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    429: "rate_limit_error",
}
# Kilo's fields that stay inside `error` on /v1 (its 402's buy-credits link and balance).
_KILO_EXTRAS = ("title", "balance", "buyCreditsUrl")


class ApiError(Exception):
    """An error as the client sees it: status, stable code, message, headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details
        self.extra = extra or {}
        # The upstream's error fields when the gateway answered this error (see GatewayError.upstream).
        self.upstream: dict[str, Any] | None = None

    @classmethod
    def of(cls, exc: BridgeError, passthrough: bool = False) -> ApiError:
        """The HTTP face of a domain error. `passthrough` (the `/v1` surface): an error the gateway answered
        keeps the gateway's status, fields and headers, as if the client had called it directly."""
        status = STATUS_BY_CODE.get(exc.code, 500)
        headers: dict[str, str] = {}
        upstream = isinstance(exc, GatewayError) and exc.status is not None
        if upstream and isinstance(exc, GatewayError):
            headers.update(exc.headers)
            if exc.code == "upstream_rejected" or (passthrough and exc.code not in NOT_RETRYABLE):
                status = exc.status or status
        if exc.retry_after is not None:
            headers["Retry-After"] = _seconds(exc.retry_after)
        if exc.code in NOT_RETRYABLE:
            headers["x-should-retry"] = "false"
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        error = cls(status, exc.code, exc.message, headers=headers, details=exc.details, extra=exc.extra)
        if upstream and isinstance(exc, GatewayError):
            error.upstream = exc.upstream
        return error

    def openai_body(self) -> dict[str, Any]:
        """OpenAI's error shape, the `/v1` surface's: `{"error": {"message", "type", "param", "code"}}`; an
        upstream error keeps its own fields and Kilo's extras (`buyCreditsUrl`, `balance`, `error_type`)."""
        fallback_type = OPENAI_TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        if self.upstream is not None and self.code not in NOT_RETRYABLE:
            up = self.upstream
            err: dict[str, Any] = {
                "message": up.get("message") or self.message,
                "type": up.get("type") or fallback_type,
                "param": up.get("param"),
                "code": up.get("code") or up.get("error_type") or self.code,
            }
            err.update((k, up[k]) for k in _KILO_EXTRAS if k in up)
            body: dict[str, Any] = {"error": err}
            if "error_type" in up:
                body["error_type"] = up["error_type"]
            return body
        param = None
        if isinstance(self.details, list) and self.details and isinstance(self.details[0], dict):
            param = self.details[0].get("field")
        err = {"message": self.message, "type": fallback_type, "param": param, "code": self.code}
        if self.details is not None:
            err["details"] = self.details
        err.update(self.extra)
        return {"error": err}

    def passthrough_headers(self) -> dict[str, str]:
        """The `/v1` answer's headers: a final status or an error of ours that no retry fixes says
        `x-should-retry: false` (an upstream's own verdict kept)."""
        headers = dict(self.headers)
        if self.status in FINAL_STATUSES or self.code in NOT_RETRYABLE:
            headers.setdefault("x-should-retry", "false")
        return headers

    def passthrough_body(self, path: str) -> dict[str, Any]:
        """The error as the `/v1` route's own API shapes it: Anthropic's on `/v1/messages` (its `error.type`
        values are OpenAI's names for the same statuses), OpenAI's everywhere else."""
        body = self.openai_body()
        return {"type": "error", **body} if path == ANTHROPIC_PATH else body

    def body(self, request_id: str) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "requestId": request_id}
        if self.details is not None:
            err["details"] = self.details
        err.update(self.extra)
        return {"error": err}

    def json_bytes(self, request_id: str) -> bytes:
        return orjson.dumps(self.body(request_id))


def error_json(exc: BridgeError, request_id: str) -> bytes:
    """A domain error as the error body (what an SSE `error` event carries)."""
    return ApiError.of(exc).json_bytes(request_id)


def openai_error_json(exc: BridgeError) -> bytes:
    """A domain error in OpenAI's shape (a `/v1` stream's error event)."""
    return orjson.dumps(ApiError.of(exc, passthrough=True).openai_body())


def anthropic_error_json(exc: BridgeError) -> bytes:
    """A domain error as Anthropic's stream `error` event data: `{"type": "error", "error": {"type", "message"}}`
    (OpenAI's fields kept beside them)."""
    return orjson.dumps(ApiError.of(exc, passthrough=True).passthrough_body(ANTHROPIC_PATH))


def response_failed_json(exc: BridgeError, started: Any, sequence: Any, model: str) -> bytes:
    """A Responses API stream's failure as that API's own last event, `response.failed` (openai-python's
    `ResponseFailedEvent`): the response begun (or a stand-in) with `status: "failed"` and `error: {code,
    message}`, `code` one of `ResponseError`'s (`rate_limit_exceeded`, else `server_error`). The openai SDKs, the
    AI SDK and Codex read it as the response's failure; an untyped `{"error": …}` line they do not."""
    api = ApiError.of(exc, passthrough=True)
    response: dict[str, Any] = dict(started) if isinstance(started, dict) else {}
    response.setdefault("id", "resp_failed")
    response.setdefault("object", "response")
    response.setdefault("created_at", 0)
    response.setdefault("model", model)
    response.setdefault("output", [])
    response.setdefault("parallel_tool_calls", True)
    response.setdefault("tool_choice", "auto")
    response.setdefault("tools", [])
    upstream_code = (api.upstream or {}).get("code")  # an upstream `response.failed`'s own code is kept
    code = (
        upstream_code
        if isinstance(upstream_code, str)
        else "rate_limit_exceeded"
        if api.status == 429
        else "server_error"
    )
    response.update(
        status="failed",
        error={"code": code, "message": api.openai_body()["error"]["message"]},
        incomplete_details=None,
        usage=None,
    )
    number = sequence + 1 if isinstance(sequence, int) else 0
    return orjson.dumps({"type": "response.failed", "sequence_number": number, "response": response})


def is_passthrough(path: str) -> bool:
    """The `/v1` surface speaks the gateway's (OpenAI's) error shape; everything else ours."""
    return path.startswith("/v1/") or path == "/v1"


ANTHROPIC_PATH = "/v1/messages"  # Anthropic's Messages API: its clients read `{"type": "error", "error": {…}}`


def _seconds(value: float | str) -> str:
    if isinstance(value, str):
        return value  # an upstream's own Retry-After, as it came
    return str(int(value)) if float(value).is_integer() else str(value)
