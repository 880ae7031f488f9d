"""Event-loop and process helpers."""

from __future__ import annotations

import asyncio
import signal


def reraise_cancellation() -> None:
    """A checkpoint for a loop that runs until its task is cancelled: raise the cancellation again if an await
    below swallowed it. CPython 3.11's asyncio.wait_for, which redis-py wraps every write in, returns the
    write's result when the cancel lands just as the write completes, and the task then runs on; its
    cancelling() count still shows the request (3.12 rebuilt wait_for on asyncio.timeout, which keeps it)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def die_with_parent(sig: int = signal.SIGKILL) -> None:  # pragma: no cover - runs in a child between fork and exec
    """`preexec_fn` for child processes: the kernel sends `sig` (default SIGKILL) when the parent dies
    (Linux PR_SET_PDEATHSIG), so a killed worker or runner leaves no orphans behind."""
    import contextlib
    import ctypes

    # No libc.so.6 or no prctl (not Linux): no such guarantee there. Nothing may be logged here (between fork
    # and exec), so only those two failures are let pass.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)
