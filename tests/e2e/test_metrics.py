"""`GET /metrics` from `kilo-bridge serve` with two web processes: scraped and parsed by prometheus_client's own
text parser, its counters match the requests made, whichever process served each and whichever answers the scrape.
Behind the admin key when keys are required."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kilo_bridge.config import Settings, settings_env
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import ROOT, free_port, wait_http

ADMIN = "admin-key-not-real-0123456789"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def server(make_settings: Callable[..., Settings], tmp_path: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    port = free_port()
    settings = make_settings(port=port, web_concurrency=2, auth_required=True, admin_api_key=ADMIN)
    metrics_dir = tmp_path / "prometheus"
    env = {
        **os.environ,
        **settings_env(settings),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "kilo_bridge", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc)
    yield url, metrics_dir
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_every_request_across_two_web_processes(
    server: tuple[str, Path], fake: FakeGatewayThread
) -> None:
    url, metrics_dir = server
    assert httpx.get(f"{url}/metrics").status_code == 401
    assert httpx.get(f"{url}/metrics", headers={"x-api-key": "kb_not-the-admin"}).status_code == 401
    key = httpx.post(f"{url}/api/kilo/admin/keys", json={"name": "m", "models": ["fake/*"]}, headers=AS_ADMIN).json()
    poor = httpx.post(f"{url}/api/kilo/admin/keys", json={"name": "p", "budgetUsd": 0.000001}, headers=AS_ADMIN).json()
    fake.script([{"kind": "ok", "cost": 0.01}] * 20)
    for _ in range(20):  # a new connection each: the kernel spreads them over both processes
        r = httpx.post(
            f"{url}/api/kilo/generate", json={"prompt": "x", "model": "fake/model-a"}, headers={"x-api-key": key["key"]}
        )
        assert r.status_code == 200
    for _ in range(3):
        r = httpx.post(
            f"{url}/api/kilo/generate",
            json={"prompt": "x", "model": "fake/model-a"},
            headers={"x-api-key": poor["key"]},
        )
        assert r.status_code == 402
    for _ in range(4):
        with (
            openai.OpenAI(base_url=f"{url}/v1", api_key=key["key"], max_retries=0) as client,
            pytest.raises(openai.PermissionDeniedError),
        ):
            client.chat.completions.create(model="kilo-auto/free", messages=[{"role": "user", "content": "x"}])
    with httpx.stream(
        "POST",
        f"{url}/api/kilo/generate-stream",
        json={"prompt": "x", "model": "fake/model-a"},
        headers={"x-api-key": key["key"]},
    ) as stream:
        assert stream.status_code == 200
        stream.read()

    # Both processes counted some of it (prometheus_client's multiprocess files are per process id).
    assert len({p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}) == 2

    for _ in range(4):  # whichever process answers the scrape, the figures are the same sums
        scrape = httpx.get(f"{url}/metrics", headers=AS_ADMIN)
        assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
        found = samples(scrape.text)
        assert value(found, "kilo_bridge_requests_total", route="/api/kilo/generate", method="POST", status="200") == 20
        assert value(found, "kilo_bridge_requests_total", route="/api/kilo/generate", method="POST", status="402") == 3
        assert (
            value(found, "kilo_bridge_requests_total", route="/v1/chat/completions", method="POST", status="403") == 4
        )
        assert (
            value(found, "kilo_bridge_requests_total", route="/api/kilo/generate-stream", method="POST", status="200")
            == 1
        )
        assert value(found, "kilo_bridge_requests_total", route="/metrics", method="GET", status="401") == 2
        assert value(found, "kilo_bridge_request_seconds_count", route="/api/kilo/generate") == 23
        assert value(found, "kilo_bridge_admission_refusals_total", reason="budget_exceeded") == 3
        assert value(found, "kilo_bridge_admission_refusals_total", reason="model_not_allowed") == 4
        assert value(found, "kilo_bridge_gateway_calls_total", model="fake/model-a", outcome="ok") == 21
        assert value(found, "kilo_bridge_spend_usd_total", model="fake/model-a") == pytest.approx(0.2, abs=1e-4)
        assert value(found, "kilo_bridge_tokens_total", model="fake/model-a", kind="completion") > 0
        assert value(found, "kilo_bridge_upstream_seconds_count") == 20
        assert value(found, "kilo_bridge_streams_open") == 0
        assert found[("kilo_bridge_queue_depth", frozenset())] == 0
    assert key["key"] not in scrape.text and ADMIN not in scrape.text
