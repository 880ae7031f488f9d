"""What an operator governs a key with: a budget per period (reset at 00:00 UTC), a model allow-list, rate
limits on a sliding window and a token bucket. Real Redis, a real uvicorn, the real openai client; the time
admission decides on is a clock the test moves (never a wait for midnight or for the next minute)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
import redis

from kilo_bridge.config import Settings
from kilo_bridge.keys.store import digest
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import run_sync, text_hash

ADMIN = "admin-key-not-real-0123456789"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


class Clock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, iso: str) -> None:
        self.now = dt.datetime.fromisoformat(iso).timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, iso: str) -> None:
        self.now = dt.datetime.fromisoformat(iso).timestamp()

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock("2026-03-10T23:59:30+00:00")


@pytest.fixture
def server(serve: Callable[..., str], make_settings: Callable[..., Settings], clock: Clock) -> str:
    return serve(make_settings(auth_required=True, admin_api_key=ADMIN), clock=clock)


def create_key(base: str, **body: object) -> dict[str, Any]:
    resp = httpx.post(f"{base}/api/kilo/admin/keys", json={"name": "ci", **body}, headers=AS_ADMIN)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def admin_view(base: str, key_id: str) -> dict[str, Any]:
    keys = httpx.get(f"{base}/api/kilo/admin/keys", headers=AS_ADMIN).json()["keys"]
    view: dict[str, Any] = next(k for k in keys if k["id"] == key_id)
    return view


@pytest.fixture
def sdk(server: str) -> Iterator[Callable[[str], openai.OpenAI]]:
    made: list[openai.OpenAI] = []

    def make(key: str) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0, timeout=10))
        return made[-1]

    yield make
    for c in made:
        c.close()


def chat(client: openai.OpenAI, model: str = "fake/model-a") -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=16)


# ---------------------------------------------------------------------------------------- budget periods


def test_a_daily_budget_refuses_at_its_limit_and_admits_again_after_midnight_utc(
    server: str, sdk: Callable[[str], openai.OpenAI], fake: FakeGatewayThread, clock: Clock
) -> None:
    key = create_key(server, budgetUsd=1.0, budgetPeriod="day")
    assert key["budgetPeriod"] == "day" and key["periodResetsAt"] == "2026-03-11T00:00:00Z"
    client = sdk(key["key"])
    fake.script([{"kind": "ok", "cost": 0.5}, {"kind": "ok", "cost": 0.5}, {"kind": "ok", "cost": 0.25}])
    chat(client)
    chat(client)
    with pytest.raises(openai.APIStatusError) as refused:
        chat(client)
    assert refused.value.status_code == 402 and refused.value.code == "budget_exceeded"
    assert len(fake.chats) == 2  # the refusal never reached the upstream
    view = admin_view(server, key["id"])
    assert (view["spentThisPeriodUsd"], view["spentUsd"], view["reservedUsd"]) == (1.0, 1.0, 0.0)

    clock.set("2026-03-11T00:00:01+00:00")  # a new UTC day
    assert admin_view(server, key["id"])["spentThisPeriodUsd"] == 0.0  # shown as reset before any call
    chat(client)
    view = admin_view(server, key["id"])
    assert (view["spentThisPeriodUsd"], view["spentUsd"]) == (0.25, 1.25)
    assert view["periodResetsAt"] == "2026-03-12T00:00:00Z"


def test_weekly_and_monthly_periods_reset_on_monday_and_the_first(
    server: str, sdk: Callable[[str], openai.OpenAI], fake: FakeGatewayThread, clock: Clock
) -> None:
    clock.set("2026-03-14T12:00:00+00:00")  # a Saturday
    weekly = create_key(server, budgetUsd=0.5, budgetPeriod="week")
    monthly = create_key(server, budgetUsd=0.5, budgetPeriod="month")
    assert weekly["periodResetsAt"] == "2026-03-16T00:00:00Z" and monthly["periodResetsAt"] == "2026-04-01T00:00:00Z"
    for key in (weekly, monthly):
        fake.script([{"kind": "ok", "cost": 0.5}])
        chat(sdk(key["key"]))
        with pytest.raises(openai.APIStatusError) as refused:
            chat(sdk(key["key"]))
        assert refused.value.status_code == 402
    clock.set("2026-03-16T00:00:00+00:00")  # Monday: the week starts again, the month does not
    chat(sdk(weekly["key"]))
    with pytest.raises(openai.APIStatusError):
        chat(sdk(monthly["key"]))
    clock.set("2026-04-01T00:00:00+00:00")
    chat(sdk(monthly["key"]))


def test_a_call_counts_in_the_period_it_was_admitted_in(
    server: str, fake: FakeGatewayThread, clock: Clock, redis_client: redis.Redis, prefix: str
) -> None:
    """A stream admitted before midnight and settled after it: its reservation and cost stay in the old day."""
    key = create_key(server, budgetUsd=1.0, budgetPeriod="day")
    fake.script([{"kind": "ok", "cost": 0.75, "chunks": 3, "chunk_delay_ms": 300}])
    with httpx.stream(
        "POST",
        f"{server}/v1/chat/completions",
        json={"model": "fake/model-a", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"Authorization": f"Bearer {key['key']}"},
        timeout=10,
    ) as resp:
        lines = resp.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))  # admitted, streaming
        record = redis_client.hgetall(f"{prefix}apikey:{digest(key['key'])}")
        assert int(record[b"period_reserved_nusd"]) > 0
        clock.set("2026-03-11T00:00:05+00:00")
        list(lines)
    view = admin_view(server, key["id"])
    assert view["spentUsd"] == 0.75
    assert view["spentThisPeriodUsd"] == 0.0
    fake.script([{"kind": "ok", "cost": 0.9}])
    httpx.post(
        f"{server}/api/kilo/generate", json={"prompt": "x", "model": "fake/model-a"}, headers={"x-api-key": key["key"]}
    ).raise_for_status()  # the new day's budget is whole
    record = redis_client.hgetall(f"{prefix}apikey:{digest(key['key'])}")
    assert int(record[b"period_reserved_nusd"]) == 0 and int(record[b"reserved_nusd"]) == 0
    assert admin_view(server, key["id"])["spentThisPeriodUsd"] == 0.9


def test_changing_a_keys_limits_and_period(
    server: str, sdk: Callable[[str], openai.OpenAI], fake: FakeGatewayThread
) -> None:
    key = create_key(server, budgetUsd=0.5)
    fake.script([{"kind": "ok", "cost": 0.5}])
    chat(sdk(key["key"]))
    with pytest.raises(openai.APIStatusError):
        chat(sdk(key["key"]))  # a lifetime budget, spent
    changed = httpx.patch(
        f"{server}/api/kilo/admin/keys/{key['id']}", json={"budgetPeriod": "day", "rpm": 5}, headers=AS_ADMIN
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["budgetPeriod"] == "day" and changed.json()["rpm"] == 5
    chat(sdk(key["key"]))  # counted per day from now on
    cleared = httpx.patch(f"{server}/api/kilo/admin/keys/{key['id']}", json={"rpm": None}, headers=AS_ADMIN).json()
    assert cleared["rpm"] is None and cleared["budgetUsd"] == 0.5
    bad = httpx.patch(f"{server}/api/kilo/admin/keys/{key['id']}", json={"budgetPeriod": "hour"}, headers=AS_ADMIN)
    assert bad.status_code == 422


# ---------------------------------------------------------------------------------------- model allow-lists


def test_a_model_outside_the_keys_list_is_refused_before_anything_is_reserved(
    server: str, sdk: Callable[[str], openai.OpenAI], fake: FakeGatewayThread, redis_client: redis.Redis, prefix: str
) -> None:
    key = create_key(server, budgetUsd=5, models=["fake/*", "kilo-auto/free"])
    assert key["models"] == ["fake/*", "kilo-auto/free"]
    client = sdk(key["key"])
    with pytest.raises(openai.PermissionDeniedError) as refused:
        chat(client, "anthropic/claude-sonnet-4.5")
    assert refused.value.status_code == 403 and refused.value.code == "model_not_allowed"
    generate = httpx.post(
        f"{server}/api/kilo/generate",
        json={"prompt": "x", "model": "kilo-auto/balanced"},
        headers={"x-api-key": key["key"]},
    )
    assert generate.status_code == 403 and generate.json()["error"]["code"] == "model_not_allowed"
    assert not fake.chats
    record = redis_client.hgetall(f"{prefix}apikey:{digest(key['key'])}")
    assert int(record[b"reserved_nusd"]) == 0 and int(record.get(b"requests", 0)) == 0
    assert not redis_client.exists(f"{prefix}held:{digest(key['key'])}:nusd")

    listed = sorted(m.id for m in client.models.list())
    assert listed == ["fake/embed", "fake/model-a", "kilo-auto/free"]
    assert chat(client, "fake/model-a").choices and chat(client, "kilo-auto/free").choices
    everything = sdk(create_key(server)["key"]).models.list()
    assert "anthropic/claude-sonnet-4.5" in {m.id for m in everything}


def test_a_job_for_a_model_outside_the_list_is_refused(server: str) -> None:
    key = create_key(server, budgetUsd=5, models=["fake/*"])
    resp = httpx.post(
        f"{server}/api/kilo/run-agent",
        json={"repoUrl": "https://github.com/acme/widgets", "agent": "review", "model": "anthropic/claude-sonnet-4.5"},
        headers={"x-api-key": key["key"]},
    )
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "model_not_allowed", resp.text
    assert admin_view(server, key["id"])["reservedUsd"] == 0.0
    jobs = httpx.get(f"{server}/api/kilo/jobs", headers={"x-api-key": key["key"]})
    assert jobs.status_code == 200 and not jobs.json()["jobs"]


def test_a_model_list_must_hold_ids_or_provider_patterns(server: str) -> None:
    ok = create_key(server, models=["fake/*", "anthropic/claude-sonnet-4.5", "fake/*"])
    assert ok["models"] == ["fake/*", "anthropic/claude-sonnet-4.5"]  # kept once each, in order
    for models in (["*"], ["anthropic/claude*"], ["a,b"], ["x" * 300]):
        resp = httpx.post(f"{server}/api/kilo/admin/keys", json={"name": "ci", "models": models}, headers=AS_ADMIN)
        assert resp.status_code == 422, (models, resp.text)


# ---------------------------------------------------------------------------------------- rate limits


def test_requests_per_minute_is_a_sliding_window_across_a_minute_boundary(
    server: str, sdk: Callable[[str], openai.OpenAI], clock: Clock
) -> None:
    clock.set("2026-03-10T10:00:59+00:00")  # a second before the calendar minute turns
    client = sdk(create_key(server, rpm=2)["key"])
    chat(client)
    clock.advance(0.5)
    chat(client)
    clock.advance(1)  # 10:01:00.5: a new calendar minute, the same 60 s
    with pytest.raises(openai.RateLimitError) as limited:
        chat(client)
    assert limited.value.response.headers["retry-after"] == "59"  # 10:01:59 ends the first call's minute
    clock.advance(58.4)
    with pytest.raises(openai.RateLimitError) as limited:
        chat(client)
    assert limited.value.response.headers["retry-after"] == "1"
    clock.advance(0.1)  # 10:01:59, exactly 60 s after the first call
    chat(client)
    with pytest.raises(openai.RateLimitError) as limited:
        chat(client)
    assert limited.value.response.headers["retry-after"] == "1"  # the second call's minute ends at 10:01:59.5


def test_tokens_per_minute_is_a_token_bucket_with_an_exact_retry_after(
    server: str, sdk: Callable[[str], openai.OpenAI], clock: Clock
) -> None:
    client = sdk(create_key(server, tpm=2)["key"])
    used = chat(client).usage
    assert used is not None and used.total_tokens >= 2
    # The bucket (2 tokens, refilled 2 a minute, one per 30 s) owes `total - 2`; a call needs one token back.
    wait_s = math.ceil((used.total_tokens * 30_000 - 30_000) / 1000)
    with pytest.raises(openai.RateLimitError) as limited:
        chat(client)
    assert limited.value.response.headers["retry-after"] == str(wait_s)
    clock.advance(wait_s - 1)
    with pytest.raises(openai.RateLimitError) as limited:
        chat(client)
    assert limited.value.response.headers["retry-after"] == "1"
    clock.advance(1)
    chat(client)


# ---------------------------------------------------------------------------------------- a key's own usage


def test_me_matches_the_ledger_after_mixed_traffic(
    serve: Callable[..., str],
    make_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    base = serve(make_settings(auth_required=True, admin_api_key=ADMIN))
    key = create_key(base, budgetUsd=2, budgetPeriod="day", models=["fake/*", "kilo-auto/*"], rpm=100)
    other = create_key(base)
    headers = {"x-api-key": key["key"]}
    fake.script([{"kind": "ok", "cost": 0.01}, {"kind": "ok", "cost": 0.02}, {"kind": "ok", "cost": 0.03}])
    httpx.post(f"{base}/api/kilo/generate", json={"prompt": "x", "model": "fake/model-a"}, headers=headers)
    with openai.OpenAI(base_url=f"{base}/v1", api_key=key["key"], max_retries=0) as client:
        chat(client)
        list(
            client.chat.completions.create(
                model="kilo-auto/free", messages=[{"role": "user", "content": "s"}], stream=True
            )
        )
        fake.script([{"kind": "status", "status": 500}])
        with pytest.raises(openai.APIStatusError):
            chat(client)
        with pytest.raises(openai.PermissionDeniedError):
            chat(client, "anthropic/claude-sonnet-4.5")
    with openai.OpenAI(base_url=f"{base}/v1", api_key=other["key"], max_retries=0) as client:
        chat(client)  # another key's traffic is not ours

    me = httpx.get(f"{base}/api/kilo/me", headers=headers)
    assert me.status_code == 200, me.text
    body = me.json()
    record = text_hash(redis_client, f"{prefix}apikey:{digest(key['key'])}")
    assert body["key"]["id"] == key["id"] and body["key"]["models"] == ["fake/*", "kilo-auto/*"]
    assert body["key"]["spentUsd"] == int(record["spend_nusd"]) / 1e9 == 0.06
    assert body["key"]["spentThisPeriodUsd"] == int(record["period_spend_nusd"]) / 1e9 == 0.06
    assert body["key"]["reservedUsd"] == 0 and body["openCalls"] == 0 and body["unfinishedJobs"] == []
    (day, models), *older = body["usage"].items()
    assert all(not m for _, m in older) and day == dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    assert sum(m["requests"] for m in models.values()) == int(record["requests"]) == 4
    assert models["fake/model-a"]["requests"] == 3 and models["kilo-auto/free"]["requests"] == 1
    assert sum(m["spendUsd"] for m in models.values()) == pytest.approx(0.06)
    stats = httpx.get(f"{base}/api/kilo/stats", headers=headers).json()
    mine = next(v for k, v in stats["byKey"].items() if k.endswith(key["id"]))
    assert mine["requests"] == 4 and mine["spendUsd"] == 0.06
    assert sum(m["tokens"] for m in models.values()) == mine["promptTokens"] + mine["completionTokens"]

    assert httpx.get(f"{base}/api/kilo/me").status_code == 401
    assert httpx.get(f"{base}/api/kilo/me", headers={"x-api-key": other["key"]}).json()["key"]["id"] == other["id"]


def test_the_terminal_client_shows_me(
    serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    base = serve(make_settings(auth_required=True, admin_api_key=ADMIN))
    key = create_key(base, budgetUsd=2, budgetPeriod="week", models=["fake/*"])
    fake.script([{"kind": "ok", "cost": 0.5}])
    httpx.post(
        f"{base}/api/kilo/generate", json={"prompt": "x", "model": "fake/model-a"}, headers={"x-api-key": key["key"]}
    )
    env = {**os.environ, "KILO_BRIDGE_KEY": key["key"]}
    plain = subprocess.run(
        [sys.executable, "-m", "kilo_bridge", "me", "--url", base], capture_output=True, text=True, env=env, timeout=60
    )
    assert plain.returncode == 0, plain.stderr
    assert "budget:      $2.0000 per week" in plain.stdout and "this period: $0.5000, resets " in plain.stdout
    assert "models:      fake/*" in plain.stdout and "fake/model-a" in plain.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "kilo_bridge", "me", "--url", base, "--json"], capture_output=True, text=True, env=env
    )
    assert json.loads(as_json.stdout)["key"]["spentThisPeriodUsd"] == 0.5
    assert key["key"] not in plain.stdout + as_json.stdout


# ---------------------------------------------------------------------------------------- teams


def test_a_team_budget_refuses_when_its_keys_together_reach_it(
    server: str, sdk: Callable[[str], openai.OpenAI], fake: FakeGatewayThread, clock: Clock
) -> None:
    team = httpx.put(
        f"{server}/api/kilo/admin/teams/blue", json={"budgetUsd": 1.0, "budgetPeriod": "day"}, headers=AS_ADMIN
    )
    assert team.status_code == 200, team.text
    a, b = create_key(server, team="blue"), create_key(server, team="blue", budgetUsd=5)
    assert a["team"] == "blue"
    fake.script([{"kind": "ok", "cost": 0.5}, {"kind": "ok", "cost": 0.5}])
    chat(sdk(a["key"]))
    chat(sdk(b["key"]))  # each key alone is far from any limit of its own
    for key in (a, b):
        with pytest.raises(openai.APIStatusError) as refused:
            chat(sdk(key["key"]))
        assert refused.value.status_code == 402 and "team" in refused.value.message
    assert len(fake.chats) == 2
    teams = httpx.get(f"{server}/api/kilo/admin/teams", headers=AS_ADMIN).json()["teams"]
    assert teams == [
        {
            "name": "blue",
            "budgetUsd": 1.0,
            "budgetPeriod": "day",
            "spentUsd": 1.0,
            "reservedUsd": 0.0,
            "spentThisPeriodUsd": 1.0,
            "periodResetsAt": "2026-03-11T00:00:00Z",
            "keys": sorted([a["id"], b["id"]]),
        }
    ]
    stats = httpx.get(f"{server}/api/kilo/stats", headers={"x-api-key": a["key"]}).json()
    assert list(stats["byTeam"]) == ["blue"] and stats["byTeam"]["blue"]["requests"] == 2
    assert stats["byTeam"]["blue"]["spendUsd"] == 1.0

    clock.set("2026-03-11T00:00:01+00:00")  # the team's day starts again
    fake.script([{"kind": "ok", "cost": 0.25}])
    chat(sdk(a["key"]))

    # A key moved to another team spends that team's budget from its next call (this process knew it as blue).
    httpx.put(f"{server}/api/kilo/admin/teams/red", json={"budgetUsd": 0.000001}, headers=AS_ADMIN)
    moved = httpx.patch(f"{server}/api/kilo/admin/keys/{a['id']}", json={"team": "red"}, headers=AS_ADMIN)
    assert moved.json()["team"] == "red"
    with pytest.raises(openai.APIStatusError) as refused:
        chat(sdk(a["key"]))
    assert refused.value.status_code == 402
    blue = httpx.get(f"{server}/api/kilo/admin/teams", headers=AS_ADMIN).json()["teams"][0]
    assert blue["name"] == "blue" and blue["spentThisPeriodUsd"] == 0.25 and blue["reservedUsd"] == 0


def test_a_keyed_call_that_reserved_nothing_settles_whole(
    serve: Callable[..., str],
    make_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    redis_client: redis.Redis,
    prefix: str,
) -> None:
    """A free model reserves 0: releasing it must not send Redis `-0` (Lua's negative zero, which HINCRBY refuses
    as no integer), or the settlement stops half-way and its record is lost."""
    base = serve(make_settings(auth_required=True, admin_api_key=ADMIN))
    key = create_key(base, budgetUsd=1)
    fake.script([{"kind": "ok", "cost": 0.0}])
    with openai.OpenAI(base_url=f"{base}/v1", api_key=key["key"], max_retries=0) as client:
        chat(client, "kilo-auto/free")
    stats = httpx.get(f"{base}/api/kilo/stats", headers={"x-api-key": key["key"]}).json()
    assert stats["byModel"]["kilo-auto/free"]["ok"] == 1  # written after the per-key figures: the whole script ran
    assert not redis_client.hlen(f"{prefix}held:{digest(key['key'])}:nusd")


def test_a_jobs_reservation_counts_in_the_period_it_was_created_in(
    store_settings: Settings, redis_client: redis.Redis, prefix: str
) -> None:
    """A job holds its cost cap in the period it was created in, and its cost is charged there: one from
    yesterday limits nothing today; one from today does, and its cost counts in today's spend."""
    from kilo_bridge.jobs.record import JobRecord, new_job_id
    from kilo_bridge.jobs.store import JobStore
    from kilo_bridge.keys.store import KeyStore
    from kilo_bridge.platform.redis import Store
    from kilo_bridge.usage.ledger import BudgetExceeded, Ledger, Outcome

    today = Clock("2026-03-11T09:00:00+00:00")
    created = {"yesterday": Clock("2026-03-10T23:50:00+00:00"), "today": Clock("2026-03-11T08:00:00+00:00")}

    async def scenario() -> tuple[dict[str, str], bool]:
        store = Store(store_settings)
        try:
            secret, _ = await KeyStore(store).create("jobs", budget_usd=1.0, budget_period="day")
            owner = digest(secret)
            jobs, ledger = JobStore(store), Ledger(store, clock=today)
            made = {}
            for when, reserve in (("yesterday", 900_000_000), ("today", 600_000_000)):
                record = JobRecord(
                    id=new_job_id(),
                    status="queued",
                    agent="review",
                    repo_url="/x",
                    timeout_ms=60_000,
                    created_ms=int(created[when].now * 1000),
                    owner=owner,
                )
                assert (await jobs.create(record, "", None, 0, reserve_nusd=reserve))[0] == 0
                made[when] = record.id
            call = await ledger.admit(owner, 300_000_000, "fake/model-a")  # 0.6 (today's job) + 0.3 fits
            try:
                await ledger.admit(owner, 200_000_000, "fake/model-a")  # 0.6 + 0.3 + 0.2 does not
                refused = False
            except BudgetExceeded:
                refused = True
            await ledger.record(Outcome(model="fake/model-a", ok=True), 300_000_000, call)
            for when, cost in (("yesterday", "300000000"), ("today", "200000000")):
                claim = await jobs.claim(made[when], owner, "worker-1")
                assert claim.verdict == "ok"
                assert await jobs.finish(made[when], owner, claim.attempt, "succeeded", {"costNusd": cost})
            return text_hash(redis_client, f"{prefix}apikey:{owner}"), refused
        finally:
            await store.close()

    record, refused = run_sync(scenario())
    assert refused
    assert int(record["spend_nusd"]) == 800_000_000  # both jobs and the call
    assert int(record["period_spend_nusd"]) == 500_000_000  # today's job and the call
    assert int(record["reserved_nusd"]) == 0 and int(record["period_reserved_nusd"]) == 0
