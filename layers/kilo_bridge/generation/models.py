"""Generation requests and answers, ours and the OpenAI-compatible passthrough's."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kilo_bridge.models import MODEL_ID, ApiModel


class GenerateRequest(ApiModel):
    prompt: str = Field(min_length=1, description="The user's prompt.")
    system: str | None = Field(None, description="Optional system message.")
    model: str | None = Field(None, pattern=MODEL_ID, description="Kilo model id, e.g. anthropic/claude-sonnet-4.5")
    max_tokens: int | None = Field(None, ge=1, le=200_000)
    temperature: float | None = Field(None, ge=0, le=2)


class Usage(ApiModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = Field(None, description="USD cost: reported by the upstream, else tokens x list price.")


class GenerateResponse(ApiModel):
    text: str
    model: str
    finish_reason: str | None = None
    usage: Usage
    request_id: str


class StreamDelta(ApiModel):
    """SSE `event: delta` — one per upstream chunk, as it arrives."""

    text: str


class StreamDone(ApiModel):
    """SSE `event: done` — the final event, with usage."""

    model: str
    finish_reason: str | None = None
    usage: Usage
    request_id: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=32)
    content: Any = None


class ChatCompletionRequest(BaseModel):
    """OpenAI chat completions body; fields we do not know are passed through to the gateway."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(pattern=MODEL_ID)
    messages: list[ChatMessage] = Field(min_length=1, max_length=2_000)
    stream: bool = False
    stream_options: dict[str, Any] | None = None


class OpenAIModelList(BaseModel):
    model_config = ConfigDict(extra="allow")

    object: str = "list"
    data: list[dict[str, Any]]
