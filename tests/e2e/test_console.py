"""The web console in a real browser (Debian's Chromium driven by Playwright) against a real server running
real jobs (the stand-in agent on a local repository). Screenshots of each page go to docs/console/."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import time
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

    def __init__(self, browser: Any, base: str, width: int = 1280, height: int = 800) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
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
    # job_workdir: the default place, so the screenshots' logs show what a user's would, not a test's temp path
    return serve(job_settings(admin_api_key=ADMIN, job_workdir=None))


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
        if where != "/jobs":  # the jobs list's screenshot, with jobs in it, is test_console_jobs.py's
            shot(page, where.strip("/"))
    # The saved-things pages, empty here (their screenshots, filled in, come from their own tests).
    for where, ready in (
        ("/profiles", "input[name=name]"),
        ("/triggers", "select[name=agent]"),
        ("/schedules", "input[name=cron]"),
    ):
        tab.go(where).locator(ready).wait_for()
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
    # The story: what came of it, the task, and no heartbeat ticking on an ended job.
    assert page.get_by_test_id("outcome").inner_text() == "dry run: diff kept, nothing pushed"
    assert page.get_by_test_id("task").inner_text() == "make a change"
    assert page.get_by_test_id("heartbeat").inner_text().startswith("ended")
    assert page.get_by_role("row").filter(has_text="phases").inner_text().count(" s") >= 3
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
        for where in ("/overview", "/jobs", "/run", "/profiles", "/triggers", "/schedules"):
            page = tab.go(where)
            page.get_by_role("heading", name="API key required").wait_for()
            shown = "figure.chart, #status-filter, select[name=agent], input[name=name], input[name=cron], table"
            assert page.locator(shown).count() == 0, where
        shot(page, "key-required")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Use this key").click()
        page.locator("select[name=agent]").wait_for()
        assert key not in page.url
        # The console's own errors are the refused requests (401), nothing else.
        assert all("401" in e for e in tab.errors), tab.errors
    finally:
        tab.close()


SECRET_VALUE = "profile-value-not-real-7f3a9c"  # an obvious fake: it must never come back to the page


def test_a_profile_is_saved_rotated_and_deleted_and_its_values_never_reach_the_page(tab: Page) -> None:
    bodies: list[str] = []  # every response the page received, read in full

    def keep(response: Any) -> None:
        try:
            bodies.append(response.text())
        except Exception:  # a redirect or an aborted request has no body to read
            bodies.append("")

    tab.page.on("response", keep)
    page = tab.go("/profiles")
    page.get_by_label("Profile name").fill("deploy-bot")
    page.get_by_label("Variable name 1").fill("GITHUB_TOKEN")
    page.get_by_label("Value 1").fill(SECRET_VALUE)
    page.get_by_role("button", name="Add a variable").click()
    page.get_by_label("Variable name 2").fill("DEPLOY_REGION")
    page.get_by_label("Value 2").fill(SECRET_VALUE + "-2")
    page.get_by_role("button", name="Save the profile").click()
    page.get_by_role("status").get_by_text("Profile deploy-bot saved.").wait_for()
    row = page.get_by_role("row").filter(has_text="deploy-bot")
    assert "DEPLOY_REGION, GITHUB_TOKEN" in row.inner_text()
    shot(page, "profiles")
    row.get_by_role("button", name="Rotate deploy-bot").click()
    rotate = page.get_by_role("form", name="Rotate profile deploy-bot")
    names = [rotate.get_by_label(f"Variable name {i}").input_value() for i in (1, 2)]
    assert names == ["DEPLOY_REGION", "GITHUB_TOKEN"]  # the names kept, the values not
    assert rotate.get_by_label("Value 1").input_value() == ""
    rotate.get_by_label("Value 1").fill(SECRET_VALUE + "-rotated")
    rotate.get_by_label("Value 2").fill(SECRET_VALUE + "-rotated-2")
    rotate.get_by_role("button", name="Replace the values").click()
    page.get_by_role("status").get_by_text("Profile deploy-bot rotated.").wait_for()
    page.reload()
    page.get_by_role("row").filter(has_text="deploy-bot").wait_for()
    assert SECRET_VALUE not in page.content()
    assert all(SECRET_VALUE not in b for b in bodies) and len(bodies) > 5
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete deploy-bot").click()
    page.get_by_role("status").get_by_text("Profile deploy-bot deleted.").wait_for()
    assert page.get_by_role("row").filter(has_text="deploy-bot").count() == 0
    assert SECRET_VALUE not in page.content()
    assert all(SECRET_VALUE not in b for b in bodies)
    assert tab.errors == []


def sign(secret: str, body: bytes) -> dict[str, str]:
    """A trigger call's signature headers, as a sender computes them."""
    ts = str(int(time.time()))
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Kilo-Timestamp": ts, "X-Kilo-Signature": "sha256=" + mac}


