"""The audit log's HTTP side: who (the admin key, a key's id), from where (the client's address) and what (the
route's action, the target, the names of the fields sent) of each administrative change (audit/store.py)."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from kilo_bridge.audit.store import AuditEntry, AuditLog
from kilo_bridge.errors import BridgeError
from kilo_bridge.keys.store import key_id

log = logging.getLogger("kilo_bridge.audit")


def audit_log(request: Request) -> AuditLog:
    svc = request.app.state.services
    return AuditLog(svc.store, svc.settings.audit_retention_days, svc.ledger.clock)


def client_ip(request: Request) -> str:
    """API Gateway's source address under Mangum; the socket's peer locally (a header is not trusted)."""
    event = request.scope.get("aws.event")
    if isinstance(event, dict):
        identity = (event.get("requestContext") or {}).get("identity") or {}
        if isinstance(identity.get("sourceIp"), str):
            return str(identity["sourceIp"])
    return request.client.host if request.client else ""


def _actor(request: Request, admin: bool) -> str:
    if admin:
        return "admin"
    digest = request.scope["state"].get("caller") or request.scope["state"].get("key_digest")
    return f"key:{key_id(digest)}" if digest else "open"


def _target(request: Request, result: Any) -> str:
    if request.path_params:  # the last names the thing itself (`/admin/keys/{key_id}/triggers/{id}`: the trigger)
        return str(list(request.path_params.values())[-1])
    for name in ("id", "name"):
        value = getattr(result, name, None)
        if isinstance(value, str):
            return value
    return ""


async def record_change(
    request: Request,
    action: str,
    *,
    admin: bool,
    body: BaseModel | None = None,
    result: Any = None,
    outcome: str = "ok",
) -> None:
    """One append-only record. The change is already made: a record Redis refuses is logged (without values),
    not turned into an error for a change that happened."""
    entry = AuditEntry(
        actor=_actor(request, admin),
        action=action,
        target=_target(request, result),
        fields=tuple(sorted(body.model_fields_set)) if body is not None else (),
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent", ""),
        request_id=str(request.scope["state"].get("request_id", "")),
        outcome=outcome,
    )
    try:
        await audit_log(request).append(entry)
    except BridgeError:
        log.error("audit record lost", extra={"action": entry.action, "actor": entry.actor, "target": entry.target})
