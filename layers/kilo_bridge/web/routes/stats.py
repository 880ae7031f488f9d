"""Credits, usage stats and the shields.io badge."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.platform.redis import StoreUnavailable
from kilo_bridge.usage.models import AgentRunCounts, Badge, Counters, Credits, Stats
from kilo_bridge.web.routing import Api, services

router = Api()


@router.route(
    "GET",
    "/api/kilo/credits",
    summary="Last-seen credit balance",
    tags=("credits",),
    response=Credits,
    errors=(503,),
    query={"refresh": ("`true` to read the balance now", {"type": "string"})},
    description="The balance last read from Kilo and when, minus the spend counted here since. "
    "A stale figure is refreshed on read (best effort); a failed read keeps the old one and says why.",
)
async def credits(request: Request) -> Credits:
    svc = services(request)
    if request.query_params.get("refresh") == "true":
        return await svc.credits.refresh()
    return await svc.credits.view()


@router.route(
    "GET", "/api/kilo/stats", summary="Usage stats and credits", tags=("credits",), response=Stats, errors=(503,)
)
async def stats(request: Request) -> Stats:
    svc = services(request)
    raw = await svc.ledger.stats_raw()
    caller = request.scope["state"].get("caller")
    keys = await svc.ledger.by_key(only=caller)
    return Stats(
        totals=Counters(**raw["totals"]),
        by_model={m: Counters(**c) for m, c in raw["by_model"].items()},
        by_key={name: Counters(**c) for name, c in keys.items()},
        by_team={name: Counters(**c) for name, c in (await svc.ledger.by_team(only=caller)).items()},
        by_day={d: Counters(**c) for d, c in raw["by_day"].items()},
        agent_runs=AgentRunCounts(**{k: v for k, v in raw["agent_runs"].items() if k in AgentRunCounts.model_fields}),
        credits=await svc.credits.view(refresh_if_stale=False),
    )


def _short(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + unit
    return str(n)


@router.route(
    "GET",
    "/api/kilo/stats/badge",
    summary="shields.io endpoint badge",
    tags=("credits",),
    response=Badge,
    errors=(503,),
    auth="public",
    description="Use with `https://img.shields.io/endpoint?url=<this URL>` for a live 'powered by Kilo' badge.",
)
async def badge(request: Request) -> Response:
    try:
        raw = await services(request).ledger.stats_raw(days=1)
    except StoreUnavailable:
        # Still a valid badge (an error body would show as "invalid" on shields.io), briefly cached.
        body = Badge(label="powered by Kilo", message="unavailable", color="lightgrey", isError=True, cacheSeconds=60)
        return Response(
            body.model_dump_json(exclude_none=True),
            media_type="application/json",
            headers={"Cache-Control": "public, max-age=60"},
        )
    totals = raw["totals"]
    tokens = totals["prompt_tokens"] + totals["completion_tokens"]
    message = f"{_short(totals['ok'])} generations · {_short(tokens)} tokens"
    body = Badge(label="powered by Kilo", message=message, color="blueviolet")
    return Response(
        body.model_dump_json(exclude_none=True),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )
