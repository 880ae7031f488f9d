"""An open server (no API keys: the local default) answers only programs on this machine: bodies must be
JSON (a cross-site `no-cors` fetch cannot send that type), `Host` must be a loopback name (DNS rebinding),
and a browser request from another site is refused."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_without_json_content_type_is_415(base_url: str, fake: FakeGatewayThread, ctype: str | None) -> None:
    body = b'{"repoUrl": "https://github.com/acme/widgets.git", "agent": "review"}'
    for path in ("/api/kilo/run-agent", "/api/kilo/generate", "/v1/chat/completions"):
        req = httpx.Request("POST", base_url + path, content=body, headers={"content-type": ctype} if ctype else {})
        assert ctype is not None or "content-type" not in req.headers
        with httpx.Client() as http:
            resp = http.send(req)
        assert resp.status_code == 415, (path, ctype, resp.text)
    assert not fake.requests


def test_a_rebound_host_name_is_refused(base_url: str) -> None:
    for host in ("evil.example", "evil.example:5000", "192.168.1.20", "10.0.0.1:5000"):
        resp = httpx.get(base_url + "/api/kilo/jobs", headers={"Host": host})
        assert resp.status_code == 403, host
        assert resp.json()["error"]["code"] == "forbidden"
    for host in ("localhost:5000", "127.0.0.1", "[::1]:5000", "app.localhost"):
        assert httpx.get(base_url + "/healthz", headers={"Host": host}).status_code == 200, host


def test_cross_site_origins_are_refused(
    base_url: str, serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    body = {"prompt": "x"}
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        assert httpx.post(base_url + "/api/kilo/generate", json=body, headers=headers).status_code == 403, headers
    assert not fake.chats
    assert (
        httpx.post(base_url + "/api/kilo/generate", json=body, headers={"Origin": "http://localhost:5000"}).status_code
        == 200
    )
    url = serve(make_settings(cors_origins="https://app.example"))
    assert (
        httpx.post(url + "/api/kilo/generate", json=body, headers={"Origin": "https://app.example"}).status_code == 200
    )


def test_a_server_with_keys_serves_any_host(serve: Callable[..., str], make_settings: Callable[..., Settings]) -> None:
    url = serve(make_settings(auth_required=True))
    assert httpx.get(url + "/healthz", headers={"Host": "api.example.com"}).status_code == 200
