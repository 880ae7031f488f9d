"""The upstream SSE reader: events split across reads, CR/LF line ends, multi-line data, a last event with
no blank line, and an over-long line, fed through aiohttp's own StreamReader."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol

from kilo_bridge.errors import BridgeError
from kilo_bridge.gateway.sse import MAX_SSE_LINE, sse_batches


class _Socket(asyncio.ReadTransport):
    """Stands for the connection under aiohttp's reader: data is fed by hand, flow control is a no-op."""

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def batches(*reads: bytes) -> list[list[bytes]]:
    loop = asyncio.get_running_loop()
    protocol = BaseProtocol(loop)
    protocol.connection_made(_Socket())
    reader = aiohttp.StreamReader(protocol, 2**16, loop=loop)

    async def feed() -> None:
        for data in reads:
            reader.feed_data(data)
            await asyncio.sleep(0)  # each read is its own network read
            await asyncio.sleep(0)
        reader.feed_eof()

    feeder = asyncio.ensure_future(feed())
    out = [batch async for batch in sse_batches(reader)]
    await feeder
    return out


async def test_events_of_one_read_come_together_and_split_events_are_joined() -> None:
    got = await batches(
        b'data: {"a":1}\n\ndata: {"b":2}\n\nda',
        b'ta: {"c":3}\r\n\r\n: comment\n\n',
        b"event: x\ndata: line one\ndata: line two\n\ndata: [DONE]",
    )
    assert got == [[b'{"a":1}', b'{"b":2}'], [b'{"c":3}'], [b"line one\nline two"], [b"[DONE]"]]


async def test_an_over_long_line_is_an_upstream_error_not_a_memory_sink() -> None:
    with pytest.raises(BridgeError) as err:
        await batches(b"data: " + b"x" * (MAX_SSE_LINE + 10))
    assert err.value.code == "upstream_malformed"
