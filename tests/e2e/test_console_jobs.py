"""The console a team keeps open, in Chromium at 1280x800 and at a phone's 390x844: the jobs list tells each job's
story and fits the phone; it polls only while the tab is shown, backing off while nothing changes; a failed
job's page is not full nor ticking; the Run form picks a saved profile; triggers and schedules offer dry runs;
Keys says when the admin API is off; empty states say what to do; Redis down says what is wrong with a retry;
the playground lists the gateway's models, takes a system prompt and stops a stream."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kilo_bridge.config import Settings
from tests.e2e.test_console import ADMIN, Page, browser, shot  # noqa: F401 - `browser` is a fixture
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job
from tests.support import RedisServer

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


@pytest.fixture
def server(serve: Callable[..., str], job_settings: Callable[..., Settings]) -> str:
    # A stopped stream is read on for its usage for STREAM_DRAIN_S: short here, so the playground's stop is seen ended.
    return serve(job_settings(admin_api_key=ADMIN, job_workdir=None, stream_drain_s=0.5))


@pytest.fixture(params=list(SIZES))
def size(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tab(browser: Any, server: str, size: str) -> Iterator[Page]:  # noqa: F811
    page = Page(browser, server, *SIZES[size])
    yield page
    page.close()


def _job(server: str, fake_github: FakeGitHub, mode: str, **extra: Any) -> dict[str, Any]:
    body = run_body(
        fake_github.repo_url("acme", "widgets"), profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN, "FAKE_KILO_MODE": mode}
    )
    body.update(extra)
    job_id = httpx.post(server + "/api/kilo/run-agent", json=body).json()["jobId"]
    with httpx.Client(base_url=server) as client:
        return wait_job(client, job_id)


def test_the_jobs_list_tells_each_story_and_fits_the_screen(
    tab: Page, server: str, fake_github: FakeGitHub, size: str
) -> None:
    ok = _job(server, fake_github, "write", dryRun=True)
    failed = _job(server, fake_github, "fail", prompt="break something")
    assert (ok["status"], failed["status"]) == ("succeeded", "failed")
    page = tab.go("/jobs")
    row = page.locator(f"tr[data-job='{ok['id']}']")
    row.wait_for()
    text = row.inner_text()
    assert "dry run: diff kept, nothing pushed" in text and ok["result"]["summary"] in text
    assert " s" in row.locator("td[data-label=duration]").inner_text()
    assert row.locator("td[data-label=cost]").inner_text().startswith("$")
    assert "failed: agent_failed" in page.locator(f"tr[data-job='{failed['id']}']").inner_text()
    width = SIZES[size][0]
    # Nothing wider than the window: no sideways scrolling of the page or of the list.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    fits = "(t) => t.scrollWidth <= t.parentElement.clientWidth"
    assert page.get_by_test_id("jobs").evaluate(fits)
    shot(page, "jobs" if size == "desktop" else "jobs-phone")
    # The failed job's page: its bar not full, its heartbeat not ticking, its outcome said.
    page = tab.go(f"/job/{failed['id']}")
    page.get_by_test_id("outcome").wait_for()
    assert page.get_by_test_id("outcome").inner_text() == "failed: agent_failed"
    assert int(page.locator("progress").get_attribute("value") or "0") < 100
    assert page.get_by_test_id("heartbeat").inner_text().startswith("ended")
    assert page.get_by_test_id("task").inner_text() == "break something"
    if size == "phone":
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert tab.errors == []


def test_the_jobs_page_polls_only_while_shown_and_backs_off(tab: Page, size: str) -> None:
    if size == "phone":
        pytest.skip("the same code at either width")
    page = tab.page
    page.clock.install()  # the page's timers run on a clock this test moves, not on the wall's
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if "/api/kilo/jobs?" in r.url else None)
    tab.go("/jobs")
    page.get_by_test_id("jobs").wait_for()

    def polls_in(ms: int) -> int:
        before = len(calls)
        for _ in range(ms // 1000):  # a second at a time, each request answered before the next tick
            page.clock.run_for(1000)
            page.wait_for_load_state("networkidle")
        return len(calls) - before

    # Nothing changes: after the first 2 s the interval grows (x1.5 up to 30 s): 2+3+4.5+6.75+10.1+15.2 < 60 s.
    assert 3 <= polls_in(60_000) <= 8
    # Hidden: not one request, however long.
    page.evaluate(
        "() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
        " document.dispatchEvent(new Event('visibilitychange')); }"
    )
    assert polls_in(120_000) == 0
    # Shown again: at once, then backing off from the shortest interval again (the next after 2 x 1.5 s).
    with page.expect_response(lambda r: "/api/kilo/jobs?" in r.url):
        page.evaluate(
            "() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});"
            " document.dispatchEvent(new Event('visibilitychange')); }"
        )
    page.wait_for_load_state("networkidle")
    assert polls_in(4_000) == 1  # at 3 s (the next at 7.5 s)
    # Leaving the page stops it for good.
    tab.go("/overview")
    page.get_by_role("heading", name="Overview").wait_for()
    assert polls_in(30_000) == 0
    assert tab.errors == []


def test_empty_states_say_what_to_do_next(tab: Page) -> None:
    page = tab.go("/jobs")
    empty = page.locator("td.empty")
    empty.wait_for()
    assert "No jobs yet" in empty.inner_text() and empty.get_by_role("link", name="Run an agent").count() == 1
    for where, says in (
        ("/profiles", "No profiles yet"),
        ("/triggers", "No triggers yet"),
        ("/schedules", "No schedules yet"),
    ):
        tab.go(where).locator(".empty").filter(has_text=says).wait_for()
    assert tab.errors == []


def test_the_run_form_picks_a_saved_profile(tab: Page, server: str, fake_github: FakeGitHub, size: str) -> None:
    if size == "phone":
        pytest.skip("the form is the same at either width; its layout is checked by the list test")
    saved = httpx.post(server + "/api/kilo/profiles", json={"name": "widgets", "env": {"GITHUB_TOKEN": GITHUB_TOKEN}})
    assert saved.status_code == 201, saved.text
    page = tab.go("/run")
    page.select_option("select[name=agent]", "apply-patch-and-pr")
    page.get_by_label("Repository URL").fill(fake_github.repo_url("acme", "widgets"))
    page.get_by_label("Prompt").fill("make a change")
    page.select_option("select[name=profile]", "widgets")
    with page.expect_request(lambda r: r.url.endswith("/api/kilo/run-agent")) as sent:
        page.get_by_role("button", name="Start the job").click()
    assert json.loads(sent.value.post_data or "{}")["profile"] == "widgets"
    page.wait_for_url("**/#/job/job_*")
    with httpx.Client(base_url=server) as client:
        job = wait_job(client, page.url.rsplit("/", 1)[1])
    assert job["status"] == "succeeded"  # the profile's GITHUB_TOKEN let it clone
    assert GITHUB_TOKEN not in page.content()


def test_triggers_and_schedules_offer_dry_runs(tab: Page, server: str, fake_github: FakeGitHub, size: str) -> None:
    if size == "phone":
        pytest.skip("the same forms at either width")
    page = tab.go("/triggers")
    page.get_by_label("Trigger name").fill("dry alerts")
    page.get_by_label("Repository URL").fill(fake_github.repo_url("acme", "widgets"))
    page.get_by_label("Dry run").check()
    page.get_by_role("button", name="Create the trigger").click()
    page.get_by_role("region", name="trigger dry alerts").wait_for()
    assert [t["dryRun"] for t in httpx.get(server + "/api/kilo/triggers").json()["triggers"]] == [True]
    page = tab.go("/schedules")
    page.get_by_label("Schedule name").fill("nightly dry")
    page.get_by_label("Cron").fill("0 3 * * *")
    page.get_by_label("Repository URL").fill(fake_github.repo_url("acme", "widgets"))
    page.get_by_label("Dry run").check()
    page.get_by_role("button", name="Create the schedule").click()
    page.get_by_role("status").get_by_text("Schedule nightly dry created.").wait_for()
    assert [s["run"]["dryRun"] for s in httpx.get(server + "/api/kilo/schedules").json()["schedules"]] == [True]
    assert "(dry run)" in page.get_by_role("row").filter(has_text="nightly dry").inner_text()
    assert tab.errors == []


def test_keys_says_up_front_when_the_admin_api_is_off(
    browser: Any,  # noqa: F811
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
) -> None:
    tab = Page(browser, serve(job_settings()), *SIZES["phone"])
    try:
        card = tab.go("/keys").get_by_test_id("admin-off")
        card.wait_for()
        assert "kilo-bridge keys create" in card.inner_text() and "ADMIN_API_KEY" in card.inner_text()
        assert tab.page.get_by_label("Admin key").count() == 0  # not asked for a key that cannot work
        assert tab.errors == []
    finally:
        tab.close()


def test_redis_down_says_what_is_wrong_and_a_retry_brings_the_page_back(
    browser: Any,  # noqa: F811
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    try:
        tab = Page(browser, serve(job_settings(redis_url=redis_server.url, jobs_concurrency=0)))
        page = tab.go("/jobs")
        page.get_by_test_id("jobs").wait_for()
        redis_server.stop()
        tab.go("/overview")
        page.reload()
        down = page.get_by_test_id("unavailable")
        down.wait_for(timeout=30_000)
        assert "REDIS_URL" in down.inner_text() and "unreachable" in down.inner_text()
        redis_server.start()
        down.get_by_role("button", name="Retry").click()
        page.get_by_role("heading", name="Overview").wait_for(timeout=30_000)
        # The console's errors are the refused requests (503), nothing else.
        assert all("503" in e for e in tab.errors), tab.errors
        tab.close()
    finally:
        redis_server.stop()


def test_the_playground_lists_models_takes_a_system_prompt_and_stops_a_stream(
    tab: Page, server: str, fake: FakeGatewayThread, size: str
) -> None:
    if size == "phone":
        pytest.skip("the same page at either width")
    models = [m["id"] for m in httpx.get(server + "/v1/models").json()["data"]]
    page = tab.go("/playground")
    options = page.locator("datalist#models option")
    options.first.wait_for(state="attached")
    assert sorted(options.evaluate_all("os => os.map((o) => o.value)")) == sorted(models)
    # A long, slow stream, stopped after its first words.
    fake.script([{"kind": "ok", "text": " ".join(f"w{i}" for i in range(200)), "chunks": 100, "chunk_delay_ms": 100}])
    page.get_by_label("System prompt").fill("You answer briefly.")
    page.get_by_label("Prompt", exact=True).fill("tell me a long story")
    page.get_by_role("button", name="Generate").click()
    page.get_by_test_id("answer").get_by_text("w0", exact=False).wait_for()
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("stopped").wait_for()
    assert page.get_by_role("button", name="Generate").is_enabled()
    messages = fake.chats[-1]["json"]["messages"]
    assert messages[0] == {"role": "system", "content": "You answer briefly."}
    # The stopped stream is over on the server too: it was accounted as the client gone (not left running).
    deadline = time.monotonic() + 30
    while httpx.get(server + "/api/kilo/stats").json()["totals"]["failed"] < 1:
        assert time.monotonic() < deadline, "the stopped stream was never ended on the server"
        time.sleep(0.1)
    fake.script([{"kind": "ok", "text": "second answer"}])
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("tokens").wait_for()
    assert page.get_by_test_id("answer").inner_text() == "second answer"
    shot(page, "playground")
    assert tab.errors == []
