"""Admin routes (behind ADMIN_API_KEY): create, list, change and revoke API keys; see and delete any key's
triggers, schedules and profiles (a revoked key's owner can no longer reach them); teams; the audit log; the
console's login check."""

from __future__ import annotations

import datetime as dt
import re

from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.audit.models import AuditPage, AuditRecord
from kilo_bridge.audit.store import MAX_PAGE, AuditFilter, iso_ms
from kilo_bridge.errors import invalid
from kilo_bridge.keys.models import KeyChange, KeyCreate, KeyCreated, KeyList, KeyView, TeamList, TeamSet, TeamView
from kilo_bridge.keys.names import NAME
from kilo_bridge.keys.store import TEAM_NAME, KeyStore
from kilo_bridge.keys.teams import TeamStore
from kilo_bridge.web.audit import audit_log
from kilo_bridge.web.models import KeyHoldings
from kilo_bridge.web.routes.profiles import _name as profile_name
from kilo_bridge.web.routes.schedules import _id as schedule_id
from kilo_bridge.web.routes.schedules import _view as schedule_view
from kilo_bridge.web.routes.triggers import _id as trigger_id
from kilo_bridge.web.routes.triggers import _view as trigger_view
from kilo_bridge.web.routing import Api, api_base, services

router = Api()
_CURSOR_PATTERN = r"^[0-9]{1,19}-[0-9]{1,19}$"  # a stream id (each part under 2^64)
_CURSOR = re.compile(_CURSOR_PATTERN)


def _keys(request: Request) -> KeyStore:
    svc = services(request)
    return KeyStore(svc.store, svc.ledger.clock)


@router.route(
    "POST",
    "/api/kilo/admin/keys",
    summary="Create an API key (the secret is shown once)",
    tags=("admin",),
    body=KeyCreate,
    response=KeyCreated,
    status=201,
    auth="admin",
    errors=(503,),
    audit="key.create",
)
async def create_key(request: Request, body: KeyCreate) -> KeyCreated:
    secret, info = await _keys(request).create(
        body.name,
        budget_usd=body.budget_usd,
        budget_period=body.budget_period,
        models=body.models,
        rpm=body.rpm,
        tpm=body.tpm,
        max_jobs=body.max_jobs,
        team=body.team,
    )
    return KeyCreated(key=secret, **info.model_dump())


@router.route(
    "GET",
    "/api/kilo/admin/keys",
    summary="List API keys with their usage",
    tags=("admin",),
    response=KeyList,
    auth="admin",
    errors=(503,),
)
async def list_keys(request: Request) -> KeyList:
    return KeyList(keys=await _keys(request).list())


@router.route(
    "PATCH",
    "/api/kilo/admin/keys/{key_id}",
    summary="Change an API key's budget, period, models or limits (only the fields sent; null clears one)",
    tags=("admin",),
    body=KeyChange,
    response=KeyView,
    auth="admin",
    errors=(404, 503),
    audit="key.update",
)
async def change_key(request: Request, body: KeyChange) -> KeyView:
    return await _keys(request).update(request.path_params["key_id"], body.model_dump(exclude_unset=True))


@router.route(
    "DELETE",
    "/api/kilo/admin/keys/{key_id}",
    summary="Revoke an API key (effective at once)",
    tags=("admin",),
    response=KeyView,
    auth="admin",
    errors=(404, 503),
    audit="key.revoke",
)
async def revoke_key(request: Request) -> KeyView:
    return await services(request).revoke_key(request.path_params["key_id"])


async def _owner(request: Request) -> str:
    """The digest of the key the path names, revoked or not (404: no such key)."""
    return await _keys(request).digest_for(request.path_params["key_id"])


def _teams(request: Request) -> TeamStore:
    svc = services(request)
    return TeamStore(svc.store, svc.ledger.clock)


@router.route(
    "PUT",
    "/api/kilo/admin/teams/{name}",
    summary="Set a team's budget and period (its keys name it in `team`; the budget caps their spend together)",
    tags=("admin",),
    body=TeamSet,
    response=TeamView,
    auth="admin",
    errors=(422, 503),
    audit="team.update",
    path_params={"name": {"type": "string", "pattern": NAME}},
)
async def set_team(request: Request, body: TeamSet) -> TeamView:
    name = request.path_params["name"]
    if not TEAM_NAME.fullmatch(name):
        raise invalid("name", "1-64 letters, digits, '-' or '_'.")
    return await _teams(request).set(name, body.budget_usd, body.budget_period)


@router.route(
    "GET",
    "/api/kilo/admin/teams",
    summary="Teams: budget, period, spend, their keys",
    tags=("admin",),
    response=TeamList,
    auth="admin",
    errors=(503,),
)
async def list_teams(request: Request) -> TeamList:
    return TeamList(teams=await _teams(request).list())