def test_a_trigger_shows_its_url_and_secret_once_lists_its_deliveries_and_rotates_its_secret(
    tab: Page, server: str, fake_github: FakeGitHub
) -> None:
    page = tab.go("/triggers")
    page.get_by_label("Trigger name").fill("ci failures")
    page.select_option("select[name=agent]", "apply-patch-and-pr")
    page.get_by_label("Repository URL").fill(fake_github.repo_url("acme", "widgets"))
    page.get_by_label("Prompt template").fill("Fix the build: {{ body.failure }}")
    page.get_by_label("Cost cap per run in USD").fill("2")
    page.get_by_role("button", name="Create the trigger").click()
    new = page.get_by_test_id("new-trigger")
    secret = new.get_by_test_id("trigger-secret").inner_text()
    url = new.get_by_test_id("trigger-url").inner_text()
    assert len(secret) >= 32 and "/api/kilo/triggers/trg_" in url
    assert "not shown again" in new.inner_text()
    card = page.get_by_role("region", name="trigger ci failures")
    assert url in card.inner_text() and "apply-patch-and-pr" in card.inner_text()
    shot(page, "triggers")
    # A signed call starts a run: the trigger's card lists that delivery and its job.
    body = b'{"failure": "test_widgets"}'
    called = httpx.post(url, content=body, headers={"Content-Type": "application/json", **sign(secret, body)})
    assert called.status_code == 202, called.text
    job_id = called.json()["jobId"]
    page.reload()
    card = page.get_by_role("region", name="trigger ci failures")
    card.get_by_role("link", name=job_id).wait_for()
    assert "started" in card.inner_text()
    assert page.get_by_test_id("new-trigger").count() == 0
    assert secret not in page.content()  # shown once: a reload does not bring it back
    page.once("dialog", lambda d: d.accept())
    card.get_by_role("button", name="Rotate the secret of ci failures").click()
    rotated = page.get_by_test_id("new-trigger").get_by_test_id("trigger-secret").inner_text()
    assert rotated != secret and len(rotated) >= 32
    old_call = httpx.post(url, content=body, headers={"Content-Type": "application/json", **sign(secret, body)})
    assert old_call.status_code == 401  # the old secret verifies nothing now
    page.reload()
    page.get_by_role("region", name="trigger ci failures").wait_for()
    assert rotated not in page.content() and page.get_by_test_id("new-trigger").count() == 0
    page.once("dialog", lambda d: d.accept())
    card.get_by_role("button", name="Delete ci failures").click()
    page.get_by_role("status").get_by_text("Trigger ci failures deleted.").wait_for()
    assert page.get_by_role("region", name="trigger ci failures").count() == 0
    with httpx.Client(base_url=server) as client:
        wait_job(client, job_id)
    assert tab.errors == []


