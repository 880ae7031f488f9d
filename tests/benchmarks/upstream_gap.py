"""Why a 50 ms upstream widens the bridge's sequential added latency (issue 19, docs/benchmarks/compare.md).

A hop that does nothing (an asyncio byte relay, no parsing, no Redis) in front of a fake upstream that answers
after 0 or 50 ms, against calling the upstream directly: one sequential keep-alive client, p50 of each, the
four cases interleaved round by round. If the do-nothing hop's added p50 grows with the upstream's delay as the
bridge's does, the growth is the machine waking idle processes, not the bridge's code.

Env: BENCH_GAP_REQUESTS (per case and round, default 60), BENCH_GAP_ROUNDS (default 3).
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import socket
import statistics
import time

REQUESTS = int(os.getenv("BENCH_GAP_REQUESTS", "60"))
ROUNDS = int(os.getenv("BENCH_GAP_ROUNDS", "3"))
BODY = b'{"ok":true}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


async def _upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # the client is done with this connection
            writer.close()
            return
        delay_ms = int(head.split(b" ", 2)[1].strip(b"/") or b"0")  # GET /<delay ms>
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        writer.write(ANSWER)
        await writer.drain()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(65536):
        dst.write(data)
        await dst.drain()


async def _relay_pair(up_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    up_r, up_w = await asyncio.open_connection("127.0.0.1", up_port)
    back = asyncio.create_task(_pipe(up_r, writer))
    await _pipe(reader, up_w)
    up_w.close()
    await back
    writer.close()


def _serve(up_port: int | None, ports: multiprocessing.Queue[int]) -> None:
    async def main() -> None:
        factory = _upstream if up_port is None else functools.partial(_relay_pair, up_port)
        server = await asyncio.start_server(factory, "127.0.0.1", 0)
        ports.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def _start(up_port: int | None) -> tuple[int, multiprocessing.Process]:
    """The upstream (up_port None) or a relay to it, in a process of its own as in compare.py."""
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    proc = multiprocessing.Process(target=_serve, args=(up_port, ports), daemon=True)
    proc.start()
    return ports.get(timeout=30), proc


def _p50(port: int, delay_ms: int) -> float:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = f"GET /{delay_ms} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    times = []
    for _ in range(REQUESTS):
        began = time.perf_counter()
        sock.sendall(request)
        got = b""
        while not got.endswith(BODY):
            got += sock.recv(65536)
        times.append(time.perf_counter() - began)
    sock.close()
    return statistics.median(times) * 1e3


def main() -> None:
    up, up_proc = _start(None)
    relay, relay_proc = _start(up)
    cases: dict[tuple[str, int], list[float]] = {(hop, d): [] for hop in ("direct", "relay") for d in (0, 50)}
    for _ in range(ROUNDS):
        for (hop, d), out in cases.items():
            out.append(_p50(up if hop == "direct" else relay, d))
    for d in (0, 50):
        direct, relayed = statistics.median(cases[("direct", d)]), statistics.median(cases[("relay", d)])
        print(
            f"upstream {d:2} ms: direct p50 {direct:.3f} ms, through a do-nothing relay {relayed:.3f} ms, "
            f"added {relayed - direct:+.3f} ms"
        )
    relay_proc.terminate()
    up_proc.terminate()


if __name__ == "__main__":
    main()
