"""Reading an upstream `text/event-stream`: the data of each event, batched by network read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

MAX_SSE_LINE = 4_000_000  # an upstream line longer than this is not a chat chunk
# The name of the event `sse_events` puts in a batch where it dropped an over-long line (the reader goes on: what
# follows, the usage the call is billed by included, is still read).
OVERLONG = b"\x00overlong"


Event = tuple[bytes | None, bytes]  # (the `event:` name if any, the data)


async def sse_batches(content: aiohttp.StreamReader) -> AsyncIterator[list[bytes]]:
    """The `data` of each server-sent event, batched as `sse_events` batches them."""
    async for batch in sse_events(content):
        yield [data for name, data in batch if name is not OVERLONG]


async def sse_events(content: aiohttp.StreamReader) -> AsyncIterator[list[Event]]:  # noqa: C901 - one pass over SSE's field grammar, kept whole for the hot path
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

    skipping = False  # inside an over-long line: its bytes are dropped up to its end
    while block := await content.readany():
        if skipping:
            end = block.find(b"\n")
            if end < 0:
                continue
            block, skipping = block[end + 1 :], False
        *complete, pending = (pending + block).split(b"\n")
        batch: list[Event] = []
        for raw in complete:
            take(raw, batch)
        if len(pending) > MAX_SSE_LINE:
            pending, skipping, lines, name = b"", True, [], None  # the event it belonged to is dropped whole
            batch.append((OVERLONG, b""))
        if batch:
            yield batch
    batch = []
    if pending:
        take(pending, batch)
    if lines:
        batch.append((name, b"\n".join(lines)))
    if batch:
        yield batch
