"""SQS (agent queue) → one ECS Fargate task per job. Thin: the logic is `kilo_bridge.jobs.ecs`.

Partial batch failures: a message whose task could not be started is retried; on its last receive the job
fails (`dispatch_failed`) instead. A redelivered message finds its job's task started and starts nothing, or
takes over the lapsed lease of a dispatcher that died before RunTask answered.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from kilo_bridge.config import load_settings
from kilo_bridge.jobs.ecs import dispatch, job_id_of_message
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.observability import get_logger, get_tracer
from kilo_bridge.platform.lambda_runtime import run_sync
from kilo_bridge.platform.redis import Store

logger = get_logger()
tracer = get_tracer()
metrics = Metrics(namespace="KiloBridge")
settings = load_settings()
jobs = JobStore(Store(settings))
# Report every failed message, even when all failed, instead of failing the whole invocation.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


# Kept back from the invocation's remaining time: the lease is given back and the batch reported in it.
MARGIN_S = 5.0


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> str:
    job_id = job_id_of_message(record.body)
    if job_id is None:
        # A poison message: fail it so it ends in the DLQ for inspection rather than vanishing.
        raise ValueError(f"message {record.message_id} carries no valid jobId")
    deadline = time.monotonic() + lambda_context.get_remaining_time_in_millis() / 1000 - MARGIN_S
    receives = int(record.attributes.approximate_receive_count or 1)
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
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
