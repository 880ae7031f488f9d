"""What can go wrong with the Kilo Gateway, as domain errors (web/errors.py gives each code its status)."""

from __future__ import annotations

from kilo_bridge.errors import BridgeError, NotConfigured


class GatewayError(BridgeError, code="upstream_error"):
    """The gateway refused, failed or could not be reached; `code` says which (e.g. `upstream_timeout`)."""


class GatewayNotConfigured(NotConfigured):
    """No KILO_API_KEY: nothing can be sent to the gateway."""

    def __init__(self) -> None:
        super().__init__("KILO_API_KEY is not configured on this server; set it (a Kilo Gateway key) and restart.")
