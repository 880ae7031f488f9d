"""The HTTP server `kilo-bridge serve` runs (web/server.py) refuses an oversized request head (431) and
closes connections that send their head or body too slowly (slowloris), while normal and large requests
pass. Measured before: a 30 MB head was buffered and slow connections were held indefinitely."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn

from kilo_bridge.config import Settings
from kilo_bridge.web.server import GuardedHttpToolsProtocol


class Quick(GuardedHttpToolsProtocol):
    head_timeout_s = 0.5
    body_timeout_s = 0.5


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[tuple[str, int]]:
    from kilo_bridge.web.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(make_settings()), http=Quick, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}", port
    srv.should_exit = True
    thread.join(10)
    sock.close()


def _closed_by_server(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes (a 10 s socket timeout bounds a server that never does)."""
    conn.settimeout(10)
    out = b""
    while chunk := conn.recv(65536):
        out += chunk
    return out


def test_an_oversized_head_is_431(server: tuple[str, int]) -> None:
    url, port = server
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        with pytest.raises(OSError):  # the server closes after 64 KB; it never reads all 30 MB
            for _ in range(30 * 16):
                conn.sendall(b"a" * 65536)
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100_000)
        assert _closed_by_server(conn).startswith(b"HTTP/1.1 431 ")
    assert httpx.get(url + "/healthz", headers={"X-Fine": "a" * 8000}).status_code == 200


def test_a_slow_head_or_body_is_closed(server: tuple[str, int]) -> None:
    _, port = server
    for partial in (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # the head never ends
        b"",  # nothing at all
        b"POST /api/kilo/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"pro',
    ):  # the body never ends
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(partial)
            assert _closed_by_server(conn) == b""


def test_normal_and_large_requests_pass(server: tuple[str, int], fake: object) -> None:
    url, _ = server
    with httpx.Client(base_url=url) as client:
        for _ in range(3):  # keep-alive: the next request's head gets its own deadline
            assert client.get("/healthz").status_code == 200
            time.sleep(0.3)
        big = {"model": "fake/model-a", "messages": [{"role": "user", "content": "x" * 2_000_000}]}
        assert client.post("/v1/chat/completions", json=big).status_code == 200


def test_an_oversized_head_sent_in_one_write_is_431(server: tuple[str, int]) -> None:
    """The whole head in one read is parsed before a per-read count could see it: still refused."""
    _, port = server
    for head in (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 90) for i in range(1100))
        + b"\r\n",
        b"GET /healthz?" + b"q" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(head)
            assert _closed_by_server(conn).startswith(b"HTTP/1.1 431 "), head[:60]
    # a large head under the cap, whole in one write, is still served
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Fine: " + b"a" * 60_000 + b"\r\n\r\n"
        )
        assert _closed_by_server(conn).startswith(b"HTTP/1.1 200 ")
