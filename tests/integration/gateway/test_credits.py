"""Last-seen credits: the balance read from Kilo, when, and the spend counted since."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import TEST_KEY, eventually


def test_balance_is_read_and_spend_since_is_subtracted(client: httpx.Client, fake: FakeGatewayThread) -> None:
    fake.set_balance(12.5)
    first = client.get("/api/kilo/credits").json()
    assert first["balanceUsd"] == 12.5 and first["remainingUsd"] == 12.5 and first["stale"] is False
    assert first["source"] == "kilo-profile" and first["seenAt"].endswith("Z")
    balance_calls = [r for r in fake.requests if r["path"] == "/api/profile/balance"]
    assert balance_calls[-1]["headers"]["authorization"] == f"Bearer {TEST_KEY}"

    usage = client.post("/api/kilo/generate", json={"prompt": "a b c", "model": "fake/model-a"}).json()["usage"]
    # The call's usage is written once its answer is sent: read until it is counted.
    after = eventually(lambda: client.get("/api/kilo/credits").json(), lambda view: view["spentSinceUsd"] > 0)
    assert after["spentSinceUsd"] == pytest.approx(usage["costUsd"])
    assert after["remainingUsd"] == pytest.approx(12.5 - usage["costUsd"])
    assert len([r for r in fake.requests if r["path"] == "/api/profile/balance"]) == 1  # fresh: not re-read

    fake.set_balance(20.0)
    refreshed = client.get("/api/kilo/credits", params={"refresh": "true"}).json()
    assert refreshed["balanceUsd"] == 20.0 and refreshed["spentSinceUsd"] == 0


def test_failed_read_keeps_the_old_balance_and_says_why(
    serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    url = serve(make_settings(kilo_credits_max_age_s=0))
    fake.set_balance(3.0)
    assert httpx.get(url + "/api/kilo/credits").json()["balanceUsd"] == 3.0
    httpx.post(fake.url + "/_fake/balance", json={"status": 500})
    view = httpx.get(url + "/api/kilo/credits").json()
    assert view["balanceUsd"] == 3.0
    assert view["stale"] is True
    assert "HTTP 500" in view["lastError"]
    assert TEST_KEY not in str(view)
