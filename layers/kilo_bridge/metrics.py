"""Operational figures as plain calls the features make (`refused`, `settled`, `upstream_s`). Nothing is counted
until a sink is installed: the local server installs Prometheus (web/prometheus.py); elsewhere these are no-ops
that cost one global read. A base module: it imports nothing of ours, so every layer may call it."""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    def refused(self, reason: str) -> None: ...

    def settled(self, model: str, ok: bool, spend_nusd: int, prompt_tokens: int, completion_tokens: int) -> None: ...

    def upstream_s(self, seconds: float) -> None: ...


_SINK: list[Sink] = []


def install(sink: Sink) -> None:
    _SINK[:] = [sink]


def refused(reason: str) -> None:
    """An admission refused (`invalid_key`, `budget_exceeded`, `model_not_allowed`, `rate_limited`)."""
    if _SINK:
        _SINK[0].refused(reason)


def settled(model: str, ok: bool, spend_nusd: int, prompt_tokens: int, completion_tokens: int) -> None:
    """A gateway call accounted: its model, outcome, cost (nano-USD) and tokens."""
    if _SINK:
        _SINK[0].settled(model, ok, spend_nusd, prompt_tokens, completion_tokens)


def upstream_s(seconds: float) -> None:
    """How long the gateway took to answer one plain call (the gateway's share of its latency)."""
    if _SINK:
        _SINK[0].upstream_s(seconds)
