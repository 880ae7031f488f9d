"""Generation requests and answers, ours and the OpenAI-compatible passthrough's."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

from kilo_bridge.models import MODEL_ID, ApiModel


class GenerateRequest(ApiModel):
    prompt: str = Field(
        min_length=1,
        description="The user's prompt. With `system`: together at most MAX_PROMPT_CHARS characters (else 413 "
        "`prompt_too_long`).",
    )
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


def _whole_number(value: Any) -> Any:
    """JSON Schema's `integer` (what the OpenAPI document says): 5 and 5.0 are the same number, "5" and 5.5 are
    not integers. The relayed body gets the int (web/routing.py `parse_raw_body`)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An output-token cap: a whole number (a string, a bool or 5.5 is refused, never coerced: the body is relayed),
# at least 1 (a negative or zero cap would reserve a negative budget).
TokenCap = Annotated[StrictInt, Field(ge=1, le=10_000_000), BeforeValidator(_whole_number)]
_MODEL = Field(None, pattern=MODEL_ID, description="Kilo model id; KILO_DEFAULT_MODEL when left out.")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=32)
    content: Any = None


class ChatCompletionRequest(BaseModel):
    """OpenAI chat completions body, checked where admission depends on it and relayed as sent."""

    model_config = ConfigDict(extra="allow")

    model: str | None = _MODEL
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    stream: StrictBool | None = None  # null: not streamed
    stream_options: dict[str, Any] | None = None
    max_tokens: TokenCap | None = None
    max_completion_tokens: TokenCap | None = None
    n: Annotated[StrictInt, Field(ge=1, le=128), BeforeValidator(_whole_number)] | None = None


class ResponsesRequest(BaseModel):
    """OpenAI Responses API body (`POST /v1/responses`), relayed as sent."""

    model_config = ConfigDict(extra="allow")

    model: str | None = _MODEL
    input: str | list[Any] = Field(description="Text, or a list of input items.")
    instructions: str | None = None
    stream: StrictBool | None = None  # null: not streamed
    max_output_tokens: TokenCap | None = None


class MessagesRequest(BaseModel):
    """Anthropic Messages API body (`POST /v1/messages`), relayed as sent."""

    model_config = ConfigDict(extra="allow")

    model: str | None = _MODEL
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    max_tokens: TokenCap
    system: str | list[Any] | None = None
    stream: StrictBool | None = None  # null: not streamed


class CountTokensRequest(BaseModel):
    """Anthropic's `POST /v1/messages/count_tokens` body: a Messages request without `max_tokens`."""

    model_config = ConfigDict(extra="allow")

    model: str | None = _MODEL
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    system: str | list[Any] | None = None


class CountTokens(BaseModel):
    """Anthropic's count_tokens answer."""

    input_tokens: int


class EmbeddingsRequest(BaseModel):
    """OpenAI embeddings body (`POST /v1/embeddings`), relayed as sent."""

    model_config = ConfigDict(extra="allow")

    model: str | None = _MODEL
    input: Annotated[str, Field(min_length=1)] | Annotated[list[Any], Field(min_length=1)]


class OpenAIModelList(BaseModel):
    model_config = ConfigDict(extra="allow")

    object: str = "list"
    data: list[dict[str, Any]]
