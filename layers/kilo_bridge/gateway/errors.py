"""What can go wrong with the Kilo Gateway, as domain errors (web/errors.py gives each code its status)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kilo_bridge.errors import BridgeError, NotConfigured


class GatewayError(BridgeError, code="upstream_error"):
    """The gateway refused, failed or could not be reached; `code` says which (e.g. `upstream_timeout`).

    When the gateway answered an error, `status` is its HTTP status and `upstream` its error fields
    (`message`, `type`, `param`, `code` and Kilo's own: `error_type`, `title`, `balance`, `buyCreditsUrl`),
    secrets redacted: data for the web layer, which decides what the client sees. `headers` are the
    response headers clients act on (rate limits, the request id, `retry-after`)."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | str | None = None,
        extra: dict[str, Any] | None = None,
        status: int | None = None,
        upstream: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code, retry_after=retry_after, extra=extra)
        self.status = status
        self.upstream = upstream or {}
        self.headers = dict(headers or {})


class GatewayNotConfigured(NotConfigured):
    """No KILO_API_KEY: nothing can be sent to the gateway."""

    def __init__(self) -> None:
        super().__init__("KILO_API_KEY is not configured on this server; set it (a Kilo Gateway key) and restart.")
