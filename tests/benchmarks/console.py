"""`make bench-console`: the web console's first load on loopback — bytes and requests it takes, and the time
from navigation to a rendered overview (the stats request answered and its chart drawn) — in Debian's
Chromium driven by Playwright, each load in a fresh browser context (a cold cache), against a real server
(`kilo-bridge serve`, real Redis, the fake Kilo Gateway). Writes docs/benchmarks/console.md.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers"))

from tests.benchmarks.run import free_port  # noqa: E402
from tests.fakes.fake_gateway import FakeGatewayThread  # noqa: E402

LOADS = int(os.getenv("BENCH_CONSOLE_LOADS", "15"))
REDIS_URL = os.getenv("REDIS_URL", "redis://127.0.0.1:6379/0")
OUT = ROOT / "docs" / "benchmarks" / "console.md"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# The overview is rendered when its chart (an SVG the page draws from /api/kilo/stats) is in the document.
RENDERED = "svg"


def load_once(browser: Any, url: str) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    sizes: list[int] = []

    def on_response(response: Any) -> None:
        try:
            sizes.append(len(response.body()))
        except Exception:  # a response without a body (204, a stream still open)
            sizes.append(0)

    page.on("response", on_response)
    start = time.perf_counter()
    page.goto(f"{url}/#/overview")
    page.wait_for_selector(RENDERED, state="attached", timeout=20_000)
    elapsed = (time.perf_counter() - start) * 1000
    page.wait_for_load_state("networkidle")
    result = {"ms": elapsed, "requests": float(len(sizes)), "bytes": float(sum(sizes))}
    context.close()
    return result


def main() -> int:
    from playwright import sync_api as playwright

    port = free_port()
    prefix = f"{{kbbench-{uuid.uuid4().hex[:8]}}}:"
    with FakeGatewayThread() as fake:
        env = {
            **os.environ,
            "PORT": str(port),
            "REDIS_URL": REDIS_URL,
            "REDIS_PREFIX": prefix,
            "KILO_API_KEY": "bench-key-not-real",
            "KILO_GATEWAY_BASE": f"{fake.url}/api/gateway",
            "JOBS_CONCURRENCY": "0",
            "PYTHONPATH": f"{ROOT / 'layers'}:{ROOT}",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "kilo_bridge", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.get(url + "/healthz")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            for _ in range(3):  # some spend today, so the chart has a bar to draw
                httpx.post(url + "/api/kilo/generate", json={"prompt": "hello"}, timeout=10)
            with playwright.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                load_once(browser, url)  # warm the server and the browser binary, not measured
                loads = [load_once(browser, url) for _ in range(LOADS)]
                browser.close()
        finally:
            server.terminate()
            server.wait(10)
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
    ms = sorted(x["ms"] for x in loads)
    p50, p90 = statistics.median(ms), ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    requests = statistics.median(x["requests"] for x in loads)
    kbytes = statistics.median(x["bytes"] for x in loads) / 1024
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    OUT.write_text(
        "# Console first load\n\n"
        f"Measured {when} by `make bench-console` (`tests/benchmarks/console.py`) on {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other work: {LOADS} loads of `/#/overview`, each in a fresh "
        "Chromium context (cold cache), against `kilo-bridge serve` on loopback with real Redis and the fake "
        "Kilo Gateway. Time is navigation start → the overview's chart in the document (its stats request "
        "answered and drawn); requests and bytes are every response the load took (page, script, style, API "
        "calls), bodies as sent.\n\n"
        "| first load | value |\n|---|---|\n"
        f"| time to a rendered overview, p50 | {p50:.0f} ms |\n"
        f"| time to a rendered overview, p90 | {p90:.0f} ms |\n"
        f"| requests | {requests:.0f} |\n"
        f"| bytes transferred | {kbytes:.1f} KiB |\n\n"
        "Plain HTML, CSS and JavaScript with no framework or vendored library (the chart is SVG bars and the "
        "diff view a small renderer), so the page is a few files and the rest are the API calls it makes.\n"
    )
    print(f"console first load: p50 {p50:.0f} ms, p90 {p90:.0f} ms, {requests:.0f} requests, {kbytes:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
