"""`python -m agent_task JOB_ID` (or JOB_ID in the environment): run one agent job and exit.

Exit 0 once the job is in a final state (whatever it is) or was not ours to run; 1 when the runner could
not do its work (e.g. Redis unreachable), so the container's exit code tells the finalizer.
"""

from __future__ import annotations

import asyncio
import os
import sys

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

    try:
        outcome = asyncio.run(Runner(settings, job_id).run())
    except Exception:
        logger.exception("runner could not run the job", extra={"job_id": job_id})
        return 1
    logger.info("runner done", extra={"job_id": job_id, "outcome": outcome})
    return 0


if __name__ == "__main__":
    sys.exit(main())
