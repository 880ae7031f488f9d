"""One error shape everywhere, `{"error": {"code", "message", "requestId", ...}}`, and the one table that
turns a domain error's code into an HTTP status. Nothing below `web/` knows a status code."""

from __future__ import annotations

from typing import Any

import orjson

from kilo_bridge.errors import BridgeError

# code → status. A code missing here is a 500: every domain error the service raises is listed.
STATUS_BY_CODE: dict[str, int] = {
    # the request itself
    "bad_request": 400,
    "invalid_json": 400,
    "upstream_bad_request": 400,
    "unauthorized": 401,
    "budget_exceeded": 402,
    "credits_exhausted": 402,
    "forbidden": 403,
    "model_not_allowed": 403,
    "not_found": 404,
    "model_not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "payload_too_large": 413,
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
    "gateway_auth_failed": 502,
    "upstream_error": 502,
    "upstream_unreachable": 502,
    "upstream_malformed": 502,
    "upstream_stream_broken": 502,
    "unavailable": 503,
    "not_configured": 503,
    "store_unavailable": 503,
    "queue_unavailable": 503,
    "upstream_unavailable": 503,
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

    @classmethod
    def of(cls, exc: BridgeError) -> ApiError:
        """The HTTP face of a domain error."""
        status = STATUS_BY_CODE.get(exc.code, 500)
        headers: dict[str, str] = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = _seconds(exc.retry_after)
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return cls(status, exc.code, exc.message, headers=headers, details=exc.details, extra=exc.extra)

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


def _seconds(value: float | str) -> str:
    if isinstance(value, str):
        return value  # an upstream's own Retry-After, as it came
    return str(int(value)) if float(value).is_integer() else str(value)
