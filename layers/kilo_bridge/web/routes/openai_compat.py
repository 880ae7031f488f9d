"""OpenAI-compatible passthrough: point the `openai` SDK (or LiteLLM, LangChain…) at `/v1`.

Bodies go to the gateway as sent (unknown fields included); the same admission and accounting as
`/api/kilo/generate` apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.generation.models import ChatCompletionRequest, OpenAIModelList
from kilo_bridge.generation.service import Chunks, Done, Failed
from kilo_bridge.platform.security import MAX_JSON_DEPTH, json_depth_exceeds
from kilo_bridge.web.auth import caller_digest
from kilo_bridge.web.errors import ApiError, openai_error_json
from kilo_bridge.web.routes.generation import GATEWAY_ERRORS
from kilo_bridge.web.routing import Api, services
from kilo_bridge.web.sse import Item, sse_response

router = Api()


@router.route(
    "POST",
    "/v1/chat/completions",
    summary="OpenAI-compatible chat completions (plain or streamed)",
    tags=("openai",),
    body=ChatCompletionRequest,
    errors=GATEWAY_ERRORS,
    auth="admission",
    description="The OpenAI wire format, relayed to the Kilo Gateway. With `stream: true` the answer is "
    'OpenAI\'s `data: {chunk}` events ending in `data: [DONE]`; a failure mid-stream is a `data: {"error"…}` event.',
)
async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
    svc = services(request)
    payload = body.model_dump(exclude_none=True)
    if json_depth_exceeds(payload):  # free-form fields (tools, extras) are relayed as sent: bound them
        raise ApiError(422, "invalid_request", f"The body nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        orjson.dumps(payload)  # what the gateway client will send: refuse now what it cannot encode
    except orjson.JSONEncodeError:
        raise ApiError(422, "invalid_request", "The body cannot be relayed: integers must fit in 64 bits.") from None
    if len(orjson.dumps(payload["messages"])) > svc.settings.max_prompt_chars * 2:
        raise ApiError(413, "prompt_too_long", "The messages are too long.")
    key = caller_digest(request)
    if not body.stream:
        answer, _cost, record = await svc.generation.complete(payload, key, retries=False)
        return Response(orjson.dumps(answer), media_type="application/json", background=BackgroundTask(record))

    wants_usage = bool((body.stream_options or {}).get("include_usage"))
    stream = await svc.generation.open_stream(payload, key, retries=False)

    events = svc.generation.relay(stream)

    async def frames() -> AsyncIterator[Item]:
        try:
            async for event in events:
                if isinstance(event, Chunks):
                    # We always ask the upstream for usage (accounting); a client that did not ask does not get it.
                    out = [
                        {"data": raw.decode()}
                        for raw, chunk in event.items
                        if wants_usage or chunk.get("choices") or not chunk.get("usage")
                    ]
                    if out:
                        yield out
                elif isinstance(event, Done):
                    yield {"data": "[DONE]"}
                elif isinstance(event, Failed):
                    yield {"data": openai_error_json(event.error).decode()}
        finally:
            await events.aclose()  # a client that hung up: the upstream is dropped and its usage recorded now

    return sse_response(frames(), svc.settings.sse_keepalive_s)


@router.route(
    "GET",
    "/v1/models",
    summary="OpenAI-compatible model list (with Kilo prices)",
    tags=("openai",),
    response=OpenAIModelList,
    errors=(502,),
)
async def list_models(request: Request) -> Response:
    payload = await services(request).gateway.list_models()
    return Response(orjson.dumps({"object": "list", "data": payload["data"]}), media_type="application/json")
