"""`POST /api/kilo/generate` and `POST /api/kilo/generate-stream`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.auth import caller_digest
from kilo_bridge.models import ErrorResponse, GenerateRequest, GenerateResponse, StreamDelta, StreamDone
from kilo_bridge.routes import api
from kilo_bridge.routing import json_response, request_id
from kilo_bridge.services import Services

GATEWAY_ERRORS = (401, 402, 403, 429, 502, 503, 504)


def services(request: Request) -> Services:
    return request.app.state.services


@api.route(
    "POST", "/api/kilo/generate", summary="Generate text", tags=("generation",),
    body=GenerateRequest, response=GenerateResponse, errors=GATEWAY_ERRORS, auth="admission",
)
async def generate(request: Request, body: GenerateRequest) -> Response:
    key = caller_digest(request)
    answer, record = await services(request).generation.generate(body, request_id(request), key)
    return json_response(answer, background=record)


@api.route(
    "POST", "/api/kilo/generate-stream", summary="Generate text, streamed as server-sent events",
    tags=("generation",), body=GenerateRequest, errors=GATEWAY_ERRORS,
    events={"delta": StreamDelta, "done": StreamDone, "error": ErrorResponse}, auth="admission",
    description="A `delta` event per upstream chunk as it arrives, then `done` with usage; an upstream "
    "failure mid-stream ends with an `error` event. Errors before the first event are plain JSON errors.",
)
async def generate_stream(request: Request, body: GenerateRequest) -> Response:
    svc = services(request)
    events = await svc.generation.stream_events(body, request_id(request), caller_digest(request))
    return sse_response(events, svc.settings.sse_keepalive_s)


def sse_response(events: AsyncIterator[dict[str, str] | list[dict[str, str]]], keepalive_s: float) -> Response:
    from kilo_bridge.sse import EventStream

    return EventStream(events, keepalive_s)
