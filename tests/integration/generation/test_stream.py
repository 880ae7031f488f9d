"""POST /api/kilo/generate-stream read from a real uvicorn (ASGI test transports buffer SSE)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import TEST_KEY, counters, sse, stream


def stats(redis_client: redis.Redis, prefix: str) -> dict[str, int]:
    return counters(redis_client, prefix + "stats")


def test_deltas_then_done_with_usage(
    base_url: str, fake: FakeGatewayThread, redis_client: redis.Redis, prefix: str
) -> None:
    events = stream(base_url, {"prompt": "one two three four five six", "model": "fake/model-a"})
    deltas = [json.loads(d)["text"] for e, d in events if e == "delta"]
    assert len(deltas) == 5  # one per upstream content chunk
    assert "".join(deltas).startswith("Echo: one two three")
    name, data = events[-1]
    assert name == "done"
    done = json.loads(data)
    assert done["usage"]["completionTokens"] == 5 and done["usage"]["costUsd"] > 0
    assert done["finishReason"] == "stop"
    # we asked the upstream for usage on the stream
    assert fake.chats[-1]["json"]["stream_options"] == {"include_usage": True}
    counted = stats(redis_client, prefix)
    assert counted["ok"] == 1 and counted["streams"] == 1 and counted["completion_tokens"] == 5


def test_chunks_are_relayed_as_they_arrive_with_keepalives_in_silence(
    serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    """Two chunks, then 1.5 s of upstream silence: the client must see both deltas and keep-alive
    comments before the upstream resumes — nothing is buffered until the end."""
    url = serve(make_settings(sse_keepalive_s=0.2))
    fake.script([{"kind": "stall", "after": 2, "silence_ms": 1500}])
    seen: list[tuple[str, str]] = []
    with httpx.stream("POST", url + "/api/kilo/generate-stream", json={"prompt": "a b c d e"}, timeout=10) as resp:
        events = sse(resp.iter_lines())
        for item in events:
            seen.append(item)
            if item[0] == "comment" and item[1] == "keep-alive":
                break  # a keep-alive arrived during the silence
        names = [e for e, _ in seen]
        assert names.count("delta") == 2  # both chunks arrived before the silence ended
        assert "done" not in names
        rest = list(events)
    assert rest[-1][0] == "done"


@pytest.mark.parametrize(
    ("scenario", "code"),
    [
        ({"kind": "cut", "after": 2}, "upstream_stream_broken"),
        ({"kind": "error_event", "after": 2}, "upstream_error"),
        ({"kind": "malformed", "after": 2}, "upstream_malformed"),
    ],
)
def test_midstream_failure_is_an_error_event(
    base_url: str, fake: FakeGatewayThread, redis_client: redis.Redis, prefix: str, scenario: dict[str, Any], code: str
) -> None:
    fake.script([scenario])
    events = stream(base_url, {"prompt": "a b c d e f"})
    names = [e for e, _ in events]
    assert names[:2] == ["delta", "delta"]
    assert names[-1] == "error"
    err = json.loads(events[-1][1])["error"]
    assert err["code"] == code and err["requestId"]
    assert TEST_KEY not in events[-1][1]
    counted = stats(redis_client, prefix)
    assert counted["failed"] == 1 and counted.get("ok", 0) == 0 and counted["streams"] == 1


def test_error_before_the_first_byte_is_a_plain_json_error(base_url: str, fake: FakeGatewayThread) -> None:
    fake.script([{"kind": "status", "status": 402}])
    resp = httpx.post(base_url + "/api/kilo/generate-stream", json={"prompt": "x"})
    assert resp.status_code == 402
    assert resp.json()["error"]["code"] == "credits_exhausted"


def test_retry_before_first_byte_then_stream(base_url: str, fake: FakeGatewayThread) -> None:
    fake.script([{"kind": "status", "status": 502}])
    events = stream(base_url, {"prompt": "x y"})
    assert events[-1][0] == "done"
    assert len(fake.chats) == 2


def test_client_disconnect_cancels_the_upstream_and_still_counts(
    serve: Callable[..., str],
    make_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    # The upstream is read on after the client left, for its usage, but only for STREAM_DRAIN_S: one that stays
    # silent past it is dropped, and what it used is still counted.
    base_url = serve(make_settings(stream_drain_s=0.5))
    fake.script([{"kind": "stall", "after": 1, "silence_ms": 4000}])
    with httpx.stream("POST", base_url + "/api/kilo/generate-stream", json={"prompt": "a b c"}, timeout=10) as resp:
        for name, _ in sse(resp.iter_lines()):
            if name == "delta":
                break  # hang up mid-stream
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if stats(redis_client, prefix).get("failed") == 1 and fake.disconnects >= 1:
            break
        time.sleep(0.05)
    assert stats(redis_client, prefix).get("failed") == 1
    assert fake.disconnects >= 1  # the upstream saw its client (us) go away before the silence ended
