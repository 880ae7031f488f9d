"""EventBridge "ECS Task State Change" → a job whose task stopped before finishing it is failed with the
task's reason. Thin: the logic is `kilo_bridge.jobs.ecs.finalize`."""

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
from kilo_bridge.jobs.ecs import finalize
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.observability import get_logger, get_tracer
from kilo_bridge.platform.lambda_runtime import run_sync
from kilo_bridge.platform.redis import Store

logger = get_logger()
tracer = get_tracer()
metrics = Metrics(namespace="KiloBridge")
settings = load_settings()
jobs = JobStore(Store(settings))


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    outcome = run_sync(finalize(settings, jobs, event.get("detail") or {}))
    if outcome in ("failed", "ended-failed"):
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
    return {"outcome": outcome}


# The import is over: its objects live as long as the process, so no later collection needs to walk them.
gc.freeze()
gc.enable()
