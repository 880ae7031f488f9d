"""Health, the OpenAPI document and a docs page."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from kilo_bridge import __version__
from kilo_bridge.config import Settings
from kilo_bridge.web.models import Health
from kilo_bridge.web.routing import Api, services

DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Kilo Bridge API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "openapi.json", dom_id: "#ui"});</script>
</body></html>"""

router = Api()


@router.route(
    "GET",
    "/healthz",
    summary="Health: Redis reachability and gateway configuration",
    tags=("meta",),
    response=Health,
    errors=(503,),
    auth="public",
)
async def healthz(request: Request) -> Response:
    svc = services(request)
    redis_ok = await svc.store.ping()
    health = Health(
        status="ok" if redis_ok and svc.gateway.configured else "degraded",
        version=__version__,
        redis="ok" if redis_ok else "unreachable",
        gateway_configured=svc.gateway.configured,
        gateway_base=svc.settings.kilo_gateway_base,
        admin_api=bool(svc.settings.admin_key),
    )
    return Response(health.model_dump_json(by_alias=True), 200 if redis_ok else 503, media_type="application/json")


def server_rules(settings: Settings) -> bytes:
    """What this server's settings add to the document's request schemas (the same catalogue and settings the
    checks read): its agents and what each takes, its repository hosts, its longest job timeout and prompt."""
    from kilo_bridge.generation.service import prompt_rules
    from kilo_bridge.jobs.catalogue import load_catalog, request_rules
    from kilo_bridge.jobs.policy import field_rules

    agent, per_agent = request_rules(load_catalog(settings.agents_path))
    fields = {"agent": agent, **field_rules(settings), **prompt_rules(settings)}
    return orjson.dumps({"fields": fields, "bodies": {"RunAgentRequest": per_agent}})


@lru_cache(maxsize=4)
def openapi_document(rules: bytes = b"{}") -> bytes:
    from kilo_bridge.web.openapi import build_openapi  # only this route pays for schema generation
    from kilo_bridge.web.routes import api  # the whole table, this router included

    parsed = orjson.loads(rules)
    return orjson.dumps(
        build_openapi(api.endpoints, server_rules=parsed.get("fields"), body_rules=parsed.get("bodies"))
    )


def openapi_dict(settings: Settings | None = None) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(
        openapi_document(server_rules(settings)) if settings else openapi_document()
    )
    return document


@router.route("GET", "/api/kilo/openapi.json", summary="This API's OpenAPI 3.1 document", tags=("meta",), auth="public")
async def openapi_json(request: Request) -> Response:
    return Response(openapi_document(server_rules(services(request).settings)), media_type="application/json")


@router.route("GET", "/api/kilo/docs", summary="Interactive API docs", tags=("meta",), auth="public")
async def docs(_request: Request) -> Response:
    return HTMLResponse(DOCS_HTML, headers={"Cache-Control": "no-store"})
