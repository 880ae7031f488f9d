"""GitHub App webhook deliveries: one route, verified by its signature, each delivery handled once."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kilo_bridge.github.webhook import WebhookService
from kilo_bridge.web.routes.jobs import job_url
from kilo_bridge.web.routing import Api, api_base, request_id, services

router = Api()


@router.route(
    "POST",
    "/api/kilo/github/webhook",
    summary="GitHub App webhook deliveries",
    tags=("github",),
    auth="public",
    status=202,
    errors=(401, 404, 413),
    description="Verified by `X-Hub-Signature-256` (HMAC-SHA256 of the body with GITHUB_WEBHOOK_SECRET); each "
    "`X-GitHub-Delivery` is handled once. A `/kilo <task>` comment by someone with write access starts an "
    "`apply-patch-and-pr` job (on a pull request the App opened: a follow-up of its conversation, pushed to it, "
    "or a message to its running job); a `/kilo <task>` pull request review comment starts a job on the pull "
    "request's head branch, answered in its thread; a pull request on an opted-in repository starts a `review`; "
    "anything else is answered 202 and ignored. See docs/github.md.",
)
async def github_webhook(request: Request) -> Response:
    svc = services(request)
    hooks = WebhookService(svc.store, svc.jobs)
    body = await request.body()
    hooks.verify(body, request.headers.get("x-hub-signature-256"))
    base = api_base(request)
    handled = await hooks.handle(
        request.headers.get("x-github-event", ""),
        request.headers.get("x-github-delivery", ""),
        body,
        request_id(request),
        lambda job_id: job_url(base, job_id),
    )
    out: dict[str, str] = {"outcome": handled.outcome}
    if handled.detail:
        out["detail"] = handled.detail
    if handled.job_id:
        out["jobId"] = handled.job_id
    return JSONResponse(out, status_code=202)
