"""The guard of an open server (no API key required, the local default): it answers only what a program on
this machine asked for.

- `Host` must be a loopback name: a DNS-rebinding page (its own domain resolved to 127.0.0.1) sends its
  domain as `Host`, and is refused before it can read the job list or start a job.
- A browser request from another site is refused: `Origin` (sent on every cross-origin POST, `no-cors`
  included) must be a loopback origin or one of CORS_ORIGINS, and `Sec-Fetch-Site: cross-site` is refused.

Not applied behind API Gateway (Mangum's `aws.event` scope; a Lambda environment, the Lambda Web Adapter's
included): that host is API Gateway's own, and keys are required there by default.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from kilo_bridge.web.errors import ApiError, is_passthrough

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback_host(host: str) -> bool:
    """`localhost`, `*.localhost`, 127.0.0.0/8 or ::1 (a `Host` header or a URL's host, without the port)."""
    host = host.lower().rstrip(".")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    parts = host.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts)


def _host_of(value: str) -> str:
    if value.startswith("["):  # [::1]:5000
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class OpenServerGuard:
    def __init__(self, app: ASGIApp, origins: tuple[str, ...] = ()) -> None:
        self.app = app
        self.origins = frozenset(o.rstrip("/").lower() for o in origins)
        # The stream function runs under the Lambda Web Adapter (its exec wrapper), a plain HTTP server there.
        self.on_lambda = bool(os.getenv("AWS_LAMBDA_FUNCTION_NAME")) or (
            os.getenv("AWS_LAMBDA_EXEC_WRAPPER") == "/opt/bootstrap"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.on_lambda or "aws.event" in scope:  # API Gateway's host, not ours
            await self.app(scope, receive, send)
            return
        host = origin = site = ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"sec-fetch-site":
                site = value.decode("latin-1")
        if not is_loopback_host(_host_of(host)):
            await _refuse(
                scope,
                send,
                "This server runs without API keys and answers only on loopback host names (localhost, "
                "127.0.0.1); to serve it under another name set AUTH_REQUIRED=true and use API keys.",
            )
            return
        if (origin and not self._origin_allowed(origin)) or site.lower() == "cross-site":
            await _refuse(scope, send, "Cross-site requests are refused by a server without API keys.")
            return
        await self.app(scope, receive, send)

    def _origin_allowed(self, origin: str) -> bool:
        if origin.rstrip("/").lower() in self.origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and is_loopback_host(parts.hostname or "")


async def _refuse(scope: Scope, send: Send, message: str) -> None:
    """403, answered here (before the app: no route runs, no body is read)."""
    error = ApiError(403, "forbidden", message)
    rid = str(scope.get("state", {}).get("request_id", ""))
    path = scope["path"]
    body = orjson.dumps(error.passthrough_body(path)) if is_passthrough(path) else error.json_bytes(rid)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})
