"""The upstream SSE reader: events split across reads, CR/LF line ends, multi-line data, a last event with
no blank line, and an over-long line, fed through aiohttp's own StreamReader."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.base_protocol import BaseProtocol

from kilo_bridge.gateway.sse import MAX_SSE_LINE, OVERLONG, Event, sse_batches, sse_events


class _Socket(asyncio.ReadTransport):
    """Stands for the connection under aiohttp's reader: data is fed by hand, flow control is a no-op."""

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def batches(*reads: bytes) -> list[list[bytes]]:
    return [batch async for batch in sse_batches(fed(*reads))]


async def events(*reads: bytes) -> list[list[Event]]:
    return [batch async for batch in sse_events(fed(*reads))]


def fed(*reads: bytes) -> aiohttp.StreamReader:
    """aiohttp's reader, fed `reads` one network read at a time (then the end of the stream)."""
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.connection_made(_Socket())
    reader = aiohttp.StreamReader(protocol, 2**24, loop=loop)  # above the over-long line: no flow control

    async def feed() -> None:
        for data in reads:
            reader.feed_data(data)
            await asyncio.sleep(0)  # each read is its own network read
            await asyncio.sleep(0)
        reader.feed_eof()

    _FEEDERS.add(asyncio.ensure_future(feed()))
    return reader


_FEEDERS: set[asyncio.Future[None]] = set()


async def test_events_of_one_read_come_together_and_split_events_are_joined() -> None:
    got = await batches(
        b'data: {"a":1}\n\ndata: {"b":2}\n\nda',
        b'ta: {"c":3}\r\n\r\n: comment\n\n',
        b"event: x\ndata: line one\ndata: line two\n\ndata: [DONE]",
    )
    assert got == [[b'{"a":1}', b'{"b":2}'], [b'{"c":3}'], [b"line one\nline two"], [b"[DONE]"]]


async def test_an_over_long_line_is_dropped_not_a_memory_sink_and_what_follows_is_still_read() -> None:
    got = await events(
        b'data: {"a":1}\n\ndata: ' + b"x" * (MAX_SSE_LINE // 2),
        b"x" * (MAX_SSE_LINE // 2 + 10),  # past the cap: dropped, and so is the rest of the line
        b"x" * 1000,
        b'xx\n\ndata: {"usage":1}\n\n',
    )
    assert [e for batch in got for e in batch] == [(None, b'{"a":1}'), (OVERLONG, b""), (None, b'{"usage":1}')]
