"""The Kilo Gateway's streams read: each event parsed, noted in the stream's `StreamState` (model, usage, finish
reason, for accounting) and handed on in the batches one network read brought; an error event raises.

Chat Completions, Anthropic's Messages and OpenAI's Responses streams each say in their own events what they
used and how they ended."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from kilo_bridge.gateway.apis import CHAT, MESSAGES, RESPONSES, InferenceApi
from kilo_bridge.gateway.error_map import upstream_error
from kilo_bridge.gateway.errors import GatewayError
from kilo_bridge.gateway.sse import OVERLONG, sse_events
from kilo_bridge.platform.lazy import lazy_module

if TYPE_CHECKING:
    import aiohttp
else:  # imported by the first stream read (the client imports it the same way)
    aiohttp = lazy_module("aiohttp")

Chunk = tuple[bytes, dict[str, Any], bytes | None]  # (raw SSE data, parsed JSON, the event's name if any)


@dataclass(slots=True)
class StreamState:
    """What a stream has told us so far; read by the caller for accounting, also after a failure."""

    model: str
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    chunks: int = 0
    done: bool = False
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    api: InferenceApi = CHAT
    # The upstream response headers clients use (rate limits, request id), to be relayed.
    headers: dict[str, str] = field(default_factory=dict)
    # A failure the stream can be read past (an over-long line): the call has failed for its client, but what
    # follows (the usage it is billed by) is still read.
    failure: GatewayError | None = None


def parse_chunk(data: bytes, state: StreamState, secrets: tuple[str, ...]) -> dict[str, Any]:
    """One chunk's JSON, noted in `state`; an error chunk or malformed data raises."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise GatewayError("The Kilo Gateway sent a malformed stream chunk.", code="upstream_malformed") from None
    if not isinstance(chunk, dict):
        raise GatewayError("The Kilo Gateway sent a malformed stream chunk.", code="upstream_malformed")
    if chunk.get("error") is not None or chunk.get("type") == "error":
        # Kilo's mid-stream failure, or the Messages/Responses APIs' `error` event
        raise upstream_error(_error_status(chunk), chunk, None, secrets)
    state.chunks += 1
    if state.api is CHAT:
        if chunk.get("model"):
            state.model = chunk["model"]
        if chunk.get("usage"):
            state.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                state.finish_reason = choice["finish_reason"]
    elif state.api is MESSAGES:
        _note_message_event(chunk, state)
    elif state.api is RESPONSES:
        _note_response_event(chunk, state, secrets)
    return chunk


async def chunks(
    resp: aiohttp.ClientResponse, state: StreamState, secrets: tuple[str, ...]
) -> AsyncIterator[list[Chunk]]:
    """The chunks of each network read, together: relayed in one write, never waiting for more."""
    try:
        async for batch in sse_events(resp.content):
            ready: list[Chunk] = []
            try:
                for name, data in batch:
                    if name is OVERLONG:
                        state.failure = state.failure or GatewayError(
                            "The Kilo Gateway sent an over-long stream line.", code="upstream_malformed"
                        )
                        continue
                    if data == b"[DONE]":
                        state.done = True
                        break
                    ready.append((data, parse_chunk(data, state, secrets), name))
            except GatewayError:
                if ready:
                    yield ready  # what came before the error is relayed first, in order
                raise
            if ready or state.failure is not None:
                yield ready
            if state.done:
                return
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise GatewayError("The Kilo Gateway went silent mid-stream.", code="upstream_timeout") from None
    except aiohttp.ClientError:
        raise GatewayError("The Kilo Gateway stream was cut off.", code="upstream_stream_broken") from None
    if state.finish_reason is None:
        raise GatewayError("The Kilo Gateway stream ended before it finished.", code="upstream_stream_broken")
    state.done = True


def _note_message_event(event: dict[str, Any], state: StreamState) -> None:
    """Anthropic's stream: `message_start` has the input usage, `message_delta` the output and stop reason."""
    kind = event.get("type")
    if kind == "message_start" and isinstance(event.get("message"), dict):
        message = event["message"]
        state.model = message.get("model") or state.model
        if isinstance(message.get("usage"), dict):
            state.usage = dict(message["usage"])
    elif kind == "message_delta":
        if isinstance(event.get("usage"), dict):
            state.usage = {**(state.usage or {}), **event["usage"]}
        delta = event.get("delta")
        if isinstance(delta, dict) and delta.get("stop_reason"):
            state.finish_reason = delta["stop_reason"]


def _note_response_event(event: dict[str, Any], state: StreamState, secrets: tuple[str, ...]) -> None:
    """The Responses API's stream ends with `response.completed` (or `.incomplete`), which has the usage;
    `response.failed` is a failure."""
    kind = event.get("type")
    if isinstance(event.get("sequence_number"), int):
        state.extra["sequence_number"] = event["sequence_number"]  # a failure we report comes next in line
    response = event.get("response")
    if not isinstance(response, dict):
        return
    if kind in ("response.created", "response.in_progress"):
        state.extra["response"] = response  # the id and fields a `response.failed` of ours repeats
    state.model = response.get("model") or state.model
    if kind in ("response.completed", "response.incomplete"):
        state.usage = response.get("usage") if isinstance(response.get("usage"), dict) else state.usage
        state.finish_reason = str(response.get("status") or kind.rsplit(".", 1)[1])
    elif kind == "response.failed":
        state.usage = response.get("usage") if isinstance(response.get("usage"), dict) else state.usage
        raise upstream_error(502, {"error": response.get("error")}, None, secrets)


def _error_status(chunk: dict[str, Any]) -> int:
    code = chunk["error"].get("code") if isinstance(chunk.get("error"), dict) else None
    return code if isinstance(code, int) and 400 <= code < 600 else 502
