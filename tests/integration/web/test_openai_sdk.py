"""The official `openai` SDK against our /v1 passthrough, plain and streamed."""

from __future__ import annotations

import openai
import pytest
import redis

from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import number


@pytest.fixture
def sdk(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused-locally", max_retries=0, timeout=10)


def test_plain_completion(sdk: openai.OpenAI, fake: FakeGatewayThread, redis_client: redis.Redis, prefix: str) -> None:
    answer = sdk.chat.completions.create(
        model="fake/model-a", messages=[{"role": "user", "content": "hello sdk"}], temperature=0.1, seed=7
    )
    content = answer.choices[0].message.content
    assert content is not None and content.startswith("Echo: hello sdk")
    assert answer.usage is not None and answer.usage.total_tokens > 0
    sent = fake.chats[-1]["json"]
    assert sent["seed"] == 7 and sent["temperature"] == 0.1  # unknown fields pass through


def test_streamed_completion_without_usage_requested(
    sdk: openai.OpenAI, fake: FakeGatewayThread, redis_client: redis.Redis, prefix: str
) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="fake/model-a", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Echo: one two three")
    assert all(c.usage is None for c in chunks)  # not asked for, not sent
    assert fake.chats[-1]["json"]["stream_options"] == {"include_usage": True}  # but we counted it
    assert number(redis_client.hget(prefix + "stats", "completion_tokens")) == 5


def test_streamed_completion_with_usage(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="fake/model-a",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_midstream_failure_raises_in_the_sdk(sdk: openai.OpenAI, fake: FakeGatewayThread) -> None:
    fake.script([{"kind": "cut", "after": 2}])
    stream = sdk.chat.completions.create(model="fake/model-a", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.APIError) as info:
        list(stream)
    assert "cut off" in str(info.value)


def test_errors_reach_the_sdk_with_status(sdk: openai.OpenAI, fake: FakeGatewayThread) -> None:
    fake.script([{"kind": "status", "status": 403}])
    with pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(model="fake/model-a", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.UnprocessableEntityError):
        sdk.chat.completions.create(model="fake/model-a", messages=[])


def test_models_list(sdk: openai.OpenAI) -> None:
    ids = {m.id for m in sdk.models.list()}
    assert {"anthropic/claude-sonnet-4.5", "fake/model-a"} <= ids
