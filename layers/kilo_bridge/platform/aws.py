"""boto3 clients, made once per process and service, on first use: creating one costs ~80 ms (measured once,
not in a report; docs/benchmarks/coldstart.md times the imports, which create none).

`S3_ENDPOINT_URL` points S3 at any S3-compatible store (Linode Object Storage, MinIO, moto); boto3 itself
honours `AWS_ENDPOINT_URL` for every service.
"""

from __future__ import annotations

import threading
from typing import Any

from kilo_bridge.config import Settings

_clients: dict[tuple[str, str | None], Any] = {}
# Services whose calls the caller retries itself, within its own time budget (jobs/ecs.py: ecs:RunTask, inside
# the dispatcher's timeout): one attempt each and a short read timeout, not botocore's four.
_OWN_RETRIES = {"ecs"}
_lock = threading.Lock()


def client(service: str, settings: Settings | None = None) -> Any:
    endpoint = settings.s3_endpoint_url if settings is not None and service == "s3" else None
    with _lock:
        cached = _clients.get((service, endpoint))
        if cached is None:
            import boto3
            from botocore.config import Config

            own = service in _OWN_RETRIES
            config = Config(
                retries={"max_attempts": 1 if own else 4, "mode": "standard"},
                connect_timeout=5,
                read_timeout=15 if own else 30,
            )
            cached = boto3.session.Session().client(service, endpoint_url=endpoint, config=config)
            _clients[(service, endpoint)] = cached
        return cached


def reset_clients() -> None:
    """Forget cached clients (tests point them at a new endpoint)."""
    from kilo_bridge.config import reset_secrets_client

    with _lock:
        _clients.clear()
    reset_secrets_client()
