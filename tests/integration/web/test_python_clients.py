"""LangChain (langchain-openai) and LiteLLM as clients of `/v1`: plain, streamed, tools and errors, as their
users call them (pinned in pyproject's `clients` group)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.fakes.fake_gateway import FakeGatewayThread

# LiteLLM fetches its model price map from the internet at import unless told to use its bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
langchain_openai = pytest.importorskip("langchain_openai")
litellm = pytest.importorskip("litellm")

MSG = [{"role": "user", "content": "hello client"}]


def chat_model(base_url: str, **kw: Any) -> Any:
    return langchain_openai.ChatOpenAI(
        base_url=base_url + "/v1", api_key="unused-locally", model="fake/model-a", max_retries=0, **kw
    )


def test_langchain_invoke_and_stream(base_url: str) -> None:
    llm = chat_model(base_url)
    answer = llm.invoke("hello client")
    assert answer.content == "Echo: hello client"
    assert answer.usage_metadata["input_tokens"] == 2
    assert "".join(str(c.content) for c in llm.stream("hello client")) == "Echo: hello client"


def test_langchain_tool_call(base_url: str, fake: FakeGatewayThread) -> None:
    fake.agent_plan = [{"tool": "add", "args": {"a": 2, "b": 2}}]

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    llm = chat_model(base_url, streaming=True).bind_tools([add])
    message = llm.invoke("add 2 and 2")
    assert message.tool_calls[0]["name"] == "add" and message.tool_calls[0]["args"] == {"a": 2, "b": 2}
    assert fake.chats[-1]["json"]["tools"][0]["function"]["name"] == "add"


def test_langchain_sees_the_upstream_status(base_url: str, fake: FakeGatewayThread) -> None:
    import openai

    fake.script([{"kind": "status", "status": 402}])
    with pytest.raises(openai.APIStatusError) as info:
        chat_model(base_url).invoke("x")
    assert info.value.status_code == 402
    assert info.value.body["buyCreditsUrl"] == "https://app.kilo.ai/profile"  # type: ignore[index]


def test_litellm_openai_route_plain_and_streamed(base_url: str) -> None:
    kw = {"model": "openai/fake/model-a", "api_base": base_url + "/v1", "api_key": "unused-locally"}
    answer = litellm.completion(messages=MSG, **kw)
    assert answer.choices[0].message.content == "Echo: hello client"
    assert answer.usage.prompt_tokens == 2
    chunks = litellm.completion(messages=MSG, stream=True, **kw)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: hello client"


def test_litellm_anthropic_route_uses_messages(base_url: str, fake: FakeGatewayThread) -> None:
    answer = litellm.completion(
        model="anthropic/fake/model-a", api_base=base_url, api_key="unused-locally", messages=MSG, max_tokens=50
    )
    assert answer.choices[0].message.content == "Echo: hello client"
    assert fake.calls("/messages")


def test_litellm_maps_the_upstream_context_error(base_url: str, fake: FakeGatewayThread) -> None:
    fake.script(
        [
            {
                "kind": "status",
                "status": 400,
                "body": {
                    "error": {
                        "message": "This model's maximum context length is 8 tokens",
                        "type": "invalid_request_error",
                        "param": "messages",
                        "code": "context_length_exceeded",
                    }
                },
            }
        ]
    )
    with pytest.raises(litellm.ContextWindowExceededError):
        litellm.completion(
            model="openai/fake/model-a",
            api_base=base_url + "/v1",
            api_key="unused-locally",
            messages=MSG,
            num_retries=0,
        )
    assert len(fake.chats) == 1
