"""`GET /metrics`: Prometheus text for an operator's scraper (web/prometheus.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.web.auth import require_admin
from kilo_bridge.web.errors import ApiError
from kilo_bridge.web.routing import Api, services

router = Api()


@router.route(
    "GET",
    "/metrics",
    summary="Prometheus metrics (text format), summed across the server's web processes",
    tags=("meta",),
    auth="public",
    errors=(401, 404, 503),
    description="Requests by route and status, latency histograms (end-to-end and the gateway's share), event "
    "streams open, admission refusals by reason, calls, spend and tokens by model, jobs by state, queue depth. "
    "Behind the admin key when the server requires keys; off (404) on Lambda unless PROMETHEUS_METRICS is set.",
)
async def prometheus_metrics(request: Request) -> Response:
    svc = services(request)
    if not svc.settings.prometheus_enabled:
        raise ApiError(404, "not_found", "No such route (PROMETHEUS_METRICS is off).")
    if svc.settings.auth_is_required:
        require_admin(request)
    from kilo_bridge.web.prometheus import CONTENT_TYPE, scrape

    runs = (await svc.ledger.stats_raw(days=1))["agent_runs"]
    return Response(scrape(runs, runs.get("queued", 0)), media_type=CONTENT_TYPE)
