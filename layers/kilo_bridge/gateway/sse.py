"""Reading an upstream `text/event-stream`: the data of each event, batched by network read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from kilo_bridge.gateway.errors import GatewayError

if TYPE_CHECKING:
    import aiohttp

MAX_SSE_LINE = 4_000_000  # an upstream line longer than this is not a chat chunk


Event = tuple[bytes | None, bytes]  # (the `event:` name if any, the data)


async def sse_batches(content: aiohttp.StreamReader) -> AsyncIterator[list[bytes]]:
    """The `data` of each server-sent event, batched as `sse_events` batches them."""
    async for batch in sse_events(content):
        yield [data for _name, data in batch]


async def sse_events(content: aiohttp.StreamReader) -> AsyncIterator[list[Event]]:
    """Each server-sent event's name and data (multi-line data joined by newlines, per the SSE spec), batched:
    every event complete in what one read returned comes at once, so they can be relayed in one write."""
    pending = b""
    lines: list[bytes] = []
    name: bytes | None = None

    def take(raw: bytes, batch: list[Event]) -> None:
        nonlocal lines, name
        line = raw.rstrip(b"\r")
        if not line:
            if lines:
                batch.append((name, lines[0] if len(lines) == 1 else b"\n".join(lines)))
                lines = []
            name = None
        elif line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):  # the Messages and Responses APIs name their events
            name = line[6:].strip() or None
        # comments (":", Kilo's `: KILO PROCESSING`), "id:" and "retry:" carry nothing we relay

    while block := await content.readany():
        *complete, pending = (pending + block).split(b"\n")
        if len(pending) > MAX_SSE_LINE:
            raise GatewayError("The Kilo Gateway sent an over-long stream line.", code="upstream_malformed")
        batch: list[Event] = []
        for raw in complete:
            take(raw, batch)
        if batch:
            yield batch
    batch = []
    if pending:
        take(pending, batch)
    if lines:
        batch.append((name, b"\n".join(lines)))
    if batch:
        yield batch
