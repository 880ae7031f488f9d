"""The reconciliation of `make bench-reconcile`, smaller: a mixed load on three keys against the counting fake
upstream while Redis (the test's own, with its append-only file) is paused, then killed and restarted; clients
hang up mid-stream and the upstream refuses some calls. Everything the upstream billed is then in the keys' spend,
the stats and the credits, to the nano-dollar, and no reservation is open within 60 s."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import redis

from kilo_bridge.config import Settings
from tests.benchmarks.reconcile import (
    ADMIN,
    PREFIX,
    CountingGateway,
    Tally,
    faults_during,
    load,
    make_keys,
    settle_and_count,
)
from tests.support import RedisServer


def test_what_the_upstream_billed_is_what_the_ledger_counts_under_faults(
    serve: Callable[..., str], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    server = RedisServer(tmp_path)
    server.extra = ["--appendonly", "yes", "--appendfsync", "always"]
    server.start()
    try:
        with CountingGateway() as fake:
            url = serve(
                make_settings(
                    kilo_gateway_base=f"{fake.url}/api/gateway",
                    redis_url=server.url,
                    redis_prefix=PREFIX,
                    redis_timeout_ms=300,
                    auth_required=True,
                    admin_api_key=ADMIN,
                    reservation_owner_timeout_s=3,
                )
            )
            keys = make_keys(url)
            tally = Tally()
            faults = faults_during(
                lambda stop: asyncio.run(load([url], keys, 2_000, 8, tally, stop)),
                server.pause,
                server.resume,
                server.stop,
                server.start,
                [],
                outage_s=5,
            )
            assert len(faults) == 2
            r = redis.Redis.from_url(server.url)
            (spend, stats, credits, reserved), _took = settle_and_count(r, fake, keys, wait_s=60)
            r.close()
            assert fake.billed_calls > 50
            assert tally.hung_up > 0 and tally.answers.get("503", 0) > 0  # the faults were met
            assert (spend, stats, credits, reserved) == (fake.billed_nusd, fake.billed_nusd, fake.billed_nusd, 0)
    finally:
        server.stop()
