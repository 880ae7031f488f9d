"""SQS (agent queue) → one ECS Fargate task per job. Thin: the logic is `kilo_bridge.jobs.ecs`.

Partial batch failures: a message whose task could not be started is retried; on its last receive the job
fails (`dispatch_failed`) instead. A redelivered message finds its job's task started and starts nothing, or
takes over the lapsed lease of a dispatcher that died before RunTask answered.

It also reads the dead-letter queue (AGENT_DEAD_LETTER_QUEUE_ARN): a message there can no longer start its job,
so a job still queued with no task is failed (`dispatch_failed`) within the minute, however the message got
there. A message naming no job stays in the dead-letter queue for inspection.
"""

from __future__ import annotations

import gc

# A cold start creates some 100,000 objects while importing, and the collector walks them again at every
# threshold it crosses (~35 ms of the API function's import). It is off until this module has loaded; the end of
# the file freezes what the import built (it lives as long as the process) and switches it back on.
gc.disable()

import time
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from kilo_bridge.config import load_settings
from kilo_bridge.jobs.ecs import dispatch, fail_dead_lettered, job_id_of_message
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.observability import get_logger, get_tracer
from kilo_bridge.platform.lambda_runtime import run_sync
from kilo_bridge.platform.redis import Store

logger = get_logger()
tracer = get_tracer()
metrics = Metrics(namespace="KiloBridge")
settings = load_settings()
jobs = JobStore(Store(settings))


# Kept back from the invocation's remaining time: the lease is given back and the batch reported in it.
MARGIN_S = 5.0


def record_handler(record: dict[str, Any], lambda_context: LambdaContext) -> str:
    job_id = job_id_of_message(str(record.get("body") or ""))
    if job_id is None:
        # A poison message: fail it so it ends in (or stays in) the DLQ for inspection rather than vanishing.
        raise ValueError(f"message {record.get('messageId')} carries no valid jobId")
    if settings.agent_dead_letter_queue_arn and record.get("eventSourceARN") == settings.agent_dead_letter_queue_arn:
        outcome = run_sync(fail_dead_lettered(jobs, job_id))
        if outcome == "failed":
            metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
        return outcome
    deadline = time.monotonic() + lambda_context.get_remaining_time_in_millis() / 1000 - MARGIN_S
    receives = int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)
    outcome = run_sync(dispatch(settings, jobs, job_id, receive_count=receives, deadline=deadline))
    if outcome == "dispatched":
        metrics.add_metric(name="TasksStarted", unit=MetricUnit.Count, value=1)
    elif outcome == "failed":  # the JobsFailed alarm counts it, as the finalizer's
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
    return outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # SQS partial batch response: every failed message is reported (even when all failed) and only those are
    # received again. Written out rather than Powertools' BatchProcessor, whose import pulls in every event
    # data class (~28 ms of this function's cold start) for a loop this short.
    failures = []
    for record in event.get("Records") or []:
        try:
            record_handler(record, context)
        except Exception as exc:
            logger.warning(
                "message not dispatched", extra={"message_id": record.get("messageId"), "error": type(exc).__name__}
            )
            failures.append({"itemIdentifier": record.get("messageId")})
    return {"batchItemFailures": failures}


# The import is over: its objects live as long as the process, so no later collection needs to walk them.
gc.freeze()
gc.enable()
