"""Structured JSON logs (Powertools Logger) for the library's own `kilo_bridge.*` loggers."""

from __future__ import annotations

import logging
import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger


@cache
def get_logger() -> Logger:
    """The one Powertools Logger; library modules log through `logging.getLogger(__name__)`."""
    logger = Logger(service=os.getenv("POWERTOOLS_SERVICE_NAME", "kilo-bridge"))
    lib = logging.getLogger("kilo_bridge")
    lib.handlers = [logger.registered_handler]
    lib.setLevel(logger.log_level)
    lib.propagate = False
    return logger


class _NoTracer:
    """Stands in for Powertools' Tracer when tracing is off, with the one decorator our handlers use."""

    def capture_lambda_handler(self, lambda_handler: Any = None, **_options: Any) -> Any:
        return lambda_handler if lambda_handler is not None else (lambda handler: handler)


def get_tracer() -> Any:
    """Powertools Tracer, or a no-op when POWERTOOLS_TRACE_DISABLED is set: the Tracer imports the X-Ray SDK
    and botocore even when disabled, 0.31-0.48 s of each function's cold import (`aws_xray_sdk.core`, cumulative,
    in the cold-import report of 2026-11-25: `git show 714b5c8^:docs/benchmarks/coldstart.md`; the current
    docs/benchmarks/coldstart.md is measured with this no-op)."""
    if os.getenv("POWERTOOLS_TRACE_DISABLED", "").lower() in ("1", "true"):
        return _NoTracer()
    from aws_lambda_powertools import Tracer

    return Tracer()


# Admission refusals have these reasons only (usage/ledger.py): a dimension value from a closed set.
REFUSAL_REASONS = frozenset({"unauthorized", "budget_exceeded", "model_not_allowed", "rate_limited"})


class EmfSink:
    """`kilo_bridge.metrics` on Lambda: CloudWatch metrics in the embedded metric format (Powertools), one EMF
    line per figure, so it works in the buffered function (Mangum) and the streaming one (uvicorn) alike.
    Dimensions are bounded: `reason` (four codes) and `outcome` (ok, failed); never a model id or a path a
    client chose (the gateway's model ids are in the logs, and in Prometheus locally)."""

    def __init__(self, namespace: str = "KiloBridge") -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        self.namespace, self.unit, self.single = namespace, MetricUnit, single_metric

    def _emit(self, name: str, unit: Any, value: float, **dimensions: str) -> None:
        with self.single(name=name, unit=unit, value=value, namespace=self.namespace) as metric:
            for key, dim in dimensions.items():
                metric.add_dimension(name=key, value=dim)

    def refused(self, reason: str) -> None:
        self._emit("AdmissionRefused", self.unit.Count, 1, reason=reason if reason in REFUSAL_REASONS else "other")

    def settled(self, model: str, ok: bool, spend_nusd: int, prompt_tokens: int, completion_tokens: int) -> None:
        outcome = "ok" if ok else "failed"
        self._emit("GatewayCalls", self.unit.Count, 1, outcome=outcome)
        if spend_nusd:
            self._emit("SpendUsd", self.unit.NoUnit, spend_nusd / 1e9)
        if prompt_tokens + completion_tokens:
            self._emit("Tokens", self.unit.Count, prompt_tokens + completion_tokens)

    def upstream_s(self, seconds: float) -> None:
        self._emit("UpstreamLatency", self.unit.Milliseconds, seconds * 1000)