@router.route(
    "POST",
    "/api/kilo/admin/login",
    summary="Check the admin key (the console's login); recorded in the audit log, a refused one too",
    tags=("admin",),
    status=204,
    auth="admin",
    errors=(401, 404, 503),
    audit="admin.login",
)
async def admin_login(request: Request) -> Response:
    return Response(status_code=204)


def _ms(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        # RFC 3339 (the document's `date-time`) lets `T` and `Z` be lower case.
        return int(dt.datetime.fromisoformat(raw.upper().replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise invalid(name, "an ISO 8601 time, e.g. 2026-03-01T00:00:00Z") from None


@router.route(
    "GET",
    "/api/kilo/admin/audit",
    summary="The audit log: administrative changes, newest first (filterable, paginated)",
    tags=("admin",),
    response=AuditPage,
    auth="admin",
    errors=(401, 422, 503),
    query={
        "action": ("exact (`key.create`) or a prefix ending in `.` (`key.`)", {"type": "string"}),
        "actor": ("`admin`, `key:<id>`, `open` or `cli`", {"type": "string"}),
        "target": ("a key id, profile name, trigger or schedule id", {"type": "string"}),
        "since": ("RFC 3339, inclusive", {"type": "string", "format": "date-time"}),
        "until": ("RFC 3339, inclusive", {"type": "string", "format": "date-time"}),
        "limit": ("default 50", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
        "cursor": ("`nextCursor` of the previous page", {"type": "string", "pattern": _CURSOR_PATTERN}),
    },
)
async def audit(request: Request) -> AuditPage:
    q = request.query_params
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        raise invalid("limit", f"a number from 1 to {MAX_PAGE}") from None
    if not 1 <= limit <= MAX_PAGE:
        raise invalid("limit", f"a number from 1 to {MAX_PAGE}")
    cursor = q.get("cursor")
    if cursor is not None and not _CURSOR.fullmatch(cursor):
        raise invalid("cursor", "the nextCursor of a previous page")
    where = AuditFilter(q.get("action"), q.get("actor"), q.get("target"), _ms(request, "since"), _ms(request, "until"))
    rows, next_cursor = await audit_log(request).read(where, limit, cursor)
    return AuditPage(
        records=[
            AuditRecord(
                id=entry_id,
                at=iso_ms(int(entry_id.split("-", 1)[0])),
                actor=raw.get("actor", ""),
                action=raw.get("action", ""),
                target=raw.get("target", ""),
                fields=[f for f in raw.get("fields", "").split(",") if f],
                ip=raw.get("ip", ""),
                user_agent=raw.get("user_agent", ""),
                request_id=raw.get("request_id", ""),
                outcome=raw.get("outcome", "ok"),
            )
            for entry_id, raw in rows
        ],
        next_cursor=next_cursor,
    )


@router.route(
    "GET",
    "/api/kilo/admin/keys/{key_id}/holdings",
    summary="A key's triggers, schedules and profiles",
    tags=("admin",),
    response=KeyHoldings,
    auth="admin",
    errors=(404, 503),
    description="Revoked keys included: their schedules show paused, their triggers start nothing.",
)
async def key_holdings(request: Request) -> KeyHoldings:
    svc, owner, base = services(request), await _owner(request), api_base(request)
    return KeyHoldings(
        triggers=[trigger_view(t, base) for t in await svc.triggers.all(owner)],
        schedules=[schedule_view(s) for s in await svc.schedules.all(owner)],
        profiles=await svc.profiles.list(owner),
    )


@router.route(
    "DELETE",
    "/api/kilo/admin/keys/{key_id}/triggers/{id}",
    summary="Delete any key's trigger",
    tags=("admin",),
    status=204,
    auth="admin",
    errors=(404, 503),
    audit="trigger.delete",
)
async def admin_delete_trigger(request: Request) -> Response:
    await services(request).triggers.delete(await _owner(request), trigger_id(request))
    return Response(status_code=204)


@router.route(
    "DELETE",
    "/api/kilo/admin/keys/{key_id}/schedules/{id}",
    summary="Delete any key's schedule",
    tags=("admin",),
    status=204,
    auth="admin",
    errors=(404, 503),
    audit="schedule.delete",
)
async def admin_delete_schedule(request: Request) -> Response:
    await services(request).schedules.delete(await _owner(request), schedule_id(request))
    return Response(status_code=204)


@router.route(
    "DELETE",
    "/api/kilo/admin/keys/{key_id}/profiles/{name}",
    summary="Delete any key's profile",
    tags=("admin",),
    status=204,
    auth="admin",
    errors=(404, 503),
    audit="profile.delete",
)
async def admin_delete_profile(request: Request) -> Response:
    await services(request).profiles.delete(await _owner(request), profile_name(request))
    return Response(status_code=204)
