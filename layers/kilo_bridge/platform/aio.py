"""Event-loop helpers shared by the pooled clients."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def reraise_cancellation() -> None:
    """A checkpoint for a loop that runs until its task is cancelled: raise the cancellation again if an await
    below swallowed it. CPython 3.11's asyncio.wait_for, which redis-py wraps every write in, returns the
    write's result when the cancel lands just as the write completes, and the task then runs on; its
    cancelling() count still shows the request (3.12 rebuilt wait_for on asyncio.timeout, which keeps it)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class PerLoop(Generic[T]):
    """One instance of a pooled client per running event loop.

    Pools (aiohttp sessions, redis connections) are bound to the loop that created them. Mangum keeps
    one loop across Lambda invocations, so the pool is reused there; a new loop (tests, a restarted
    server) gets a fresh one instead of a broken one.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        if self._value is None or self._loop is not loop:
            self._value = self._factory()
            self._loop = loop
        return self._value

    def current(self) -> T | None:
        return self._value

    def forget(self) -> None:
        self._value = None
        self._loop = None


def die_with_parent(sig: int = signal.SIGKILL) -> None:  # pragma: no cover - runs in a child between fork and exec
    """`preexec_fn` for child processes: the kernel sends `sig` (default SIGKILL) when the parent dies
    (Linux PR_SET_PDEATHSIG), so a killed worker or runner leaves no orphans behind."""
    import contextlib
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)
