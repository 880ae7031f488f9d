"""Admin routes (behind ADMIN_API_KEY): create, list and revoke API keys."""

from __future__ import annotations

from starlette.requests import Request

from kilo_bridge.keys.models import KeyChange, KeyCreate, KeyCreated, KeyList, KeyView
from kilo_bridge.keys.store import KeyStore
from kilo_bridge.web.routing import Api, services

router = Api()


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
)
async def revoke_key(request: Request) -> KeyView:
    return await _keys(request).revoke(request.path_params["key_id"])
