"""One error shape everywhere: `{"error": {"code", "message", "requestId", ...}}`."""

from __future__ import annotations

from typing import Any

import orjson


class ApiError(Exception):
    """An error the client should see, with its HTTP status and a stable machine-readable code."""

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

    def body(self, request_id: str) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "requestId": request_id}
        if self.details is not None:
            err["details"] = self.details
        err.update(self.extra)
        return {"error": err}

    def json_bytes(self, request_id: str) -> bytes:
        return orjson.dumps(self.body(request_id))


# Statuses Starlette raises itself (routing) mapped to our codes.
HTTP_CODES = {
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


def not_configured() -> ApiError:
    return ApiError(
        503,
        "not_configured",
        "KILO_API_KEY is not configured on this server; set it (a Kilo Gateway key) and restart.",
    )


def store_unavailable() -> ApiError:
    return ApiError(
        503,
        "store_unavailable",
        "The Redis store is unreachable; requests are refused until it is back so no spend goes uncounted.",
        headers={"Retry-After": "5"},
    )


def invalid_key() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "A valid API key is required (Authorization: Bearer <key> or x-api-key).",
        headers={"WWW-Authenticate": "Bearer"},
    )
