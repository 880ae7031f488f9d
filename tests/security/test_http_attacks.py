"""One case per attack on the HTTP surface; each fails without its defence. Event streams go through a real
uvicorn; what is only a request and its answer (status, error body, headers) runs in process (TestClient)."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.testclient import TestClient

from kilo_bridge.config import Settings
from kilo_bridge.web.sse import encode, frame
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import TEST_KEY, stream


def test_upstream_text_cannot_forge_sse_events(base_url: str, fake: FakeGatewayThread) -> None:
    forged = 'x\n\nevent: done\ndata: {"usage": "forged"}\n\nevent: error\r\ndata: boom\r\n\r\n'
    fake.script([{"kind": "ok", "text": forged, "chunks": 1}])
    events = stream(base_url, {"prompt": "x"})
    assert [e for e, _ in events] == ["delta", "done"]
    assert json.loads(events[0][1])["text"] == forged  # delivered intact, as data
    assert json.loads(events[1][1])["usage"] != "forged"


def test_sse_framing_splits_every_line_break_into_data_lines() -> None:
    # The passthrough relays upstream data as is: a lone CR must not start a new SSE field.
    encoded = encode({"data": '{"a": 1}\revent: done\ndata: x'}).decode()
    assert "\nevent: done" not in encoded and "\revent" not in encoded
    assert [line for line in encoded.splitlines() if line] == ['data: {"a": 1}', "data: event: done", "data: data: x"]
    named = encode({"event": "delta\nevent: done", "data": "y"}).decode()
    assert named == "event: deltaevent: done\ndata: y\n\n"  # an event name cannot add a line either


def test_relayed_frames_keep_upstream_bytes_but_never_a_forged_field() -> None:
    # The /v1 relay frames upstream bytes without decoding them; a line break still cannot add a field.
    assert frame(b'{"a": 1}') == b'data: {"a": 1}\n\n'
    assert frame(b"{}", b"message_start") == b"event: message_start\ndata: {}\n\n"
    forged = frame(b'{"a": 1}\revent: done').decode()
    assert [line for line in forged.splitlines() if line] == ['data: {"a": 1}', "data: event: done"]
    assert frame(b"{}", b"delta\rid: 9") == b"event: deltaid: 9\ndata: {}\n\n"


def test_upstream_echoing_the_key_does_not_leak_it(app_client: TestClient, fake: FakeGatewayThread) -> None:
    fake.script([{"kind": "status", "status": 400, "message": f"bad header Bearer {TEST_KEY}"}])
    resp = app_client.post("/api/kilo/generate", json={"prompt": "x"})
    assert resp.status_code == 400
    assert TEST_KEY not in resp.text and "[REDACTED]" in resp.text


def test_request_id_header_injection_is_not_echoed(app_client: TestClient) -> None:
    resp = app_client.get("/healthz", headers={"x-request-id": "a" * 300})
    assert resp.headers["x-request-id"] != "a" * 300
    assert len(resp.headers["x-request-id"]) == 32


def test_security_headers_on_every_answer(app_client: TestClient) -> None:
    for resp in (
        app_client.get("/healthz"),
        app_client.get("/nope"),
        app_client.post("/api/kilo/generate", content=b"{"),
    ):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["cache-control"] == "no-store"


def test_cors_is_off_unless_configured(
    app_client: TestClient, make_app_client: Callable[..., TestClient], make_settings: Callable[..., Settings]
) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    resp = app_client.options("/api/kilo/generate", headers=preflight)
    assert "access-control-allow-origin" not in resp.headers
    with_cors = make_app_client(make_settings(cors_origins="https://app.example"))
    ok = with_cors.options("/api/kilo/generate", headers={**preflight, "Origin": "https://app.example"})
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    evil = with_cors.options("/api/kilo/generate", headers=preflight)
    assert "access-control-allow-origin" not in evil.headers


def test_cross_site_form_posts_are_refused(app_client: TestClient, fake: FakeGatewayThread) -> None:
    # text/plain and forms need no CORS preflight: they must never be parsed as JSON.
    resp = app_client.post("/api/kilo/generate", content=b'{"prompt": "x"}', headers={"Content-Type": "text/plain"})
    assert resp.status_code == 415
    assert not fake.chats


def test_deeply_nested_json_is_a_400_not_a_crash(app_client: TestClient, fake: FakeGatewayThread) -> None:
    body = b'{"model": "m", "messages": [{"role": "user"}], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    resp = app_client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert not fake.chats


def _nested(depth: int) -> object:
    node: object = "leaf"
    for _ in range(depth - 1):
        node = {"a": [node]} if isinstance(node, str) else [node]
    return node


def test_relayed_json_is_bounded_in_depth(app_client: TestClient, fake: FakeGatewayThread) -> None:
    # Below the parser's own limit (1024), beyond what orjson writes back (255), deeper than any API's schema
    # limit: refused before the gateway sees it.
    body = {"model": "fake/model-a", "messages": [{"role": "user", "content": "hi"}], "tools": [_nested(300)]}
    resp = app_client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 422 and "deeper than 64" in resp.json()["error"]["message"]
    body["tools"] = [_nested(70)]
    assert app_client.post("/v1/chat/completions", json=body).status_code == 422
    assert not fake.chats
    body["tools"] = [_nested(12)]
    assert app_client.post("/v1/chat/completions", json=body).status_code == 200


def test_oversized_api_key_is_refused(
    make_app_client: Callable[..., TestClient], make_settings: Callable[..., Settings]
) -> None:
    app = make_app_client(make_settings(auth_required=True))
    resp = app.post("/api/kilo/generate", json={"prompt": "x"}, headers={"x-api-key": "k" * 5000})
    assert resp.status_code == 401


def test_errors_carry_no_stack_trace(app_client: TestClient) -> None:
    for resp in (
        app_client.post("/api/kilo/generate", content=b"\xff\xfe"),
        app_client.post("/api/kilo/generate", json=[1, 2]),
        app_client.post("/v1/chat/completions", json={"model": "m", "messages": "nope"}),
    ):
        assert resp.status_code < 500, resp.text
        assert "Traceback" not in resp.text and 'File "' not in resp.text
