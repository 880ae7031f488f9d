"""EventBridge Scheduler → `{"task": "refresh-credits" | "reap-jobs" | "run-agent", "body": {...}}`.
Thin: the logic is `kilo_bridge.scheduled_tasks`."""

from __future__ import annotations

import gc

# A cold start creates some 100,000 objects while importing, and the collector walks them again at every
# threshold it crosses (~35 ms of the API function's import). It is off until this module has loaded; the end of
# the file freezes what the import built (it lives as long as the process) and switches it back on.
gc.disable()

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from kilo_bridge.config import load_settings
from kilo_bridge.observability import get_logger, get_tracer
from kilo_bridge.platform.lambda_runtime import run_sync
from kilo_bridge.scheduled_tasks import run_task
from kilo_bridge.services import Services

logger = get_logger()
tracer = get_tracer()
metrics = Metrics(namespace="KiloBridge")
services = Services.build(load_settings())


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = run_sync(run_task(services, event))
    if result["task"] == "refresh-credits" and result.get("balanceUsd") is not None:
        metrics.add_metric(name="CreditBalanceUsd", unit=MetricUnit.Count, value=float(result["balanceUsd"]))
    elif result["task"] == "reap-jobs":
        failed = sum(1 for status in result["ended"].values() if status != "succeeded")
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=failed)
    logger.info("scheduled task done", extra={"result": result})
    return result


# The import is over: its objects live as long as the process, so no later collection needs to walk them.
gc.freeze()
gc.enable()
