"""`POST /api/kilo/generate` and `POST /api/kilo/generate-stream`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.generation.models import GenerateRequest, GenerateResponse, StreamDelta, StreamDone
from kilo_bridge.generation.service import Deltas, Done, Failed, stream_done
from kilo_bridge.web.auth import caller_digest
from kilo_bridge.web.errors import error_json
from kilo_bridge.web.models import ErrorResponse
from kilo_bridge.web.routing import Api, json_response, request_id, services
from kilo_bridge.web.sse import EventStream, Item

router = Api()
GATEWAY_ERRORS = (401, 402, 403, 429, 502, 503, 504)


@router.route(
    "POST",
    "/api/kilo/generate",
    summary="Generate text",
    tags=("generation",),
    body=GenerateRequest,
    response=GenerateResponse,
    errors=GATEWAY_ERRORS,
    auth="admission",
)
async def generate(request: Request, body: GenerateRequest) -> Response:
    key = caller_digest(request)
    answer, record = await services(request).generation.generate(body, request_id(request), key)
    return json_response(answer, background=record)


@router.route(
    "POST",
    "/api/kilo/generate-stream",
    summary="Generate text, streamed as server-sent events",
    tags=("generation",),
    body=GenerateRequest,
    errors=GATEWAY_ERRORS,
    events={"delta": StreamDelta, "done": StreamDone, "error": ErrorResponse},
    auth="admission",
    description="A `delta` event per upstream chunk as it arrives, then `done` with usage; an upstream "
    "failure mid-stream ends with an `error` event. Errors before the first event are plain JSON errors.",
)
async def generate_stream(request: Request, body: GenerateRequest) -> Response:
    svc = services(request)
    rid = request_id(request)
    stream, events = await svc.generation.stream_events(body, caller_digest(request))

    async def frames() -> AsyncIterator[Item]:
        try:
            async for event in events:
                if isinstance(event, Deltas):
                    yield [_delta(text) for text in event.texts]
                elif isinstance(event, Done):
                    yield {"event": "done", "data": stream_done(stream, event, rid).model_dump_json(by_alias=True)}
                elif isinstance(event, Failed):
                    yield {"event": "error", "data": error_json(event.error, rid).decode()}
        finally:
            await events.aclose()  # a client that hung up: the upstream is dropped and its usage recorded now

    return EventStream(
        frames(),
        svc.settings.sse_keepalive_s,
        background=BackgroundTask(stream.write_usage),
        drain_s=svc.settings.stream_drain_s,  # a client that hangs up: read on to the usage the call is billed by
    )


def _delta(text: str) -> Mapping[str, str]:
    return {"event": "delta", "data": orjson.dumps({"text": text}).decode()}
