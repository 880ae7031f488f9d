"""Webhook triggers: a key manages its triggers; a sender calls a trigger's URL, signed, to start a run."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.platform.clock import iso
from kilo_bridge.triggers.models import (
    TRIGGER_ID,
    Delivery,
    DeliveryList,
    TriggerAccepted,
    TriggerCreate,
    TriggerCreated,
    TriggerList,
    TriggerView,
)
from kilo_bridge.triggers.service import TriggerBodyTooLarge, TriggerNotFound, TriggerService
from kilo_bridge.triggers.store import StoredTrigger
from kilo_bridge.web.routes.jobs import caller, job_url
from kilo_bridge.web.routing import Api, api_base, json_response, request_id, services

router = Api(path_params={"id": {"type": "string", "pattern": TRIGGER_ID}})
TRIGGER_PATH = "/api/kilo/triggers/{id}"
_ID = re.compile(TRIGGER_ID)


def triggers(request: Request) -> TriggerService:
    return services(request).triggers


def _id(request: Request) -> str:
    trigger_id: str = request.path_params["id"]
    if not _ID.fullmatch(trigger_id):
        raise TriggerNotFound()  # no trigger could have this id
    return trigger_id


def _view(t: StoredTrigger, base: str) -> TriggerView:
    return TriggerView(
        id=t.id,
        name=t.name,
        url=base + TRIGGER_PATH.format(id=t.id),
        agent=t.agent,
        repo_url=t.repo_url,
        prompt_template=t.template,
        profile=t.profile,
        max_cost_usd=t.max_cost_usd,
        base_branch=t.base_branch,
        dry_run=t.dry_run,
        created_at=iso(t.created_ms) or "",
    )


@router.route(
    "POST",
    "/api/kilo/triggers",
    summary="Create a webhook trigger (a signed URL that starts a run)",
    tags=("triggers",),
    body=TriggerCreate,
    response=TriggerCreated,
    status=201,
    errors=(401, 409, 422, 503),
    description="Answers with the trigger's URL and its signing secret, shown this once (it is sealed at rest "
    "and never returned again). Each run is this key's: its budget and maxJobs apply.",
    audit="trigger.create",
)
async def create_trigger(request: Request, body: TriggerCreate) -> TriggerCreated:
    created = await triggers(request).create(caller(request), body)
    view = _view(created.trigger, api_base(request))
    return TriggerCreated(**view.model_dump(), secret=created.secret)


@router.route(
    "GET", "/api/kilo/triggers", summary="This key's triggers", tags=("triggers",), response=TriggerList, errors=(503,)
)
async def list_triggers(request: Request) -> TriggerList:
    base = api_base(request)
    return TriggerList(triggers=[_view(t, base) for t in await triggers(request).all(caller(request))])


@router.route("GET", TRIGGER_PATH, summary="A trigger", tags=("triggers",), response=TriggerView, errors=(404, 503))
async def get_trigger(request: Request) -> TriggerView:
    return _view(await triggers(request).get(caller(request), _id(request)), api_base(request))


@router.route(
    "GET",
    TRIGGER_PATH + "/deliveries",
    summary="A trigger's last deliveries and the jobs they started",
    tags=("triggers",),
    response=DeliveryList,
    errors=(404, 503),
)
async def trigger_deliveries(request: Request) -> DeliveryList:
    base = api_base(request)
    seen = await triggers(request).deliveries(caller(request), _id(request))
    out = []
    for d in seen:
        job_id = d.entry.get("jobId")
        out.append(
            Delivery(
                at=d.entry.get("at", ""),
                outcome=d.entry.get("outcome", ""),
                code=d.entry.get("code"),
                job_id=job_id,
                job_url=job_url(base, job_id) if job_id else None,
                job_status=d.job_status,
                request_id=d.entry.get("requestId", ""),
            )
        )
    return DeliveryList(deliveries=out)


@router.route(
    "POST",
    TRIGGER_PATH + "/rotate",
    summary="Rotate a trigger's signing secret",
    tags=("triggers",),
    response=TriggerCreated,
    errors=(404, 503),
    description="Answers with a new signing secret, shown this once; from now on only it verifies a call (a "
    "sender still signing with the old one is refused, 401). The URL stays the same.",
    audit="trigger.rotate",
)
async def rotate_trigger(request: Request) -> TriggerCreated:
    rotated = await triggers(request).rotate(caller(request), _id(request))
    view = _view(rotated.trigger, api_base(request))
    return TriggerCreated(**view.model_dump(), secret=rotated.secret)


@router.route(
    "DELETE",
    TRIGGER_PATH,
    summary="Delete a trigger",
    tags=("triggers",),
    status=204,
    errors=(404, 503),
    audit="trigger.delete",
)
async def delete_trigger(request: Request) -> Response:
    await triggers(request).delete(caller(request), _id(request))
    return Response(status_code=204)


async def _capped_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise TriggerBodyTooLarge(f"The body exceeds {limit} bytes.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TriggerBodyTooLarge(f"The body exceeds {limit} bytes.")
    return body


@router.route(
    "POST",
    TRIGGER_PATH,
    summary="Call a trigger (signed): starts its run",
    tags=("triggers",),
    auth="public",
    response=TriggerAccepted,
    status=202,
    errors=(400, 401, 404, 409, 413, 422, 429, 503),
    headers={
        "X-Kilo-Timestamp": ("Unix seconds; refused when more than 5 minutes from now.", {"type": "string"}),
        "X-Kilo-Signature": (
            "`sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` with the trigger's secret.",
            {"type": "string"},
        ),
    },
    description="Public (the URL and its signature are the credentials). The JSON body fills the trigger's "
    "prompt template. Refused, with nothing started: a wrong or missing signature or a stale timestamp (401), "
    "a replayed call (409), a body over TRIGGER_MAX_BODY_BYTES (413), more than TRIGGER_RATE_PER_MINUTE calls "
    "a minute (429). The run is the trigger owner's: its budget and maxJobs apply.",
)
async def call_trigger(request: Request) -> Response:
    svc = triggers(request)
    found = await svc.find(_id(request))
    body = await _capped_body(request, svc.settings.trigger_max_body_bytes)
    submitted = await svc.call(
        found,
        body,
        request.headers.get("x-kilo-timestamp"),
        request.headers.get("x-kilo-signature"),
        request_id(request),
    )
    url = job_url(api_base(request), submitted.job_id)
    accepted = TriggerAccepted(job_id=submitted.job_id, status=submitted.status, status_url=url)
    return json_response(accepted, 202, headers={"Location": url})
