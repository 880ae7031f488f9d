"""The Redis `make run` starts (scripts/ensure_redis.py) requires a password kept in a file only its user can
read; the bridge finds it there without being told, and a client without it is refused. It keeps its data: an
append-only file, fsynced every second, in a data directory kept across runs; killed (SIGKILL, as a crash or a
reboot would) and started again by the script, it still has what was written."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kilo_bridge.config import load_settings
from kilo_bridge.platform.redis import Store
from tests.jobkit import pid_alive
from tests.support import ROOT, free_port, run_sync, text


def raw(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command)
        return sock.recv(256)


@pytest.fixture
def embedded() -> Iterator[tuple[int, Path]]:
    port = free_port()
    password_file = ROOT / ".run" / f"redis-{port}.password"  # where `make run` keeps it: nothing configured
    env = {**os.environ, "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port)}
    for name in ("REDIS_URL", "REDIS_PASSWORD_FILE", "REDIS_PASSWORD"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "scripts/ensure_redis.py"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    pidfile = ROOT / ".run" / f"redis-{port}.pid"
    try:
        yield port, password_file
    finally:
        if pidfile.exists():
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while pid_alive(pid) and time.monotonic() < deadline:  # it writes its log on the way out
                time.sleep(0.05)
        for name in (f"redis-{port}.conf", f"redis-{port}.log", f"redis-{port}.password"):
            (ROOT / ".run" / name).unlink(missing_ok=True)
        shutil.rmtree(ROOT / ".run" / f"redis-{port}", ignore_errors=True)  # its data directory


def test_the_embedded_redis_refuses_a_client_without_the_password(embedded: tuple[int, Path]) -> None:
    port, password_file = embedded
    assert raw(port, b"PING\r\n").startswith(b"-NOAUTH")
    assert raw(port, b"SET k v\r\n").startswith(b"-NOAUTH")
    assert raw(port, b"AUTH default wrong-password\r\n").startswith(b"-WRONGPASS")
    # The password is in a file only the runner's user can read, and nowhere on redis-server's command line.
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert len(password) >= 32
    pid = (ROOT / ".run" / f"redis-{port}.pid").read_text().strip()
    assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert stat.S_IMODE((ROOT / ".run" / f"redis-{port}.conf").stat().st_mode) == 0o600
    assert raw(port, b"AUTH default " + password.encode() + b"\r\nPING\r\n").startswith(b"+OK\r\n+PONG")


def test_the_bridge_finds_the_password_where_make_run_keeps_it(
    embedded: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, _ = embedded
    monkeypatch.chdir(ROOT)  # `make run` serves from the project's directory
    settings = load_settings(redis_host="127.0.0.1", redis_port=port)
    assert settings.redis_password is not None

    async def ping() -> object:
        store = Store(settings)
        try:
            return await store.call("PING")
        finally:
            await store.close()

    assert run_sync(ping()) in ("PONG", b"PONG", True)


def test_the_embedded_redis_keeps_its_data_across_a_kill_and_a_restart(embedded: tuple[int, Path]) -> None:
    port, password_file = embedded
    r = redis.Redis(port=port, password=password_file.read_text().strip())
    assert r.config_get("appendonly") == {"appendonly": "yes"}  # (CONFIG on the test's own server)
    assert r.config_get("appendfsync") == {"appendfsync": "everysec"}
    data_dir = ROOT / ".run" / f"redis-{port}"
    assert Path(text(r.config_get("dir")["dir"])) == data_dir.resolve()
    r.hset("{kb}:apikey:abc", mapping={"name": "kept", "budget_nusd": 5})
    deadline = time.monotonic() + 20
    while not any(b"kept" in f.read_bytes() for f in data_dir.rglob("*") if f.is_file()):  # fsynced within a second
        assert time.monotonic() < deadline, "the write never reached the append-only file"
        time.sleep(0.05)
    r.close()
    pid = int((ROOT / ".run" / f"redis-{port}.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # no chance to save anything more
    deadline = time.monotonic() + 20
    while pid_alive(pid):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    env = {**os.environ, "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port)}
    for name in ("REDIS_URL", "REDIS_PASSWORD_FILE", "REDIS_PASSWORD"):
        env.pop(name, None)
    done = subprocess.run(  # `make run` again
        [sys.executable, "scripts/ensure_redis.py"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    r = redis.Redis(port=port, password=password_file.read_text().strip())  # a new password each start
    assert r.hgetall("{kb}:apikey:abc") == {b"name": b"kept", b"budget_nusd": b"5"}
    r.close()
