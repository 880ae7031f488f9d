"""On Lambda the figures `/metrics` gives locally are CloudWatch metrics in the embedded metric format
(Powertools): functions/api invoked on API Gateway events against the fake gateway and the real Redis, its EMF
lines read back from stdout (what CloudWatch Logs turns into metrics). Dimensions stay bounded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import pytest

from kilo_bridge import metrics
from kilo_bridge.config import Settings
from kilo_bridge.keys.store import KeyStore
from kilo_bridge.platform.redis import Store
from scripts.invoke import Context, load_function
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import REDIS_URL, ROOT, TEST_KEY


@pytest.fixture
def api_module(monkeypatch: pytest.MonkeyPatch, fake: FakeGatewayThread, prefix: str) -> Iterator[ModuleType]:
    env = {
        "KILO_API_KEY": TEST_KEY,
        "KILO_GATEWAY_BASE": f"{fake.url}/api/gateway",
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": prefix,
        "AUTH_REQUIRED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "KiloBridgeTests",
        "AWS_LAMBDA_FUNCTION_NAME": "ApiFunction",  # deployed: Prometheus off, EMF on
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield load_function("api")
    metrics._SINK.clear()  # this process's next app installs its own


def emf(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]
    return [line for line in lines if line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "KiloBridgeTests"]


def invoke(api_module: ModuleType, key: str, model: str) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / "api" / "generate.json").read_text())
    event["body"] = json.dumps({"prompt": "hi", "model": model})
    event["headers"]["x-api-key"] = key
    event["multiValueHeaders"]["x-api-key"] = [key]
    answer: dict[str, Any] = api_module.handler(event, Context(function_name="ApiFunction", aws_request_id="emf-1"))
    return answer


def test_refusals_calls_spend_and_latency_are_cloudwatch_metrics(
    api_module: ModuleType,
    store_settings: Settings,
    fake: FakeGatewayThread,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def keys() -> tuple[str, str]:
        store = Store(store_settings)
        try:
            wide, _ = await KeyStore(store).create("emf", budget_usd=5)
            return wide, (await KeyStore(store).create("narrow", models=["fake/*"]))[0]
        finally:
            await store.close()

    # On a thread of its own: Mangum runs on this thread's event loop, which asyncio.run here would close.
    with ThreadPoolExecutor(1) as pool:
        key, narrow = pool.submit(asyncio.run, keys()).result()
    fake.script([{"kind": "ok", "cost": 0.02}])
    assert invoke(api_module, key, "fake/model-a")["statusCode"] == 200
    assert invoke(api_module, narrow, "anthropic/claude-sonnet-4.5")["statusCode"] == 403
    lines = emf(capsys.readouterr().out)
    by_name = {line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]: line for line in lines}

    def value(name: str) -> float:
        raw = by_name[name][name]  # Powertools writes a metric's values as a list
        return float(raw[0] if isinstance(raw, list) else raw)

    assert by_name["GatewayCalls"]["outcome"] == "ok" and value("GatewayCalls") == 1
    assert value("SpendUsd") == pytest.approx(0.02)
    assert value("Tokens") > 0 and value("UpstreamLatency") > 0
    assert by_name["AdmissionRefused"]["reason"] == "model_not_allowed"
    for line in lines:  # bounded: no model id, no key, no path a client chose
        dims = set(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0])
        assert dims <= {"service", "reason", "outcome"}, dims
        assert "fake/model-a" not in json.dumps(line) and key not in json.dumps(line)
