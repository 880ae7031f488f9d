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
