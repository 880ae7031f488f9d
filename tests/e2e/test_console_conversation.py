"""The console's conversation, in Chromium: a finished job's page shows its follow-up box; a follow-up opens the
new job's page with the thread (each job's prompt and cost, the total); "Run again" refills the form, the
prompt included (the stand-in agent; the real CLI's session is tests/e2e/test_kilo_cli_conversation.py's)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from kilo_bridge.config import Settings
from tests.e2e.test_console import ADMIN, Page, browser  # noqa: F401 - `browser` is a fixture
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job


@pytest.fixture
def server(serve: Callable[..., str], job_settings: Callable[..., Settings]) -> str:
    return serve(job_settings(admin_api_key=ADMIN))


@pytest.fixture
def tab(browser: Any, server: str) -> Iterator[Page]:  # noqa: F811
    page = Page(browser, server)
    yield page
    page.close()


def test_a_finished_job_is_followed_up_from_its_page_and_run_again_keeps_the_prompt(
    tab: Page, server: str, fake_github: FakeGitHub, http_client: Callable[..., httpx.Client]
) -> None:
    body = run_body(
        fake_github.repo_url("acme", "widgets"),
        prompt="first task",
        dryRun=True,
        profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": "write"},
    )
    client = http_client(base_url=server, timeout=10)
    parent = wait_job(client, client.post("/api/kilo/run-agent", json=body).json()["jobId"])
    assert parent["status"] == "succeeded"

    page = tab.go(f"/job/{parent['id']}")
    box = page.get_by_label("follow-up task")
    box.wait_for()
    box.fill("second task")
    page.get_by_role("button", name="Follow up").click()
    page.wait_for_url(lambda url: "#/job/" in url and parent["id"] not in url)
    child_id = page.url.rsplit("/", 1)[1]
    page.get_by_test_id("thread").wait_for()
    thread = page.get_by_test_id("thread").inner_text()
    assert "first task" in thread and "second task" in thread and parent["id"] in thread
    assert page.get_by_test_id("thread-cost").inner_text().startswith("the thread cost $")
    assert wait_job(client, child_id)["parentJobId"] == parent["id"]

    page = tab.go(f"/job/{parent['id']}")
    # A change of hash alone: the follow-up's page stays on screen until the parent's has loaded.
    page.locator("[data-testid=task]", has_text="first task").wait_for()
    page.get_by_role("button", name="Run again").click()
    page.wait_for_url(lambda url: url.endswith("#/run"))
    prompt = page.locator("textarea[name=prompt]")
    prompt.wait_for()
    assert prompt.input_value() == "first task"
    assert tab.errors == []
