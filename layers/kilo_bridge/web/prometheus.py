"""`GET /metrics` for the local server: Prometheus text from prometheus_client, summed across the web processes.

`kilo-bridge serve` runs several uvicorn worker processes; each writes its figures to files in
PROMETHEUS_MULTIPROC_DIR (set by cli.py before the workers start, emptied at each start) and a scrape, whichever
process answers it, reads them all (prometheus_client's multiprocess mode). Without that variable (one process,
e.g. a test's in-thread server) the process's own registry answers. Jobs by state and the queue depth are read
from Redis at scrape time: they are the service's, not a process's.

Imported only when PROMETHEUS_METRICS is on (the local server's default; off on Lambda: cold starts).
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kilo_bridge import metrics
from kilo_bridge.money import usd

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# Label values come from our own tables (route templates, error codes, the gateway's model ids), never from
# what a client sends as is: an unknown path is `unmatched`, so a scanner cannot grow the series without bound.
MAX_MODEL_LABEL = 120


class PrometheusSink:
    """The figures one process counts (module-level once: a registry refuses the same name twice)."""

    def __init__(self) -> None:
        self.requests = Counter("kilo_bridge_requests", "HTTP requests answered", ["route", "method", "status"])
        self.latency = Histogram(
            "kilo_bridge_request_seconds",
            "End-to-end time of a request (a stream: until its end)",
            ["route"],
            buckets=LATENCY_BUCKETS,
        )
        self.upstream = Histogram(
            "kilo_bridge_upstream_seconds",
            "The Kilo Gateway's share: its answer time for a plain call",
            buckets=LATENCY_BUCKETS,
        )
        self.streams = Gauge("kilo_bridge_streams_open", "Event streams open now", multiprocess_mode="livesum")
        self.refusals = Counter("kilo_bridge_admission_refusals", "Calls refused at admission", ["reason"])
        self.calls = Counter("kilo_bridge_gateway_calls", "Gateway calls accounted", ["model", "outcome"])
        self.spend = Counter("kilo_bridge_spend_usd", "What the gateway billed, USD", ["model"])
        self.tokens = Counter("kilo_bridge_tokens", "Tokens used", ["model", "kind"])

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def settled(self, model: str, ok: bool, spend_nusd: int, prompt_tokens: int, completion_tokens: int) -> None:
        model = model[:MAX_MODEL_LABEL]
        self.calls.labels(model, "ok" if ok else "failed").inc()
        if spend_nusd:
            self.spend.labels(model).inc(usd(spend_nusd))
        if prompt_tokens:
            self.tokens.labels(model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self.tokens.labels(model, "completion").inc(completion_tokens)

    def upstream_s(self, seconds: float) -> None:
        self.upstream.observe(seconds)


_SINK: list[PrometheusSink] = []


def install() -> PrometheusSink:
    """This process's sink, made once and handed to `kilo_bridge.metrics`."""
    if not _SINK:
        _SINK.append(PrometheusSink())
    metrics.install(_SINK[0])
    return _SINK[0]


class RequestMetrics:
    """Counts each request by its route template and status, and times it (plain ASGI, as RequestContext)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.sink = install()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        streaming = False

        async def counted_send(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"content-type" and value.startswith(b"text/event-stream"):
                        streaming = True
                        self.sink.streams.inc()
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        finally:
            if streaming:
                self.sink.streams.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.sink.requests.labels(template, scope["method"], str(status)).inc()
            self.sink.latency.labels(template).observe(time.perf_counter() - started)


def _registry() -> Any:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def scrape(agent_runs: dict[str, int], queue_depth: int | None) -> bytes:
    """The exposition: every process's counters, then the service's jobs by state and its queue depth."""
    service = CollectorRegistry(auto_describe=False)

    class Jobs:
        def collect(self) -> Any:
            jobs = GaugeMetricFamily("kilo_bridge_jobs", "Agent jobs by state (queued, running: now)", labels=["state"])
            for state, count in sorted(agent_runs.items()):
                jobs.add_metric([state], count)
            yield jobs
            if queue_depth is not None:
                yield GaugeMetricFamily("kilo_bridge_queue_depth", "Jobs waiting for a worker", value=queue_depth)

    service.register(Jobs())
    return bytes(generate_latest(_registry())) + bytes(generate_latest(service))
