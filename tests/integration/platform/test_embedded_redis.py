"""The Redis `make run` starts (scripts/ensure_redis.py) keeps its data: append-only file, fsynced every second, in a
data directory kept across runs. Killed (SIGKILL, as a crash or a reboot would) and started again by the script,
it still has what was written."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis

from tests.support import ROOT, free_port


@pytest.fixture
def ensure_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("ensure_redis", ROOT / "scripts" / "ensure_redis.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RUN_DIR", tmp_path / ".run")
    monkeypatch.setattr(module, "DATA_DIR", tmp_path / ".run" / "redis")
    port = free_port()
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", str(port))
    yield module
    pidfile = tmp_path / ".run" / f"redis-{port}.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def wait_for(check: object, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_embedded_redis_keeps_its_data_across_a_kill_and_a_restart(ensure_redis: ModuleType) -> None:
    port = int(os.environ["REDIS_PORT"])
    assert ensure_redis.main() == 0
    r = redis.Redis(port=port)
    assert r.config_get("appendonly") == {"appendonly": "yes"}  # (CONFIG on the test's own server)
    assert r.config_get("appendfsync") == {"appendfsync": "everysec"}
    data_dir = Path(ensure_redis.DATA_DIR)
    assert Path(r.config_get("dir")["dir"]) == data_dir.resolve()
    r.hset("{kb}:apikey:abc", mapping={"name": "kept", "budget_nusd": 5})

    def on_disk() -> bool:
        return any(b"kept" in f.read_bytes() for f in data_dir.rglob("*") if f.is_file())

    assert wait_for(on_disk)  # fsynced within the second
    pidfile = Path(ensure_redis.RUN_DIR) / f"redis-{port}.pid"
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGKILL)  # no chance to save anything more
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text())
    r.close()

    assert ensure_redis.main() == 0  # `make run` again
    r = redis.Redis(port=port)
    assert r.hgetall("{kb}:apikey:abc") == {b"name": b"kept", b"budget_nusd": b"5"}
    r.close()