def test_a_schedule_is_created_paused_resumed_and_deleted_and_a_bad_cron_is_explained(
    tab: Page, fake_github: FakeGitHub
) -> None:
    page = tab.go("/schedules")
    page.get_by_label("Schedule name").fill("nightly deps")
    page.get_by_label("Cron").fill("*/5 * * * *")  # too often
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.select_option("select[name=agent]", "apply-patch-and-pr")
    page.get_by_label("Repository URL").fill(fake_github.repo_url("acme", "widgets"))
    page.get_by_label("Prompt").fill("update the dependencies")
    page.get_by_role("button", name="Create the schedule").click()
    alert = page.get_by_role("status").get_by_role("alert")
    alert.wait_for()
    assert "cron: runs at most every 10 minutes" in alert.inner_text()
    page.get_by_label("Cron").fill("0 3 * * *")
    page.get_by_role("button", name="Create the schedule").click()
    page.get_by_role("status").get_by_text("Schedule nightly deps created.").wait_for()
    row = page.get_by_role("row").filter(has_text="nightly deps")
    assert "0 3 * * *" in row.inner_text() and "Europe/Berlin" in row.inner_text()
    assert " 03:00 +0" in row.inner_text()  # the next run in the schedule's own zone (+01:00 or +02:00)
    assert row.get_by_test_id("schedule-state").inner_text() == "enabled"
    assert "—" not in row.locator("td").nth(5).inner_text()  # a next run is shown
    shot(page, "schedules")
    row.get_by_role("button", name="Pause nightly deps").click()
    page.get_by_role("status").get_by_text("Schedule nightly deps paused.").wait_for()
    row = page.get_by_role("row").filter(has_text="nightly deps")
    assert row.get_by_test_id("schedule-state").inner_text() == "paused"
    assert row.locator("td").nth(5).inner_text() == "—"  # paused: no next run
    row.get_by_role("button", name="Resume nightly deps").click()
    page.get_by_role("status").get_by_text("Schedule nightly deps resumed.").wait_for()
    assert page.get_by_role("row").filter(has_text="nightly deps").get_by_test_id("schedule-state").inner_text() == (
        "enabled"
    )
    page.once("dialog", lambda d: d.dismiss())  # a dismissed confirm deletes nothing
    page.get_by_role("button", name="Delete nightly deps").click()
    assert page.get_by_role("row").filter(has_text="nightly deps").count() == 1
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete nightly deps").click()
    page.get_by_role("status").get_by_text("Schedule nightly deps deleted.").wait_for()
    assert page.get_by_role("row").filter(has_text="nightly deps").count() == 0
    # The refused create is the page's only console error (the browser logs a 422 response).
    assert all("422" in e for e in tab.errors), tab.errors


def test_a_deploy_awaiting_approval_shows_what_would_run_and_deploys_on_approve(
    tab: Page, server: str, fake_github: FakeGitHub
) -> None:
    command = "echo shipping; echo KILO_DEPLOY_URL=https://widgets.example.test/v7"
    body = {
        "repoUrl": fake_github.repo_url("acme", "widgets"),
        "agent": "deploy",
        "profileEnv": {"GITHUB_TOKEN": GITHUB_TOKEN},
        "deploy": {"command": command, "allow": ["widgets.example.test"]},
        "requireApproval": True,
    }
    job_id = httpx.post(server + "/api/kilo/run-agent", json=body).json()["jobId"]
    page = tab.go(f"/job/{job_id}")
    approval = page.get_by_test_id("approval")
    approval.get_by_text(command).wait_for(timeout=60_000)
    assert "widgets.example.test" in approval.inner_text() and "awaiting" in approval.inner_text()
    shot(page, "deploy-approval")
    page.get_by_role("button", name="Approve deploy").click()
    page.get_by_test_id("log-end").wait_for(timeout=60_000)
    assert "succeeded" in page.get_by_test_id("job-status").inner_text()
    page.get_by_test_id("deploy-url").wait_for(timeout=10_000)
    assert page.get_by_test_id("deploy-url").inner_text() == "https://widgets.example.test/v7"
    assert "approved" in page.get_by_test_id("approval").inner_text()
    assert tab.errors == []
