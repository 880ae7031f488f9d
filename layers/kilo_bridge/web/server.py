"""The HTTP/1.1 protocol `kilo-bridge serve` runs: uvicorn's httptools protocol with what it lacks.

Measured on uvicorn 0.54 here: it buffered a 30 MB request head and kept 220 connections that sent their
head (or their body) a byte at a time open for as long as they liked (slowloris); its only timer is the
keep-alive one, between requests. h11 has a head-size cap but costs ~0.1 ms per request on this machine.
So this keeps httptools and adds: a request head larger than MAX_HEAD_BYTES is answered 431 and the
connection closed; a head not complete within HEAD_TIMEOUT_S of its first byte, or a body not complete
within BODY_TIMEOUT_S of its head, closes the connection. (granian, measured against it, was slower on the
bridge's hot path: docs/benchmarks/stack.md.) (Behind API Gateway none of this runs: the
gateway has its own limits.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 31\r\nconnection: close\r\n\r\nRequest header fields too large"
)


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop httptools mid-head (it surfaces as its callback error)."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = MAX_HEAD_BYTES
    head_timeout_s = HEAD_TIMEOUT_S
    body_timeout_s = BODY_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._in_head = True
        self._head_bytes = 0  # the head's bytes received so far, while it is incomplete
        self._parsed_head = 0  # its URL and headers as the parser handed them over
        self._too_large = False
        self._read_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm(self.head_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, self._read_too_slow)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_too_slow(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():  # still reading a head after this chunk
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self.transport.write(_TOO_LARGE)
                self.transport.close()

    # A head that arrives whole in one read is parsed (and its request dispatched) before `data_received` can
    # count it: the parser's own callbacks count it as it goes, and stop it past the cap.
    def _count_parsed(self, n: int) -> None:
        self._parsed_head += n
        if self._parsed_head > self.max_head_bytes:
            self._too_large = True
            raise _HeadTooLarge()  # uvicorn answers a parser error through send_400_response, below

    def on_url(self, url: bytes) -> None:
        self._count_parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_parsed(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self.transport.write(_TOO_LARGE)
            self.transport.close()
            return
        super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._parsed_head = True, 0, 0
        self._arm(self.head_timeout_s)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._in_head = False
        self._arm(self.body_timeout_s)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()  # the app may take its time answering: that is not the client being slow


def protocol_options() -> dict[str, Any]:
    """uvicorn.run keywords for the guarded protocol."""
    return {"http": GuardedHttpToolsProtocol}
