"""The agent's egress proxy (HTTP, and CONNECT for HTTPS), served by its runner: the only way out of the
sandbox besides the model endpoint. Each request's host is checked against the allow-list, resolved here, and
the connection made to a vetted address (kilo_bridge.jobs.egress); every refusal is told to the job (its
live log, `egressDenied`). Why a small proxy of our own rather than a library: docs/security.md, "Egress"."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kilo_bridge.jobs.egress import EgressRules, normal_host

HEAD_MAX = 32_768
HEAD_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
PIPE_CHUNK = 65_536
Refused = Callable[[str, int, str], Awaitable[None]]


@dataclass(slots=True)
class Target:
    method: str
    host: str
    port: int
    head: bytes  # the request head to send upstream (plain HTTP), b"" for CONNECT


class BadRequest(Exception):
    pass


def parse_head(head: bytes) -> Target:
    """The request line and headers of a proxy request: `CONNECT host:port` or an absolute `http://` URL."""
    lines = head.split(b"\r\n")
    try:
        method, target, version = lines[0].decode("latin-1").split(" ")
    except ValueError:
        raise BadRequest("malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest("HTTP/1.x only")
    if method == "CONNECT":
        host, port = _authority(target, None)
        return Target(method, host, port, b"")
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() != "http":
        raise BadRequest("absolute http:// URLs only (https goes through CONNECT)")
    authority, slash, path = rest.partition("/")
    authority = authority.rpartition("@")[2]  # never forward credentials in the URL's userinfo
    host, port = _authority(authority, 80)
    kept = [
        line for line in lines[1:] if line and not line.lower().startswith((b"proxy-", b"connection:", b"keep-alive:"))
    ]
    request_line = f"{method} {slash or '/'}{path} {version}".encode("latin-1")
    return Target(method, host, port, b"\r\n".join([request_line, *kept, b"Connection: close", b"", b""]))


def _authority(text: str, default_port: int | None) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not port_text:
        if default_port is None:
            raise BadRequest("CONNECT needs host:port")
        return normal_host(host), default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadRequest("bad port")
    return normal_host(host), int(port_text)


class EgressProxy:
    def __init__(self, rules: EgressRules, refused: Refused) -> None:
        self.rules = rules
        self.refused = refused
        self.denied = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(HEAD_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        try:
            target = parse_head(head[:-4])
        except BadRequest as exc:
            await _answer(writer, 400, str(exc))
            return
        address, why = await self.vet(target.host, target.port)
        if address is None:
            self.denied += 1
            await self.refused(target.host, target.port, why)
            await _answer(writer, 403, f"egress to {target.host}:{target.port} refused: {why}")
            return
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                up_reader, up_writer = await asyncio.open_connection(address, target.port)
        except (OSError, TimeoutError) as exc:
            await _answer(writer, 502, f"cannot connect to {target.host}:{target.port}: {type(exc).__name__}")
            return
        try:
            if target.method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                up_writer.write(target.head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def vet(self, host: str, port: int) -> tuple[str | None, str]:
        """The address to connect to, or None and why not."""
        why = self.rules.host_refusal(host, port)
        if why:
            return None, why
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return None, "the name does not resolve"
        return self.rules.pick([str(info[4][0]) for info in infos], port)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(PIPE_CHUNK):
            dst.write(chunk)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except OSError:
        dst.close()


async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    body = (text + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(OSError):
        await writer.drain()
