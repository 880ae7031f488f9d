"""The inference APIs the Kilo Gateway serves, and what differs between them for admission and accounting:
the path, the field that caps output tokens, where the prompt is, how usage is spelled and when a stream
has finished (DESIGN.md "Kilo Gateway": `/chat/completions`, `/responses`, `/messages`, `/embeddings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class InferenceApi:
    name: str
    path: str
    # The body field that caps output tokens (None: the API writes no tokens, e.g. embeddings).
    token_cap: str | None
    # The body fields that hold the prompt (their JSON size bounds the prompt estimate).
    prompt_fields: tuple[str, ...]
    streams: bool = True


CHAT = InferenceApi("chat", "/chat/completions", "max_tokens", ("messages",))
RESPONSES = InferenceApi("responses", "/responses", "max_output_tokens", ("input", "instructions"))
MESSAGES = InferenceApi("messages", "/messages", "max_tokens", ("messages", "system"))
EMBEDDINGS = InferenceApi("embeddings", "/embeddings", None, ("input",), streams=False)


def token_cap(api: InferenceApi, body: dict[str, Any]) -> Any:
    """The output cap the body sets (chat's older `max_completion_tokens` counts too), or None."""
    if api.token_cap is None:
        return None
    value = body.get(api.token_cap)
    if value is None and api is CHAT:
        value = body.get("max_completion_tokens")
    return value


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def chat_usage(api: InferenceApi, usage: Any) -> dict[str, Any] | None:
    """Any API's usage in chat completions' spelling (`prompt_tokens`, `completion_tokens`, `cost`,
    `cached_tokens`, `cache_write_tokens`, all three inside `prompt_tokens`), which pricing and the ledger
    read. Responses and Messages say input/output tokens;
    Messages counts cache reads and writes apart from `input_tokens`."""
    if not isinstance(usage, dict):
        return None
    if api is CHAT or api is EMBEDDINGS:
        out = dict(usage)
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            out["cached_tokens"] = _int(details.get("cached_tokens"))
            out["cache_write_tokens"] = _int(details.get("cache_write_tokens"))  # OpenRouter's
        return out
    prompt = _int(usage.get("input_tokens"))
    cached = written = 0
    if api is MESSAGES:
        cached, written = _int(usage.get("cache_read_input_tokens")), _int(usage.get("cache_creation_input_tokens"))
        prompt += cached + written
    else:
        details = usage.get("input_tokens_details")
        cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    out = {
        "prompt_tokens": prompt,
        "completion_tokens": _int(usage.get("output_tokens")),
        "cached_tokens": cached,
        "cache_write_tokens": written,
    }
    out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    if "cost" in usage:
        out["cost"] = usage["cost"]
    return out


CHARS_PER_TOKEN = 4  # a common rule of thumb for English text and JSON; no model's own tokenizer


def estimate_input_tokens(api: InferenceApi, body: dict[str, Any]) -> int:
    """The prompt's size in tokens, estimated from the JSON of its fields and tools (Anthropic's
    `count_tokens`, which the Kilo Gateway does not serve: its routes are the inference APIs only)."""
    chars = sum(len(orjson.dumps(body[name])) for name in (*api.prompt_fields, "tools") if body.get(name) is not None)
    return max(1, -(-chars // CHARS_PER_TOKEN))
