"""Admin routes (behind ADMIN_API_KEY): create, list and revoke API keys; see and delete any key's triggers,
schedules and profiles (a revoked key's owner can no longer reach them)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.keys.models import KeyCreate, KeyCreated, KeyList, KeyView
from kilo_bridge.keys.store import KeyStore
from kilo_bridge.web.models import KeyHoldings
from kilo_bridge.web.routes.profiles import _name as profile_name
from kilo_bridge.web.routes.schedules import _id as schedule_id
from kilo_bridge.web.routes.schedules import _view as schedule_view
from kilo_bridge.web.routes.triggers import _id as trigger_id
from kilo_bridge.web.routes.triggers import _view as trigger_view
from kilo_bridge.web.routing import Api, api_base, services

router = Api()


def _keys(request: Request) -> KeyStore:
    return KeyStore(services(request).store)


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
)
async def create_key(request: Request, body: KeyCreate) -> KeyCreated:
    secret, info = await _keys(request).create(
        body.name, budget_usd=body.budget_usd, rpm=body.rpm, tpm=body.tpm, max_jobs=body.max_jobs
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
    "DELETE",
    "/api/kilo/admin/keys/{key_id}",
    summary="Revoke an API key (effective at once)",
    tags=("admin",),
    response=KeyView,
    auth="admin",
    errors=(404, 503),
)
async def revoke_key(request: Request) -> KeyView:
    return await services(request).revoke_key(request.path_params["key_id"])


async def _owner(request: Request) -> str:
    """The digest of the key the path names, revoked or not (404: no such key)."""
    return await _keys(request).digest_for(request.path_params["key_id"])


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
)
async def admin_delete_profile(request: Request) -> Response:
    await services(request).profiles.delete(await _owner(request), profile_name(request))
    return Response(status_code=204)
