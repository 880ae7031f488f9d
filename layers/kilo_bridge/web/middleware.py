"""Per-request context as plain ASGI (cheaper than BaseHTTPMiddleware): request id, body cap, headers; and the
per-process cap on requests in flight."""

from __future__ import annotations

import hmac
import resource
import uuid

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kilo_bridge.errors import Overloaded
from kilo_bridge.platform.security import clean_request_id
from kilo_bridge.web.errors import ApiError, is_passthrough

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def _lambda_request_id(scope: Scope) -> str | None:
    """Under Mangum the API Gateway request id is the correlation id."""
    event = scope.get("aws.event")
    if isinstance(event, dict):
        ctx = event.get("requestContext")
        if isinstance(ctx, dict) and isinstance(ctx.get("requestId"), str):
            return clean_request_id(ctx["requestId"])
    return None


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"The request body exceeds {limit} bytes.")


class RequestContext:
    def __init__(
        self, app: ASGIApp, max_body_bytes: int, v1_max_body_bytes: int | None = None, max_in_flight: int | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.v1_max_body_bytes = v1_max_body_bytes or max_body_bytes
        self.max_in_flight = max_in_flight or default_max_in_flight()
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = clean_request_id(value.decode("latin-1"))
            elif name == b"content-length":
                length = value
        rid = rid or _lambda_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        rid_header = (b"x-request-id", rid.encode())
        v1 = is_passthrough(scope["path"])
        limit = self.v1_max_body_bytes if v1 else self.max_body_bytes

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.append(rid_header)
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        if self.in_flight >= self.max_in_flight:
            # Past what this process can hold (each stream holds two sockets): a fast 503 the client may retry,
            # not a 500 or a misleading 502 once file descriptors run out.
            await _send_error(ApiError.of(Overloaded()), rid, send_with_headers, scope["path"] if v1 else None)
            return

        if length is not None and (not length.isdigit() or int(length) > limit):
            await _send_error(BodyTooLarge(limit), rid, send_with_headers, scope["path"] if v1 else None)
            return

        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        self.in_flight += 1
        try:
            await self.app(scope, capped_receive, send_with_headers)
        finally:
            self.in_flight -= 1


def default_max_in_flight() -> int:
    """MAX_CONCURRENT_REQUESTS when unset: what the open-file limit allows, a third of it (a stream holds its
    client's socket and the upstream's, plus Redis, logs and imports), at least 16."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(16, (soft - 64) // 3)


class OnlyKey:
    """One key opens this app (a job's model endpoint: its own key, never another the agent might hold)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            presented = b""
            for name, value in scope["headers"]:
                if name == b"authorization" and value[:7].lower() == b"bearer ":
                    presented = value[7:].strip()
            if not hmac.compare_digest(presented, self.key):
                error = ApiError(401, "unauthorized", "Only the job's own key opens its model endpoint.")
                path = scope["path"] if is_passthrough(scope["path"]) else None
                await _send_error(error, scope.get("state", {}).get("request_id", ""), send, path)
                return
        await self.app(scope, receive, send)


async def _send_error(error: ApiError, rid: str, send: Send, passthrough_path: str | None = None) -> None:
    """`passthrough_path`: a `/v1` route's path, whose API's error shape the body takes."""
    body = orjson.dumps(error.passthrough_body(passthrough_path)) if passthrough_path else error.json_bytes(rid)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
