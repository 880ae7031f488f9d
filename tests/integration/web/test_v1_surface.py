"""The whole gateway surface on `/v1` through the clients' own SDKs, every answer validated strictly against
the SDK's response models (a field we drop or mistype fails here), with the same accounting as the rest."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis
from anthropic.types import Message, MessageParam, RawMessageStreamEvent, TextBlock
from anthropic.types.beta import BetaMessageParam
from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
)
from openai.types.responses import Response, ResponseCreatedEvent, ResponseFailedEvent, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import text_hash

# One user message, as each SDK types it.
MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
CLAUDE_MSG: list[MessageParam] = [{"role": "user", "content": "hello there"}]
CLAUDE_BETA_MSG: list[BetaMessageParam] = [{"role": "user", "content": "hello there"}]
RATE = {"x-ratelimit-remaining-requests": "41", "x-ratelimit-limit-requests": "200"}


@pytest.fixture
def sdk(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused-locally", max_retries=0, timeout=10)


@pytest.fixture
def claude(base_url: str) -> anthropic.Anthropic:
    # Anthropic clients add `/v1/messages` to their base URL themselves.
    return anthropic.Anthropic(base_url=base_url, api_key="unused-locally", max_retries=0, timeout=10)


def stats(r: redis.Redis, prefix: str) -> dict[str, int]:
    return {k: int(v) for k, v in text_hash(r, prefix + "stats").items() if v.isdigit()}


def sse_data(resp: httpx.Response) -> list[tuple[str | None, Any]]:
    out: list[tuple[str | None, Any]] = []
    name = None
    for line in resp.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and line != "data: [DONE]":
            out.append((name, httpx.Response(200, content=line[6:]).json()))
            name = None
    return out


def test_chat_body_goes_through_untouched_and_the_answer_comes_back_as_sent(
    sdk: openai.OpenAI, fake: FakeGatewayThread
) -> None:
    fake.script([{"kind": "ok", "headers": RATE}])
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "add 2 and 2"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "4"},
    ]
    raw = sdk.chat.completions.with_raw_response.create(model="fake/model-a", messages=messages, logprobs=None)
    sent = fake.chats[-1]["json"]
    assert sent == {"model": "fake/model-a", "messages": messages, "logprobs": None}  # nulls kept, nothing added
    answer = ChatCompletion.model_validate(raw.http_response.json(), strict=True)
    assert answer.choices[0].message.content == "Echo: add 2 and 2"
    assert raw.headers["x-ratelimit-remaining-requests"] == "41"  # the gateway's headers, relayed
    assert raw.headers["request-id"].startswith("req_fake_")


def test_chat_model_default_is_the_only_addition(base_url: str, fake: FakeGatewayThread) -> None:
    resp = httpx.post(base_url + "/v1/chat/completions", json={"messages": MSG})
    assert resp.status_code == 200
    assert fake.chats[-1]["json"] == {"model": "kilo-auto/balanced", "messages": MSG}


def test_chat_stream_chunks_are_the_sdks(base_url: str, fake: FakeGatewayThread) -> None:
    fake.script([{"kind": "ok", "headers": RATE, "processing": 2}])
    with httpx.stream(
        "POST", base_url + "/v1/chat/completions", json={"model": "fake/model-a", "messages": MSG, "stream": True}
    ) as resp:
        assert resp.headers["x-ratelimit-limit-requests"] == "200"
        chunks = [ChatCompletionChunk.model_validate(d, strict=True) for _, d in sse_data(resp)]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hello there"


def test_responses_plain_and_streamed(
    sdk: openai.OpenAI, fake: FakeGatewayThread, base_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    raw = sdk.responses.with_raw_response.create(model="fake/model-a", input="hello responses", max_output_tokens=64)
    answer = Response.model_validate(raw.http_response.json(), strict=True)
    assert answer.output_text == "Echo: hello responses"
    assert fake.calls("/responses")[-1]["json"] == {
        "model": "fake/model-a",
        "input": "hello responses",
        "max_output_tokens": 64,
    }
    events = list(sdk.responses.create(model="fake/model-a", input="one two", stream=True))
    assert events[-1].type == "response.completed"
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    with httpx.stream(
        "POST", base_url + "/v1/responses", json={"model": "fake/model-a", "input": "x", "stream": True}
    ) as resp:
        for name, data in sse_data(resp):
            event = adapter.validate_python(data, strict=True)
            assert name == event.type  # named events relayed with their names
    s = stats(redis_client, prefix)
    # input_tokens/output_tokens counted as prompt/completion tokens: 2 + 2 + 1 words in, 3 x 5 pieces out
    assert s["requests"] == 3 and s["prompt_tokens"] == 5 and s["completion_tokens"] == 15


def test_messages_plain_and_streamed_with_the_anthropic_sdk(
    claude: anthropic.Anthropic, fake: FakeGatewayThread, base_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    raw = claude.messages.with_raw_response.create(model="fake/model-a", max_tokens=100, messages=CLAUDE_MSG)
    message = Message.model_validate(raw.http_response.json(), strict=True)
    block = message.content[0]
    assert isinstance(block, TextBlock) and block.text == "Echo: hello there"
    with claude.messages.stream(model="fake/model-a", max_tokens=100, messages=CLAUDE_MSG) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: hello there" and final.usage.output_tokens == 5
    adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    with httpx.stream(
        "POST",
        base_url + "/v1/messages",
        json={"model": "fake/model-a", "max_tokens": 9, "messages": MSG, "stream": True},
    ) as resp:
        for name, data in sse_data(resp):
            if name != "ping":
                assert adapter.validate_python(data, strict=True).type == name
    s = stats(redis_client, prefix)
    assert s["requests"] == 3 and s["prompt_tokens"] == 6 and s["completion_tokens"] == 15


def test_embeddings_float_and_the_sdks_base64(sdk: openai.OpenAI, base_url: str, fake: FakeGatewayThread) -> None:
    vectors = sdk.embeddings.create(model="fake/embed", input=["a", "b"])  # the SDK asks for base64
    assert [round(x, 3) for x in vectors.data[1].embedding] == [0.2, 0.25, -0.5]
    resp = httpx.post(base_url + "/v1/embeddings", json={"model": "fake/embed", "input": "a b c"})
    body = CreateEmbeddingResponse.model_validate(resp.json(), strict=True)
    assert body.usage.prompt_tokens == 3


def test_models_list_and_retrieve(sdk: openai.OpenAI, base_url: str) -> None:
    resp = httpx.get(base_url + "/v1/models")
    for item in resp.json()["data"]:
        Model.model_validate(item, strict=True)
        assert "input_cache_read" in item["pricing"]  # Kilo's fields kept
    model = sdk.models.retrieve("anthropic/claude-sonnet-4.5")
    assert model.id == "anthropic/claude-sonnet-4.5" and model.owned_by == "anthropic"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("nobody/nothing")


def test_v1_takes_long_contexts_and_images(base_url: str, fake: FakeGatewayThread) -> None:
    image = "data:image/png;base64," + "A" * 1_100_000
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "x" * 410_000}, {"type": "image_url", "image_url": {"url": image}}],
        }
    ]
    resp = httpx.post(base_url + "/v1/chat/completions", json={"model": "fake/model-a", "messages": messages})
    assert resp.status_code == 200, resp.text[:300]
    assert fake.chats[-1]["json"]["messages"] == messages


def test_the_callers_task_id_reaches_the_gateway(base_url: str, fake: FakeGatewayThread) -> None:
    # Kilo keys its prompt cache by X-KiloCode-TaskId: an agent's turns share it.
    resp = httpx.post(
        base_url + "/v1/chat/completions",
        json={"model": "fake/model-a", "messages": MSG},
        headers={"X-KiloCode-TaskId": "task-123"},
    )
    assert resp.status_code == 200
    assert fake.chats[-1]["headers"]["x-kilocode-taskid"] == "task-123"


def test_messages_errors_take_anthropics_shape_and_the_sdk_types_them(
    claude: anthropic.Anthropic, fake: FakeGatewayThread, base_url: str
) -> None:
    # Ours (a token cap that cannot be) and the gateway's (a model the team may not use), as Anthropic's
    # clients expect them: `{"type": "error", "error": {"type", "message"}}`, each raised as its own error.
    with pytest.raises(anthropic.UnprocessableEntityError) as ours:
        claude.messages.create(model="fake/model-a", max_tokens=-1, messages=CLAUDE_MSG)
    body = ours.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error" and body["error"]["message"]
    fake.script([{"kind": "status", "status": 404, "message": "Model not allowed for your team"}])
    with pytest.raises(anthropic.APIStatusError) as theirs:
        claude.messages.create(model="fake/model-a", max_tokens=10, messages=CLAUDE_MSG)
    body = theirs.value.response.json()
    assert body["type"] == "error" and "not allowed" in body["error"]["message"]
    # The OpenAI-shaped routes keep OpenAI's shape.
    wrong = httpx.post(
        base_url + "/v1/chat/completions", json={"model": "fake/model-a", "max_tokens": -1, "messages": MSG}
    )
    assert "type" not in wrong.json() and wrong.json()["error"]["type"] == "invalid_request_error"


def test_a_responses_stream_that_fails_midway_ends_in_response_failed(
    sdk: openai.OpenAI, fake: FakeGatewayThread, base_url: str
) -> None:
    # Kilo's mid-stream failure is a `data: {"error": …}` line; on the Responses API the client gets that API's own
    # failure event, typed by openai-python (it raised an APIError on the plain line).
    fake.script([{"kind": "error_event", "after": 2}])
    events = list(sdk.responses.create(model="fake/model-a", input="one two three", stream=True))
    last = events[-1]
    assert isinstance(last, ResponseFailedEvent), last
    created = events[0]
    assert isinstance(created, ResponseCreatedEvent)
    assert last.response.id == created.response.id and last.response.status == "failed"
    assert last.response.error is not None and last.response.error.code == "server_error"
    assert "upstream exploded" in last.response.error.message
    assert last.sequence_number == events[-2].sequence_number + 1
    # The event as sent validates strictly as openai-python's ResponseFailedEvent.
    fake.script([{"kind": "error_event", "after": 0}])
    with httpx.stream(
        "POST", base_url + "/v1/responses", json={"model": "fake/model-a", "input": "x", "stream": True}
    ) as resp:
        name, data = sse_data(resp)[-1]
    assert name == "response.failed"
    ResponseFailedEvent.model_validate(data, strict=True)


def _strict_schema(levels: int) -> dict[str, Any]:
    """A strict JSON schema with `levels` levels of arrays of objects (OpenAI allows 10 levels of nesting)."""
    node: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        node = {
            "type": "object",
            "properties": {"items": {"type": "array", "items": node}},
            "required": ["items"],
            "additionalProperties": False,
        }
    return node


def test_a_strict_json_schema_ten_levels_deep_is_relayed(sdk: openai.OpenAI, fake: FakeGatewayThread) -> None:
    schema = _strict_schema(10)
    tool: ChatCompletionFunctionToolParam = {
        "type": "function",
        "function": {"name": "deep", "strict": True, "parameters": schema},
    }
    sdk.chat.completions.create(
        model="fake/model-a",
        messages=[{"role": "user", "content": "x"}],
        response_format={"type": "json_schema", "json_schema": {"name": "deep", "strict": True, "schema": schema}},
        tools=[tool],
    )
    sdk.responses.create(
        model="fake/model-a",
        input="x",
        text={"format": {"type": "json_schema", "name": "deep", "strict": True, "schema": schema}},
    )
    assert fake.chats[-1]["json"]["tools"][0]["function"]["parameters"] == schema
    assert fake.calls("/responses")[-1]["json"]["text"]["format"]["schema"] == schema


def test_stream_null_means_not_streamed(
    sdk: openai.OpenAI, claude: anthropic.Anthropic, fake: FakeGatewayThread
) -> None:
    # The SDKs send an explicit None as `"stream": null` (the specs allow it): a plain answer, typed as one.
    chat = sdk.chat.completions.create(model="fake/model-a", messages=MSG, stream=None)
    assert isinstance(chat, ChatCompletion) and chat.choices[0].message.content == "Echo: hello there"
    response = sdk.responses.create(model="fake/model-a", input="hello there", stream=None)
    assert isinstance(response, Response) and response.output_text == "Echo: hello there"
    message = claude.messages.create(model="fake/model-a", max_tokens=10, messages=CLAUDE_MSG, stream=None)  # type: ignore[call-overload]
    assert isinstance(message, Message) and isinstance(message.content[0], TextBlock)
    assert message.content[0].text == "Echo: hello there"
    for path in ("/chat/completions", "/responses", "/messages"):
        assert fake.calls(path)[-1]["json"]["stream"] is None  # relayed as sent


def test_count_tokens_answers_an_estimate_in_anthropics_shape(
    claude: anthropic.Anthropic, fake: FakeGatewayThread
) -> None:
    short = claude.messages.count_tokens(model="fake/model-a", messages=[{"role": "user", "content": "hi"}])
    long = claude.messages.count_tokens(
        model="fake/model-a",
        system="You are terse.",
        messages=[{"role": "user", "content": "hello " * 400}],
        tools=[{"name": "add", "description": "Add.", "input_schema": {"type": "object", "properties": {}}}],
    )
    assert 0 < short.input_tokens < 20 and 600 <= long.input_tokens <= 800  # ~4 characters a token
    assert not fake.calls("/messages")  # an estimate: the gateway serves no token count, nothing is charged


def test_anthropic_version_beta_headers_and_beta_query_reach_the_gateway(
    claude: anthropic.Anthropic, fake: FakeGatewayThread
) -> None:
    # Anthropic's TypeScript SDK (Claude Code's) calls `/v1/messages?beta=true` with its beta flags in the headers.
    claude.beta.messages.create(
        model="fake/model-a",
        max_tokens=10,
        messages=CLAUDE_BETA_MSG,
        betas=["context-management-2025-06-27"],
        extra_query={"beta": "true"},
    )
    call = fake.calls("/messages")[-1]
    assert call["query"] == "beta=true"
    assert call["headers"]["anthropic-version"] == claude.default_headers["anthropic-version"]
    assert call["headers"]["anthropic-beta"] == "context-management-2025-06-27"
