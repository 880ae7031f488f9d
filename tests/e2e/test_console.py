"""The web console in a real browser (Debian's Chromium driven by Playwright) against a real server running
real jobs (the stand-in agent on a local repository). Screenshots of each page go to docs/console/."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright import sync_api as playwright

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
ADMIN = "admin-key-not-real-0123456789"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A tab that records every console error and uncaught exception."""

    def __init__(self, browser: Any, base: str, width: int = 1100) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def go(self, hash_: str) -> Any:
        self.page.goto(f"{self.base}/#{hash_}")
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def server(serve: Callable[..., str], job_settings: Callable[..., Settings]) -> str:
    return serve(job_settings(admin_api_key=ADMIN))


@pytest.fixture
def tab(browser: Any, server: str) -> Iterator[Page]:
    page = Page(browser, server)
    yield page
    page.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_every_page_loads_without_a_console_error_and_the_chart_shows_todays_spend(
    tab: Page, server: str, fake: FakeGatewayThread
) -> None:
    fake.script([{"kind": "ok", "text": "hello there", "cost": 0.0123}])
    assert httpx.post(server + "/api/kilo/generate", json={"prompt": "hi"}).status_code == 200
    page = tab.go("/overview")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    chart = page.locator("figure.chart svg")
    chart.wait_for()
    assert today in (chart.get_attribute("aria-label") or "")
    assert page.locator("figure.chart rect.spend").count() >= 1
    shot(page, "overview")
    for where, ready in (
        ("/jobs", "#status-filter"),
        ("/run", "select[name=agent]"),
        ("/playground", "textarea[name=prompt]"),
        ("/keys", "input[name=admin]"),
    ):
        page = tab.go(where)
        page.locator(ready).wait_for()
        shot(page, where.strip("/"))
    assert tab.errors == []
    headers = httpx.get(server + "/").headers
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"


def test_a_job_started_from_the_console_streams_live_and_ends_once(
    tab: Page, server: str, fake_github: FakeGitHub
) -> None:
    page = tab.go("/run")
    page.select_option("select[name=agent]", "apply-patch-and-pr")
    page.get_by_label("Repository URL").fill(fake_github.repo_url("acme", "widgets"))
    page.get_by_label("Prompt").fill("make a change")
    secrets = [
        ("GITHUB_TOKEN", GITHUB_TOKEN),
        ("FAKE_KILO_MODE", "steps"),
        ("FAKE_KILO_STEPS", "8"),
        ("FAKE_KILO_STEP_COST", "0"),
    ]
    for i, (name, value) in enumerate(secrets):
        if i:
            page.get_by_role("button", name="Add a secret").click()
        page.locator(f"input[name=env-name-{i}]").fill(name)
        page.locator(f"input[name=env-value-{i}]").fill(value)
    page.get_by_role("button", name="Start the job").click()
    page.wait_for_url("**/#/job/job_*")
    job_id = page.url.rsplit("/", 1)[1]
    log = page.get_by_role("log", name="live log")
    # A line shows while the job still runs: the log is live, not replayed at the end.
    log.get_by_text("done (tool-calls", exact=False).first.wait_for()
    running = httpx.get(f"{server}/api/kilo/job/{job_id}").json()
    page.get_by_test_id("log-end").wait_for(timeout=60_000)
    assert running["status"] == "running"
    assert page.get_by_test_id("log-end").count() == 1
    assert "succeeded" in page.get_by_test_id("job-status").inner_text()
    page.get_by_test_id("diff").locator(".add").first.wait_for()  # the diff, added lines marked
    assert GITHUB_TOKEN not in page.content()  # a secret typed once is not on the page again
    shot(page, "job")
    # Chromium's own EventSource, left to reconnect after `end`: the 204 stops it, with exactly one end.
    ends = page.evaluate(
        """(url) => new Promise((done) => {
        const es = new EventSource(url); let ends = 0;
        es.addEventListener("end", () => { ends += 1; });
        es.onerror = () => { if (es.readyState === EventSource.CLOSED) done(ends); };
    })""",
        f"/api/kilo/job/{job_id}/logs",
    )
    assert ends == 1
    assert tab.errors == []


def test_cancel_from_the_job_page(tab: Page, server: str, fake_github: FakeGitHub) -> None:
    body = run_body(
        fake_github.repo_url("acme", "widgets"),
        dryRun=True,
        profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "sleep"},
    )
    job_id = httpx.post(server + "/api/kilo/run-agent", json=body).json()["jobId"]
    page = tab.go(f"/job/{job_id}")
    page.get_by_role("log", name="live log").get_by_text("thinking for a long time").wait_for(timeout=60_000)
    page.get_by_role("button", name="Cancel").click()
    page.get_by_test_id("log-end").wait_for(timeout=60_000)
    assert "cancelled" in page.get_by_test_id("job-status").inner_text()
    with httpx.Client(base_url=server) as client:
        assert wait_job(client, job_id)["status"] == "cancelled"


def test_a_key_is_created_and_revoked(tab: Page) -> None:
    page = tab.go("/keys")
    page.get_by_label("Admin key").fill(ADMIN)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Name", exact=True).fill("console-test")
    page.get_by_label("Budget USD").fill("5")
    page.get_by_role("button", name="Create").click()
    secret = page.get_by_test_id("new-key").locator(".secret").inner_text()
    assert len(secret) > 20
    row = page.get_by_role("row").filter(has_text="console-test")
    assert "active" in row.inner_text()
    shot(page, "keys")
    row.get_by_role("button", name="Revoke console-test").click()
    page.get_by_role("row").filter(has_text="revoked").wait_for()
    assert tab.errors == []


def test_with_auth_required_the_pages_refuse_without_a_key(
    browser: Any, serve: Callable[..., str], job_settings: Callable[..., Settings]
) -> None:
    from kilo_bridge.keys.store import KeyStore
    from kilo_bridge.platform.redis import Store

    settings = job_settings(auth_required=True)

    async def make_key() -> str:
        store = Store(settings)
        try:
            return (await KeyStore(store).create("console"))[0]
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as pool:  # Playwright's own loop runs in this thread
        key = pool.submit(asyncio.run, make_key()).result()
    tab = Page(browser, serve(settings), width=420)  # a narrow window too
    try:
        for where in ("/overview", "/jobs", "/run"):
            page = tab.go(where)
            page.get_by_role("heading", name="API key required").wait_for()
            assert page.locator("figure.chart, #status-filter, select[name=agent]").count() == 0
        shot(page, "key-required")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Use this key").click()
        page.locator("select[name=agent]").wait_for()
        assert key not in page.url
        # The console's own errors are the refused requests (401), nothing else.
        assert all("401" in e for e in tab.errors), tab.errors
    finally:
        tab.close()
