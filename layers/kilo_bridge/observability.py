"""Structured JSON logs (Powertools Logger) for the library's own `kilo_bridge.*` loggers."""

from __future__ import annotations

import logging
import os
from functools import cache

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
