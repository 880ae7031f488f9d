"""The console's governance pages in a real browser (Debian's Chromium via Playwright): a key's own page (its
budget period, spend and usage by model). Screenshots go to docs/console/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright import sync_api as playwright

from kilo_bridge.config import Settings
from tests.fakes.fake_gateway import FakeGatewayThread

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
ADMIN = "admin-key-not-real-0123456789"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (apt-get install -y chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def server(serve: Callable[..., str], make_settings: Callable[..., Settings]) -> str:
    return serve(make_settings(auth_required=True, admin_api_key=ADMIN))


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, list[str]]]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab, errors
    context.close()


def test_my_key_page_shows_the_budget_period_spend_and_usage_by_model(
    page: tuple[Any, list[str]], server: str, fake: FakeGatewayThread
) -> None:
    key = httpx.post(
        f"{server}/api/kilo/admin/keys",
        json={"name": "team-a", "budgetUsd": 3, "budgetPeriod": "month", "models": ["fake/*"]},
        headers={"Authorization": f"Bearer {ADMIN}"},
    ).json()
    fake.script([{"kind": "ok", "cost": 0.25}])
    httpx.post(
        f"{server}/api/kilo/generate", json={"prompt": "x", "model": "fake/model-a"}, headers={"x-api-key": key["key"]}
    ).raise_for_status()
    tab, errors = page
    tab.goto(f"{server}/#/me")
    tab.get_by_label("API key").fill(key["key"])
    tab.get_by_role("button", name="Use this key").click()
    tab.get_by_role("heading", name="My key: team-a").wait_for()
    assert tab.get_by_test_id("me-budget").inner_text() == "$3.00 per month"
    assert "spent this period $0.2500, resets " in tab.get_by_test_id("me-period").inner_text()
    assert tab.get_by_test_id("me-models").inner_text() == "models: fake/*"
    row = tab.get_by_role("row").filter(has_text="fake/model-a")
    assert "$0.2500" in row.inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / "me.png"), full_page=True)
    assert key["key"] not in tab.content()
    assert all("401" in e for e in errors), errors  # only the first, keyless request was refused


def test_the_audit_page_lists_changes_filters_them_and_records_the_login(
    page: tuple[Any, list[str]], server: str
) -> None:
    tab, errors = page
    tab.goto(f"{server}/#/audit")
    tab.get_by_label("Admin key").fill(ADMIN)
    tab.get_by_role("button", name="Continue").click()
    tab.get_by_role("heading", name="Audit log").wait_for()
    tab.get_by_role("row").filter(has_text="admin.login").wait_for()  # this login, recorded
    made = httpx.post(
        f"{server}/api/kilo/admin/keys", json={"name": "audited"}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    tab.get_by_label("Action").fill("key.")
    tab.get_by_role("button", name="Filter").click()
    row = tab.get_by_role("row").filter(has_text="key.create")
    row.wait_for()
    assert made.json()["id"] in row.inner_text() and "admin" in row.inner_text()
    assert tab.get_by_role("row").filter(has_text="admin.login").count() == 0
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / "audit.png"), full_page=True)
    assert made.json()["key"] not in tab.content() and ADMIN not in tab.content()
    assert errors == []
