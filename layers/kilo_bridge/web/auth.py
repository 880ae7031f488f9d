"""Who is calling: the API key presented (Authorization: Bearer or x-api-key) and admin checks.

Generation routes check the key inside their admission Lua call (one round trip for key, limits and
budget); other routes look the key up here.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from kilo_bridge.keys.store import JOB_KEY_PREFIX, KEY_PREFIX, InvalidKey, KeyStore, digest
from kilo_bridge.web.errors import ApiError

# The only routes a job's key opens: its agent's model calls.
JOB_KEY_PATHS = "/v1/"


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


def caller_digest(request: Request) -> str | None:
    """The presented key's digest, or None on an open server called without one; 401 when a key is
    required and missing. Validity is checked by the caller's next Redis call."""
    state = request.scope["state"]
    if "key_digest" not in state:  # asked twice per request (the route's guard, then the handler)
        state["key_digest"] = _caller_digest(request)
    digest_: str | None = state["key_digest"]
    return digest_


def _caller_digest(request: Request) -> str | None:
    key = presented_key(request)
    if key is not None and key.startswith(JOB_KEY_PREFIX):
        # Honoured even on an open server (the job's spend is metered on it), and only for model calls.
        if not request.url.path.startswith(JOB_KEY_PATHS) or len(key) > 256:
            raise InvalidKey()
        return digest(key)
    required = request.app.state.services.settings.auth_is_required
    if key is not None and not required and not key.startswith(KEY_PREFIX):
        key = None  # an open server ignores foreign keys (the OpenAI SDK always sends one)
    if key is None:
        if required:
            raise InvalidKey()
        return None
    if len(key) > 256:
        raise InvalidKey()
    return digest(key)


async def require_key(request: Request) -> str | None:
    """For routes without an admission call: look the key up (one round trip) when one is presented."""
    key_digest = caller_digest(request)
    if key_digest is not None and not await KeyStore(request.app.state.services.store).is_active(key_digest):
        raise InvalidKey()
    request.scope["state"]["caller"] = key_digest
    return key_digest


def require_admin(request: Request) -> None:
    expected = request.app.state.services.settings.admin_key
    if not expected:
        # A feature turned off is not an outage: the routes do not exist until ADMIN_API_KEY is set.
        raise ApiError(404, "not_found", "No such route (the admin API is off: ADMIN_API_KEY is not set).")
    key = presented_key(request)
    if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
        raise ApiError(
            401, "unauthorized", "The admin key is required for this route.", headers={"WWW-Authenticate": "Bearer"}
        )
