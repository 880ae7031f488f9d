"""The agent's egress proxy (agent_task/proxy.py) on real sockets: a real target server on loopback, requests
written byte by byte as a client (or an attacker) would send them. Refused: names and literals that lead to
loopback in any spelling, hosts and ports not on the allow-list; every refusal told once, with host, port and
why. Allowed: an allow-listed private endpoint named exactly, over plain HTTP and CONNECT."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from agent_task.proxy import EgressProxy
from kilo_bridge.jobs.egress import EgressRules, parse_allow, parse_private

BODY = b"hello from the allowed server"


@dataclass
class Rig:
    proxy_port: int
    target_port: int
    other_port: int
    proxy: EgressProxy
    refusals: list[tuple[str, int, str]] = field(default_factory=list)
    target_heads: list[bytes] = field(default_factory=list)


async def _target(heads: list[bytes]) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    heads: list[bytes] = []
    target, other = await _target(heads), await _target(heads)
    target_port = target.sockets[0].getsockname()[1]
    other_port = other.sockets[0].getsockname()[1]
    refusals: list[tuple[str, int, str]] = []

    async def refused(host: str, port: int, why: str) -> None:
        refusals.append((host, port, why))

    # As a test sets it up: the loopback server by name on the allow-list, its exact address let through.
    rules = EgressRules(
        parse_allow(
            f"localhost:{target_port},localhost:{other_port},2130706433:{other_port},0x7f.1:{other_port},"
            f"[::ffff:127.0.0.1]:{other_port},[::1]:{other_port}"
        ),
        parse_private(f"127.0.0.1:{target_port}"),
    )
    proxy = EgressProxy(rules, refused)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    yield Rig(server.sockets[0].getsockname()[1], target_port, other_port, proxy, refusals, heads)
    server.close()
    await proxy.close()
    for s in (target, other):
        s.close()


async def ask(rig: Rig, head: bytes, then: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.proxy_port)
    writer.write(head)
    if then:
        answer = await reader.readuntil(b"\r\n\r\n")
        if not answer.startswith(b"HTTP/1.1 200"):
            writer.close()
            return answer
        writer.write(then)
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_an_allow_listed_private_endpoint_is_reached_over_http_and_connect(rig: Rig) -> None:
    plain = await ask(
        rig,
        b"GET http://localhost:%d/x?y=1 HTTP/1.1\r\nHost: localhost\r\nProxy-Authorization: Basic eA==\r\n\r\n"
        % rig.target_port,
    )
    assert plain.startswith(b"HTTP/1.1 200") and plain.endswith(BODY), plain
    sent = rig.target_heads[-1]
    assert sent.startswith(b"GET /x?y=1 HTTP/1.1\r\n") and b"Proxy-Authorization" not in sent
    tunnel = await ask(
        rig, b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % rig.target_port, b"GET / HTTP/1.1\r\n\r\n"
    )
    assert tunnel.endswith(BODY), tunnel
    assert rig.refusals == [] and rig.proxy.denied == 0


@pytest.mark.parametrize(
    "host",
    [
        "localhost",  # a name that resolves to 127.0.0.1
        "2130706433",  # decimal 127.0.0.1
        "0x7f.1",  # hex and short form
        "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6 literal
        "[::1]",
    ],
)
async def test_loopback_in_any_spelling_is_refused_though_the_list_names_it(rig: Rig, host: str) -> None:
    # Each spelling is on the allow-list for the other server's port, whose address no private entry lifts:
    # the resolved address is what counts.
    for head in (
        b"CONNECT %s:%d HTTP/1.1\r\n\r\n" % (host.encode(), rig.other_port),
        b"GET http://%s:%d/ HTTP/1.1\r\n\r\n" % (host.encode(), rig.other_port),
    ):
        answer = await ask(rig, head)
        assert answer.startswith(b"HTTP/1.1 403") and b"loopback" in answer, (head, answer)
    assert len(rig.refusals) == 2 and all(r[1] == rig.other_port for r in rig.refusals)
    assert rig.target_heads == []


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b"CONNECT example.org:443 HTTP/1.1\r\n\r\n", "allow-list"),
        (b"GET http://example.org/ HTTP/1.1\r\n\r\n", "allow-list"),
        (b"CONNECT localhost:22 HTTP/1.1\r\n\r\n", "allow-list"),  # an allowed host on a port not listed
        (b"CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n", "allow-list"),
        (b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", "allow-list"),  # its address, but not by a listed name
        (b"GET http://us.eu.posthog.com/capture HTTP/1.1\r\n\r\n", "allow-list"),  # the CLI's telemetry
    ],
)
async def test_what_the_list_does_not_name_is_refused_and_told(rig: Rig, head: bytes, why: str) -> None:
    if b"%d" in head:
        head = head % rig.target_port
    answer = await ask(rig, head)
    assert answer.startswith(b"HTTP/1.1 403") and why.encode() in answer, answer
    assert len(rig.refusals) == 1 and why in rig.refusals[0][2]
    assert rig.target_heads == []


@pytest.mark.parametrize(
    "head",
    [b"GET https://localhost/ HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n", b"CONNECT localhost HTTP/1.1\r\n\r\n"],
)
async def test_requests_a_proxy_does_not_serve_are_bad_requests(rig: Rig, head: bytes) -> None:
    answer = await ask(rig, head)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert rig.target_heads == []
