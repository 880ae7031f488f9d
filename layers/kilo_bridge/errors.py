"""The base of every domain exception. Feature packages raise these; none of them knows HTTP.

`code` is the stable, machine-readable name a client sees (`web/errors.py` maps it to a status in one
table); `message` is for people and never holds a secret.
"""

from __future__ import annotations

from typing import Any


class BridgeError(Exception):
    """A failure the caller should be told about. A subclass names its code: `class X(BridgeError, code="x")`."""

    code = "error"

    def __init_subclass__(cls, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | str | None = None,
        details: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        # Seconds after which trying again may succeed (rate limits, an unreachable store); an upstream's
        # own Retry-After is passed on as it came.
        self.retry_after = retry_after
        self.details = details
        self.extra = extra or {}


class InvalidInput(BridgeError, code="invalid_request"):
    """The request names something impossible; `details` says which field and why."""


def invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", details=[{"field": field, "message": message}])


class NotFound(BridgeError, code="not_found"):
    """No such thing, or not the caller's to see (another key's job is as good as absent)."""


class Conflict(BridgeError, code="conflict"):
    """The request contradicts the current state (a job already ended, a reused Idempotency-Key)."""


class Unauthorized(BridgeError, code="unauthorized"):
    """No valid credentials for what was asked."""


class NotConfigured(BridgeError, code="not_configured"):
    """The server lacks a setting this request needs."""


class Unavailable(BridgeError, code="unavailable"):
    """A dependency (Redis, the queue) is down: nothing was done, and trying later may work."""


class Overloaded(Unavailable, code="overloaded"):
    """This process has as much work as it can hold (requests in flight, file descriptors): try again shortly."""

    def __init__(self, message: str = "The server is at capacity; retry shortly.") -> None:
        super().__init__(message, retry_after=1)
