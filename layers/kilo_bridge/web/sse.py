"""A lean `text/event-stream` response for the streaming routes.

It replaced sse-starlette, which wraps every send in an anyio timeout scope and logs every chunk (~0.07 ms per
relayed chunk when it was replaced; measured once, not in a report). Against Starlette's own
`StreamingResponse` of the same `encode`d bytes, on a real uvicorn (docs/benchmarks/sse.md, 2026-12-02,
50 events of 100 bytes per stream), it served 1.27x the streams per second at 1 client and 1.21x at 16 with
the relay's batched writes (10 events per write; p50 of a whole stream 0.255 against 0.330 ms at 1 client),
and 1.26x / 1.08x with one event per write; so it stays.

This one sends each event as it comes (one ASGI message, nothing per send), writes a `: keep-alive` comment
only when nothing was sent for `keepalive_s` (one timer task per stream), sends events that arrived together
(one upstream read) in one write, and stops the event iterator (so its cleanup runs: usage recorded,
upstream dropped) when the client hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping, Sequence

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
KEEPALIVE = b": keep-alive\n\n"
# What a stream yields: one event, several that arrived together (sent in one write), or events already framed.
Item = Mapping[str, str] | Sequence[Mapping[str, str]] | bytes


def encode(event: Mapping[str, str]) -> bytes:
    """`event:` (when named) and `data:` lines; every line break in the data starts a new `data:` line, so no
    text can end the event early or forge another one."""
    data = event.get("data", "")
    if "\n" in data or "\r" in data:
        body = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    else:
        body = f"data: {data}\n"
    name = event.get("event")
    if name:
        body = f"event: {_LINE_BREAK.sub('', name)}\n{body}"
    event_id = event.get("id")
    if event_id:  # what a reconnecting client sends back as Last-Event-ID
        body = f"id: {_LINE_BREAK.sub('', event_id)}\n{body}"
    return (body + "\n").encode()


def frame(data: bytes, name: bytes | None = None) -> bytes:
    """An upstream event relayed as it came, bytes to bytes (the relay's per-chunk path: no decoding). Data or a
    name holding a line break goes through `encode`, which splits it into lines of their own."""
    if b"\r" in data or b"\n" in data or (name is not None and b"\r" in name):
        return encode({"data": data.decode(), "event": name.decode() if name else ""})
    if name:
        return b"event: " + name + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


class EventStream(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[Item],
        keepalive_s: float,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        drain_s: float = 0.0,
    ) -> None:
        self.events = events
        self.keepalive_s = keepalive_s
        # After the client hangs up, the events still run to their end for this long (what is sent goes nowhere):
        # a generation's stream reaches the upstream's final usage, which it is billed by.
        self.drain_s = drain_s
        self.status_code = 200
        self.background = background  # run once the stream is over, whether it ended or the client hung up
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no", **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(receive, send)
        finally:
            if self.background is not None:
                await self.background()

    async def _stream(self, receive: Receive, send: Send) -> None:  # noqa: C901 - one stream's loop: events, keep-alives, disconnect, end
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})

        async def relay() -> None:
            nonlocal last_sent
            async for item in self.events:
                if isinstance(item, bytes):
                    body = item
                elif isinstance(item, Mapping):
                    body = encode(item)
                else:
                    body = b"".join(encode(e) for e in item)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                last_sent = loop.time()

        async def keepalive() -> None:
            nonlocal last_sent
            while True:
                await asyncio.sleep(max(0.0, last_sent + self.keepalive_s - loop.time()))
                if loop.time() - last_sent >= self.keepalive_s:
                    await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                    last_sent = loop.time()

        async def hang_up() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        relaying = asyncio.ensure_future(relay())
        watchers = [asyncio.ensure_future(keepalive()), asyncio.ensure_future(hang_up())]
        try:
            done, _ = await asyncio.wait([relaying, watchers[1]], return_when=asyncio.FIRST_COMPLETED)
            if relaying not in done and self.drain_s > 0:
                watchers[0].cancel()
                done, _ = await asyncio.wait([relaying], timeout=self.drain_s)
        finally:
            for task in (*watchers, relaying):
                task.cancel()
            for task in (*watchers, relaying):
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:  # a client that hung up: the iterator's cleanup still runs
                await aclose()
        if relaying in done and relaying.exception() is None:
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif relaying in done:
            raise relaying.exception()  # type: ignore[misc]


def sse_response(events: AsyncIterator[Item], keepalive_s: float) -> Response:
    return EventStream(events, keepalive_s)
