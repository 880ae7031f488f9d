"""`/v1`: the Kilo Gateway's own surface — chat completions, responses, messages (Anthropic format),
embeddings, models — for the clients people already have (openai, anthropic, LangChain, LiteLLM, the AI SDK).

Bodies go to the gateway as sent (nulls and unknown fields included), with only what admission must set: the
model when left out (KILO_DEFAULT_MODEL), the output cap a budgeted key reserves for, and, on streamed chat,
`stream_options.include_usage` (the gateway adds it anyway). A caller's `X-KiloCode-TaskId` (Kilo's
prompt-cache key) is passed on. Answers come back as the gateway sent them, with
its rate-limit, request-id and retry-after headers; its errors keep their status and fields (web/errors.py).
The same admission, budgets and accounting as `/api/kilo/generate` apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.gateway.apis import CHAT, EMBEDDINGS, MESSAGES, RESPONSES, InferenceApi, estimate_input_tokens
from kilo_bridge.gateway.client import ANTHROPIC_REQUEST_HEADERS, FORWARDED_REQUEST_HEADERS
from kilo_bridge.generation.models import (
    ChatCompletionRequest,
    CountTokens,
    CountTokensRequest,
    EmbeddingsRequest,
    MessagesRequest,
    OpenAIModelList,
    ResponsesRequest,
)
from kilo_bridge.generation.service import Chunks, Done, Failed
from kilo_bridge.keys.store import KeyStore, model_allowed
from kilo_bridge.platform.security import MAX_JSON_DEPTH, json_depth_exceeds
from kilo_bridge.web.auth import caller_digest
from kilo_bridge.web.errors import ApiError, anthropic_error_json, openai_error_json, response_failed_json
from kilo_bridge.web.routes.generation import GATEWAY_ERRORS
from kilo_bridge.web.routing import Api, services
from kilo_bridge.web.sse import EventStream, Item, frame

router = Api()
V1_ERRORS = (*GATEWAY_ERRORS, 400, 404, 408, 409, 413, 422)
JSON = "application/json"


async def _relay(request: Request, api: InferenceApi, body: dict[str, Any], wants_usage: bool = True) -> Response:  # noqa: C901 - one relay for the four /v1 APIs, plain and streamed
    """Admit, call the gateway with `body` and relay its answer; plain or streamed as the body asks."""
    svc = services(request)
    if json_depth_exceeds(body):  # free-form fields (tools, extras) are relayed as sent: bound them
        raise ApiError(422, "invalid_request", f"The body nests deeper than {MAX_JSON_DEPTH} levels.")
    if not body.get("model"):
        body["model"] = svc.settings.kilo_default_model
    key = caller_digest(request)
    names = (*FORWARDED_REQUEST_HEADERS, *ANTHROPIC_REQUEST_HEADERS) if api is MESSAGES else FORWARDED_REQUEST_HEADERS
    forwarded = {n: v[:1000] for n in names if (v := request.headers.get(n))} or None
    # Claude Code calls `/v1/messages?beta=true`; the gateway passes a query string on to its provider.
    query = "?beta=true" if api is MESSAGES and request.query_params.get("beta") == "true" else ""
    # No retries here: every /v1 client retries on its own (README "Errors"), so ours would multiply theirs.
    if not (api.streams and body.get("stream") is True):
        answer, _cost, record = await svc.generation.complete(
            body, key, retries=False, api=api, headers=forwarded, query=query
        )
        return Response(answer.raw, media_type=JSON, headers=answer.headers, background=BackgroundTask(record))

    stream = await svc.generation.open_stream(body, key, retries=False, api=api, headers=forwarded, query=query)
    events = svc.generation.relay(stream)

    async def frames() -> AsyncIterator[Item]:
        try:
            async for event in events:
                if isinstance(event, Chunks):
                    # Chat: we always ask for usage (accounting); a client that did not ask does not get it.
                    out = b"".join(
                        frame(raw, name)
                        for raw, chunk, name in event.items
                        if wants_usage or chunk.get("choices") or not chunk.get("usage")
                    )
                    if out:
                        yield out
                elif isinstance(event, Done):
                    if api is CHAT:
                        yield {"data": "[DONE]"}
                elif isinstance(event, Failed):
                    # Each API's own failure: Anthropic's `error` event, the Responses API's `response.failed`,
                    # chat completions' `data: {"error": …}` chunk (which the openai SDKs raise).
                    if api is MESSAGES:
                        yield {"event": "error", "data": anthropic_error_json(event.error).decode()}
                    elif api is RESPONSES:
                        state = stream.state
                        failed = response_failed_json(
                            event.error, state.extra.get("response"), state.extra.get("sequence_number"), state.model
                        )
                        yield {"event": "response.failed", "data": failed.decode()}
                    else:
                        yield {"data": openai_error_json(event.error).decode()}
        finally:
            await events.aclose()  # a client that hung up: the upstream is dropped and its usage recorded now

    return EventStream(
        frames(),
        svc.settings.sse_keepalive_s,
        headers=stream.state.headers,
        background=BackgroundTask(stream.write_usage),  # once the response is over
        drain_s=svc.settings.stream_drain_s,  # a client that hangs up: read on to the usage the call is billed by
    )


@router.route(
    "POST",
    "/v1/chat/completions",
    summary="OpenAI-compatible chat completions (plain or streamed)",
    tags=("openai",),
    body=ChatCompletionRequest,
    errors=V1_ERRORS,
    auth="admission",
    raw_body=True,
    description="The OpenAI wire format, relayed to the Kilo Gateway. With `stream: true` the answer is "
    'OpenAI\'s `data: {chunk}` events ending in `data: [DONE]`; a failure mid-stream is a `data: {"error"…}` event.',
)
async def chat_completions(request: Request, body: BaseModel, data: dict[str, Any]) -> Response:
    assert isinstance(body, ChatCompletionRequest)
    return await _relay(request, CHAT, data, bool((body.stream_options or {}).get("include_usage")))


@router.route(
    "POST",
    "/v1/responses",
    summary="OpenAI Responses API (plain or streamed)",
    tags=("openai",),
    body=ResponsesRequest,
    errors=V1_ERRORS,
    auth="admission",
    raw_body=True,
    description="Relayed to the Kilo Gateway's `/responses`; streamed as its named `response.*` events.",
)
async def responses(request: Request, body: BaseModel, data: dict[str, Any]) -> Response:
    return await _relay(request, RESPONSES, data)


@router.route(
    "POST",
    "/v1/messages",
    summary="Anthropic Messages API (plain or streamed)",
    tags=("anthropic",),
    body=MessagesRequest,
    errors=V1_ERRORS,
    auth="admission",
    raw_body=True,
    description="Relayed to the Kilo Gateway's `/messages` (Anthropic format); streamed as its named events "
    "(`message_start` … `message_stop`).",
)
async def messages(request: Request, body: BaseModel, data: dict[str, Any]) -> Response:
    return await _relay(request, MESSAGES, data)


@router.route(
    "POST",
    "/v1/messages/count_tokens",
    summary="Anthropic's token count of a Messages request (estimated here)",
    tags=("anthropic",),
    body=CountTokensRequest,
    response=CountTokens,
    errors=(400, 401, 413, 415, 422),
    raw_body=True,
    description='`{"input_tokens": N}` as Anthropic answers it. The Kilo Gateway serves no token count, so N is '
    "estimated from the request's JSON (messages, system, tools) at ~4 characters a token: no gateway call, no charge.",
)
async def count_tokens(request: Request, body: BaseModel, data: dict[str, Any]) -> Response:
    if json_depth_exceeds(data):
        raise ApiError(422, "invalid_request", f"The body nests deeper than {MAX_JSON_DEPTH} levels.")
    return Response(orjson.dumps({"input_tokens": estimate_input_tokens(MESSAGES, data)}), media_type=JSON)


@router.route(
    "POST",
    "/v1/embeddings",
    summary="OpenAI-compatible embeddings",
    tags=("openai",),
    body=EmbeddingsRequest,
    errors=V1_ERRORS,
    auth="admission",
    raw_body=True,
)
async def embeddings(request: Request, body: BaseModel, data: dict[str, Any]) -> Response:
    return await _relay(request, EMBEDDINGS, data)


async def _models(request: Request) -> list[dict[str, Any]]:
    """The gateway's list, only the models the caller's key may use; `object`, `created` and `owned_by` (OpenAI's
    Model fields, which Kilo's OpenRouter-style entries may lack) are filled in when missing, the rest is as the
    gateway sent it."""
    svc = services(request)
    caller = request.scope["state"].get("caller")
    allowed = await KeyStore(svc.store).models(caller) if caller else ""
    payload = await svc.gateway.list_models()
    return [
        {"object": "model", "created": 0, "owned_by": str(m.get("id", "")).split("/", 1)[0], **m}
        for m in payload["data"]
        if isinstance(m, dict) and model_allowed(allowed, str(m.get("id", "")))
    ]


@router.route(
    "GET",
    "/v1/models",
    summary="OpenAI-compatible model list (with Kilo prices)",
    tags=("openai",),
    response=OpenAIModelList,
    errors=(502,),
)
async def list_models(request: Request) -> Response:
    return Response(orjson.dumps({"object": "list", "data": await _models(request)}), media_type=JSON)


@router.route(
    "GET",
    "/v1/models/{model_id:path}",
    summary="One model of the list (the gateway serves only the list: it is looked up there)",
    tags=("openai",),
    errors=(404, 502),
)
async def retrieve_model(request: Request) -> Response:
    wanted = request.path_params["model_id"]
    for model in await _models(request):
        if model.get("id") == wanted:
            return Response(orjson.dumps(model), media_type=JSON)
    raise ApiError(404, "model_not_found", f"The Kilo Gateway has no model {wanted!r}.")
