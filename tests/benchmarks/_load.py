"""Shared pieces of the side-by-side benchmarks: server processes and the keep-alive load generator.

The port and RSS functions come from `tests/benchmarks/run.py`; `timed_request` times a request as run.py's
`one_request` does (first body byte carrying `data:`, last byte) and also notes when each streamed event arrived.
What differs here:

- `Server` drains the process's output for its whole life: a proxy that logs a line per request into an unread
  pipe blocks once the pipe's 64 KiB buffer fills, which would look like a latency cliff of the proxy itself.
- Readiness is a real request answered 200, not a log line: each system words its banner differently.
- `load` warms every connection up first and starts the clock only when all of them are warm, so req/s counts
  timed requests over timed seconds; it also accepts extra request headers (Portkey routes by header).
- Streams also yield the chunk relay gap: the mean time between consecutive SSE events as the client receives them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from tests.benchmarks.run import KEY, free_port, one_request, peak_rss_mb

__all__ = [
    "KEY",
    "Server",
    "free_port",
    "load",
    "one_request",
    "peak_rss_mb",
    "request_bytes",
    "timed_request",
    "tree_peak_rss_mb",
]

ROOT = Path(__file__).resolve().parents[2]


def request_bytes(port: int, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """One keep-alive HTTP/1.1 POST with a JSON body; `Authorization` defaults to the obvious fake key."""
    raw = json.dumps(body).encode()
    all_headers = {
        "Host": f"127.0.0.1:{port}",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {KEY}",
        **(headers or {}),
        "Content-Length": str(len(raw)),
    }
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
    return head.encode() + raw


_LENGTH = re.compile(rb"(?i)content-length: *(\d+)")


async def timed_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes
) -> tuple[float, float, float]:
    """(time to first body byte carrying `data:`, total, mean gap between consecutive SSE events) in seconds.

    The gap is NaN for plain answers. Events that arrive in one read share a timestamp, as a client would see them."""
    start = time.perf_counter()
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:200].decode(errors="replace"))
    match = _LENGTH.search(head)
    if match:
        await reader.readexactly(int(match.group(1)))
        now = time.perf_counter() - start
        return now, now, math.nan
    first = last = 0.0
    events = 0
    while True:  # chunked
        size = int((await reader.readline()).strip(), 16)
        data = await reader.readexactly(size + 2)
        n = data.count(b"data:")
        if n:
            last = time.perf_counter() - start
            if not events:
                first = last
            events += n
        if size == 0:
            gap = (last - first) / (events - 1) if events > 1 else math.nan
            return first, time.perf_counter() - start, gap


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    kids = [int(p) for p in text.split()]
    return kids + [g for k in kids for g in _children(k)]


def tree_peak_rss_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of a process plus its descendants: a server may fork workers or child processes."""
    total = 0.0
    for p in (pid, *_children(pid)):
        with contextlib.suppress(OSError):  # a child may exit between listing and reading
            total += peak_rss_mb(p)
    return total


@dataclass
class Server:
    """A server process started in its own process group, its output kept (last lines) for diagnostics."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40))

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.tail.append(line.decode(errors="replace").rstrip())

    def wait_ready(self, req: bytes, timeout_s: float = 90.0) -> float:
        """Seconds until `req` is answered 200 (start-up time); raises with the output tail if it never is."""
        assert self.proc is not None
        began = time.monotonic()
        last = ""
        while time.monotonic() - began < timeout_s:
            if self.proc.poll() is not None:
                break
            try:
                asyncio.run(_probe(self.port, req))
                return time.monotonic() - began
            except (OSError, RuntimeError, asyncio.IncompleteReadError, ValueError) as exc:
                last = str(exc)[:200]
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready ({last}):\n" + "\n".join(self.tail))

    def peak_rss_mb(self) -> float:
        assert self.proc is not None
        return tree_peak_rss_mb(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL after 10 s: nothing it started outlives the run."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass


async def _probe(port: int, req: bytes) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    try:
        await asyncio.wait_for(timed_request(reader, writer, req), 5)
    finally:
        writer.close()


class Samples(TypedDict):
    """One load run: requests completed, timed seconds, and per-request seconds (total, to first byte, and the
    largest gap between stream chunks where there was one)."""

    n: int
    elapsed: float
    total: list[float]
    ttfb: list[float]
    gap: list[float]


async def load(
    port: int, req: bytes, concurrency: int, seconds: float, warmup: int = 20, warmup_s: float = 0.5
) -> Samples:
    """`concurrency` keep-alive clients firing back to back for `seconds`; raw samples in seconds.

    Each connection first sends `warmup` untimed requests, or fewer if `warmup_s` runs out: a slow system at 16
    clients would otherwise spend longer warming up than being measured."""
    ttfb: list[float] = []
    total: list[float] = []
    gaps: list[float] = []
    warm = asyncio.Event()
    ready = 0
    clock: dict[str, float] = {}

    async def worker() -> None:
        nonlocal ready
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            until = time.perf_counter() + warmup_s
            for _ in range(warmup):  # connection set-up, JIT (node) and caches stay out of the timed part
                await timed_request(reader, writer, req)
                if time.perf_counter() > until:
                    break
            ready += 1
            if ready == concurrency:
                clock["start"] = time.perf_counter()
                clock["deadline"] = clock["start"] + seconds
                warm.set()
            await warm.wait()
            while time.perf_counter() < clock["deadline"]:
                f, t, g = await timed_request(reader, writer, req)
                ttfb.append(f)
                total.append(t)
                if not math.isnan(g):
                    gaps.append(g)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - clock["start"]
    return {"n": len(total), "elapsed": elapsed, "total": total, "ttfb": ttfb, "gap": gaps}
