"""`python -m agent_task JOB_ID` (or JOB_ID in the environment): run one agent job and exit.

Exit 0 once the job is in a final state (whatever it is) or was not ours to run; 1 when the runner could
not do its work (e.g. Redis unreachable), so the container's exit code tells the finalizer.

SIGTERM (ECS stopping the task: `aws ecs stop-task`, a scale-in, a Fargate retirement) cancels the job as a
user's cancel does: the agent is stopped, the job ends `cancelled` with its partial result (diff, log, usage) kept,
inside the container's StopTimeout. The task's init (InitProcessEnabled) delivers the signal to this process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from kilo_bridge.config import ConfigError, load_settings
from kilo_bridge.observability import get_logger


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job_id = args[0] if args else os.environ.get("JOB_ID", "")
    logger = get_logger()
    if not job_id:
        print("usage: python -m agent_task JOB_ID (or set JOB_ID)", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    from agent_task.runner import Runner

    runner = Runner(settings, job_id)
    try:
        outcome = asyncio.run(_run_until_done(runner))
    except Exception:
        logger.exception("runner could not run the job", extra={"job_id": job_id})
        return 1
    logger.info("runner done", extra={"job_id": job_id, "outcome": outcome})
    return 0


async def _run_until_done(runner: Any) -> str:
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Task[None]] = set()  # a reference, so the cancel is not collected mid-flight

    def on_sigterm() -> None:
        task = loop.create_task(_cancel(runner))
        stopping.add(task)
        task.add_done_callback(stopping.discard)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    outcome: str = await runner.run()
    return outcome


async def _cancel(runner: Any) -> None:
    """SIGTERM: the job is cancelled as a user cancels it (the store's cancel), so the runner's own cancel path
    runs: its next heartbeat sees the request, the agent is stopped, the job ends `cancelled` with what it had done
    (a job not yet claimed ends at once)."""
    get_logger().warning("SIGTERM: cancelling the job", extra={"job_id": runner.job_id})
    record = await runner.jobs.get(runner.job_id)
    if record is not None:
        await runner.jobs.cancel(runner.job_id, record.owner)


if __name__ == "__main__":
    sys.exit(main())
