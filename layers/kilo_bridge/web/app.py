"""The ASGI app: the same object behind uvicorn on :5000, Mangum (functions/api) and the Lambda Web
Adapter (functions/stream)."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.config import Settings, load_settings
from kilo_bridge.errors import BridgeError
from kilo_bridge.observability import get_logger
from kilo_bridge.services import Services, local_workers
from kilo_bridge.web.errors import CODE_BY_STATUS, ApiError, is_passthrough
from kilo_bridge.web.middleware import RequestContext
from kilo_bridge.web.routes import api

log = logging.getLogger("kilo_bridge.web.app")


def _rid(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if is_passthrough(request.url.path):
        body = exc.passthrough_body(request.url.path)
        return Response(orjson.dumps(body), exc.status, exc.passthrough_headers(), "application/json")
    return Response(exc.json_bytes(_rid(request)), exc.status, exc.headers, "application/json")


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BridgeError)
    return await _api_error(request, ApiError.of(exc, passthrough=is_passthrough(request.url.path)))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = CODE_BY_STATUS.get(exc.status_code, "error")
    message = {404: "No such route.", 405: "Method not allowed on this route."}.get(exc.status_code, str(exc.detail))
    return await _api_error(request, ApiError(exc.status_code, code, message, headers=dict(exc.headers or {})))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The traceback goes to our log, never to the client.
    log.exception("unhandled error", extra={"request_id": _rid(request), "path": request.url.path})
    error = ApiError(500, "internal_error", "An internal error occurred; it has been logged with this requestId.")
    return await _api_error(request, error)


def create_web_app() -> Starlette:
    """The app of `kilo-bridge serve`'s uvicorn workers (an import-string factory: there may be several
    processes). Without the job worker: `serve` runs that once, in a process of its own."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None:  # a uvicorn worker: it stops when `serve` dies
        from kilo_bridge.platform.aio import die_with_parent

        die_with_parent(signal.SIGTERM)
        if os.getppid() != parent.pid:  # `serve` died before that took effect
            raise SystemExit(1)
    return create_app(job_worker=False)


def create_app(settings: Settings | None = None, *, job_worker: bool = True) -> Starlette:
    settings = settings or load_settings()
    get_logger()
    services = Services.build(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(services.close)
            # Replays the settlements a predecessor left in the spool; releases the reservations of dead processes.
            services.ledger.start()
            if not os.getenv("AWS_LAMBDA_FUNCTION_NAME"):
                services.gateway.preload()
            if job_worker and settings.job_queue == "local" and settings.jobs_concurrency > 0:
                # The embedded default: jobs (and the schedules' firings) run in this process's workers.
                await stack.enter_async_context(local_workers(settings))
            yield

    middleware = [
        Middleware(
            RequestContext,
            max_body_bytes=settings.max_body_bytes,
            v1_max_body_bytes=settings.v1_max_body_bytes,
            max_in_flight=settings.max_concurrent_requests,
        )
    ]
    if settings.prometheus_enabled:  # imported only then: Lambda's cold start never pays for it
        from kilo_bridge.web.prometheus import RequestMetrics

        middleware.insert(0, Middleware(RequestMetrics))
    elif os.getenv("AWS_LAMBDA_FUNCTION_NAME"):  # deployed: the same figures as CloudWatch metrics (EMF)
        from kilo_bridge import metrics
        from kilo_bridge.observability import EmfSink

        metrics.install(EmfSink(os.getenv("POWERTOOLS_METRICS_NAMESPACE") or "KiloBridge"))
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if not settings.auth_is_required:  # an open server: loopback Host names only, no cross-site callers
        from kilo_bridge.web.local import OpenServerGuard

        middleware.append(Middleware(OpenServerGuard, origins=tuple(origins)))
    if origins:  # CORS is off unless origins are configured
        from starlette.middleware.cors import CORSMiddleware

        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                # last-event-id: a fetch-based SSE client resumes a job log with it.
                allow_headers=[
                    "authorization",
                    "x-api-key",
                    "content-type",
                    "x-request-id",
                    "idempotency-key",
                    "last-event-id",
                ],
                expose_headers=["x-request-id", "retry-after", "location"],
                max_age=600,
            ),
        )
    app = Starlette(routes=api.routes(), middleware=middleware, exception_handlers=HANDLERS, lifespan=lifespan)
    app.state.services = services
    return app


HANDLERS = {ApiError: _api_error, BridgeError: _domain_error, HTTPException: _http_error, Exception: _unexpected}


def create_door_app(settings: Settings, job_key: str) -> Starlette:
    """A job's model endpoint, served by its runner to its agent alone: the `/v1` inference routes (the same
    admission, budget and metering as the bridge's own `/v1`), open to the job's key only (whatever else the
    agent holds is refused before admission). The caller closes `app.state.services`."""
    from kilo_bridge.web.middleware import OnlyKey
    from kilo_bridge.web.routes import openai_compat

    services = Services.build(settings)
    middleware = [
        Middleware(
            RequestContext, max_body_bytes=settings.max_body_bytes, v1_max_body_bytes=settings.v1_max_body_bytes
        ),
        Middleware(OnlyKey, key=job_key),
    ]
    app = Starlette(routes=openai_compat.router.routes(), middleware=middleware, exception_handlers=HANDLERS)
    app.state.services = services
    return app
