"""`GET /api/kilo/me`: the calling key's own figures (any key; only its own)."""

from __future__ import annotations

from starlette.requests import Request

from kilo_bridge.keys.store import InvalidKey, KeyStore
from kilo_bridge.money import usd
from kilo_bridge.platform.clock import iso
from kilo_bridge.usage.models import Me, ModelUsage, OpenJob
from kilo_bridge.web.routing import Api, services

router = Api()


@router.route(
    "GET",
    "/api/kilo/me",
    summary="The calling key: limits, budget and its period, spend, usage by day and model, work in flight",
    tags=("credits",),
    response=Me,
    errors=(401, 503),
    description="Only the presenting key's own data. An open server called without a key has no `me`: 401.",
)
async def me(request: Request) -> Me:
    caller = request.scope["state"].get("caller")
    if caller is None:
        raise InvalidKey()
    svc = services(request)
    key = await KeyStore(svc.store, svc.ledger.clock).get(caller)
    by_day, open_calls = await svc.ledger.key_usage(caller)
    jobs = await svc.jobs.unfinished(caller)
    return Me(
        key=key,
        usage={
            day: {
                m: ModelUsage(requests=f["requests"], tokens=f["tokens"], spend_usd=usd(f["spend_nusd"]))
                for m, f in sorted(models.items())
            }
            for day, models in by_day.items()
        },
        open_calls=open_calls,
        unfinished_jobs=[
            OpenJob(id=j.id, status=j.status, agent=j.agent, created_at=iso(j.created_ms) or "") for j in jobs
        ],
    )
