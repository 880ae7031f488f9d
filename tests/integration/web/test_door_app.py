"""A job's model endpoint as its runner serves it (web.app `create_door_app`) on a real uvicorn, real Redis and
the fake gateway: the job's own key is admitted and metered like any `/v1` call; any other key the agent might
hold (an API key from its profileEnv, another job's key) or none is refused before admission, and nothing
reaches the upstream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from kilo_bridge.config import Settings
from kilo_bridge.keys.store import KeyStore
from kilo_bridge.platform.redis import Store
from kilo_bridge.web.app import create_door_app
from tests.conftest import serve_app
from tests.fakes.fake_gateway import FakeGatewayThread

BODY = {"model": "anthropic/claude-sonnet-4.5", "messages": [{"role": "user", "content": "hi"}]}


def _keys(settings: Settings) -> tuple[str, str, str]:
    async def make() -> tuple[str, str, str]:
        store = Store(settings)
        try:
            keys = KeyStore(store)
            job = await keys.create_job_key("job_door0001", 0, 600, 600)
            other_job = await keys.create_job_key("job_door0002", 0, 600, 600)
            user, _ = await keys.create("door-test")
            return job, other_job, user
        finally:
            await store.close()

    return asyncio.run(make())


def test_only_the_jobs_own_key_opens_its_model_endpoint(
    make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    settings = make_settings()
    job_key, other_job_key, user_key = _keys(settings)
    fake.script([{"kind": "ok", "cost": 0.01}])
    app = create_door_app(settings, job_key)
    # Its services closed on the loop that served it, as the runner closes them (agent_task/door.py).
    with serve_app(app, closing=app.state.services.close) as url, httpx.Client(base_url=url, timeout=10) as client:
        for key in (user_key, other_job_key, None):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            refused = client.post("/v1/chat/completions", json=BODY, headers=headers)
            assert refused.status_code == 401, refused.text
            assert "error" in refused.json()  # the OpenAI error shape a /v1 client reads
        assert fake.chats == []
        ok = client.post("/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {job_key}"})
        assert ok.status_code == 200, ok.text
        assert len(fake.chats) == 1
        assert client.get("/api/kilo/jobs", headers={"Authorization": f"Bearer {job_key}"}).status_code in (
            401,
            404,
        )  # the door has no other route
