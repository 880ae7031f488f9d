"""The other ways the app is started: Redis bootstrap for `make run`/`make test`, and the streaming
Lambda's run.sh (what the Lambda Web Adapter executes)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import redis

from tests.fakes.fake_gateway import FakeGatewayThread
from tests.support import REDIS_URL, ROOT, TEST_KEY, free_port, wait_http


def test_ensure_redis_starts_one_when_nothing_answers(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    out = subprocess.run(
        [sys.executable, "scripts/ensure_redis.py"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    try:
        assert out.returncode == 0, out.stderr
        assert "started a local Redis" in out.stdout
        password = (ROOT / ".run" / f"redis-{port}.password").read_text().strip()
        assert redis.Redis(port=port, password=password).ping()
        again = subprocess.run(
            [sys.executable, "scripts/ensure_redis.py"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 0 and again.stdout == ""  # already answering: nothing to do
    finally:
        password_file = ROOT / ".run" / f"redis-{port}.password"
        secret = password_file.read_text().strip() if password_file.exists() else None
        redis.Redis(port=port, password=secret).shutdown(nosave=True)
        password_file.unlink(missing_ok=True)


def test_stream_function_run_sh_serves_sse(fake: FakeGatewayThread, prefix: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "KILO_API_KEY": TEST_KEY,
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": prefix,
        "KILO_GATEWAY_BASE": f"{fake.url}/api/gateway",
        "AUTH_REQUIRED": "false",
        "LAMBDA_TASK_ROOT": str(ROOT / "functions/stream"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    proc = subprocess.Popen(
        ["sh", str(ROOT / "functions/stream/run.sh")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        resp = httpx.post(f"http://127.0.0.1:{port}/api/kilo/generate-stream", json={"prompt": "a b"})
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert re.search(r"event: delta", resp.text) and "event: done" in resp.text
        # events/stream/*.json replayed as the Lambda Web Adapter turns them into requests to this server.
        answers = {}
        for path in sorted((ROOT / "events/stream").glob("*.json")):
            event = json.loads(path.read_text())
            body = event.get("body") or b""
            if event.get("isBase64Encoded"):
                body = base64.b64decode(body)
            headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "host"}
            answers[path.name] = httpx.request(
                event["httpMethod"],
                f"http://127.0.0.1:{port}{event['path']}",
                params=event.get("queryStringParameters"),
                headers=headers,
                content=body,
            )
        v1 = {"chat-completions.json", "chat-completions-stream.json", "responses.json", "messages.json",
              "embeddings.json"}  # fmt: skip
        assert set(answers) == {"generate-stream.json", "job-logs.json", *v1}
        for name in v1:  # /v1 inference, plain and streamed, is this function's on AWS
            assert answers[name].status_code == 200, (name, answers[name].text)
        assert answers["chat-completions-stream.json"].headers["content-type"].startswith("text/event-stream")
        assert "event: done" in answers["generate-stream.json"].text
        assert answers["generate-stream.json"].headers["x-request-id"]
        # The sample names a job this Redis has never seen: the route answers, with our error shape.
        missing = answers["job-logs.json"]
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    finally:
        proc.terminate()
        proc.wait(10)
