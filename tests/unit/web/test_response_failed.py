"""A Responses API stream's failure as that API's own `response.failed` event, checked against openai-python's
types (what the openai SDKs, the AI SDK and Codex parse)."""

from __future__ import annotations

import orjson
from openai.types.responses import ResponseFailedEvent

from kilo_bridge.gateway.error_map import upstream_error
from kilo_bridge.generation.service import StreamTooLong
from kilo_bridge.web.errors import response_failed_json
from tests.fakes.fake_gateway import error_body


def test_a_failure_before_the_response_began_still_makes_a_whole_event() -> None:
    data = orjson.loads(response_failed_json(StreamTooLong("too long"), None, None, "fake/model-a"))
    event = ResponseFailedEvent.model_validate(data, strict=True)
    assert (event.sequence_number, event.response.status, event.response.model) == (0, "failed", "fake/model-a")
    assert event.response.error is not None and event.response.error.code == "server_error"


def test_the_response_begun_is_repeated_and_a_429_is_rate_limit_exceeded() -> None:
    started = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": "m",
        "status": "in_progress",
        "output": [],
        "usage": None,
        "error": None,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    error = upstream_error(429, error_body(429, None, 0), {}, ())
    event = ResponseFailedEvent.model_validate(orjson.loads(response_failed_json(error, started, 7, "m")), strict=True)
    assert (event.response.id, event.sequence_number) == ("resp_1", 8)
    assert event.response.error is not None and event.response.error.code == "rate_limit_exceeded"
    assert "usage limit reached" in event.response.error.message
