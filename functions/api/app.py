"""Lambda entry point for the short routes: API Gateway (REST) → Mangum → the shared ASGI app.

Thin by design: all logic is in the `kilo_bridge` layer. Built once per execution environment, so the
pooled gateway and Redis clients live across invocations.
"""

from __future__ import annotations

import gc

# A cold start creates some 100,000 objects while importing, and the collector walks them again at every
# threshold it crosses (~35 ms of the API function's import). It is off until this module has loaded; the end of
# the file freezes what the import built (it lives as long as the process) and switches it back on.
gc.disable()

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from kilo_bridge.observability import get_logger, get_tracer
from kilo_bridge.web.app import create_app

logger = get_logger()
tracer = get_tracer()
metrics = Metrics(namespace="KiloBridge")
# lifespan="off": Mangum would otherwise run startup/shutdown on every invocation and close the pools.
asgi = Mangum(create_app(), lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = asgi(event, context)  # type: ignore[arg-type]  # Mangum's own LambdaContext protocol
    status = int(response.get("statusCode", 500))
    metrics.add_dimension(name="route", value=str(event.get("resource") or "unknown"))
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    if status >= 500:
        metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
    elif status >= 400:
        metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
    return response


# The import is over: its objects live as long as the process, so no later collection needs to walk them.
gc.freeze()
gc.enable()
