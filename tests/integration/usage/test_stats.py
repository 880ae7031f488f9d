"""The usage counters as the API shows them: totals, the last seven days, agent runs, the public badge."""

from __future__ import annotations

import httpx


def test_stats_and_badge(client: httpx.Client) -> None:
    for _ in range(3):
        client.post("/api/kilo/generate", json={"prompt": "hi"})
    stats = client.get("/api/kilo/stats").json()
    assert stats["totals"]["ok"] == 3
    assert len(stats["byDay"]) == 7
    assert set(stats["agentRuns"]) == {"queued", "running", "succeeded", "failed", "cancelled", "timedOut"}
    badge = client.get("/api/kilo/stats/badge")
    assert badge.headers["cache-control"].startswith("public")
    body = badge.json()
    assert body["schemaVersion"] == 1 and body["label"] == "powered by Kilo"
    assert body["message"].startswith("3 generations")
