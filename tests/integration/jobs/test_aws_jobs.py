"""AWS mode against moto in server mode (over HTTP, boto3 with endpoint URLs): run-agent → SQS →
dispatcher → one ECS task (never two, even on redelivery) → finalizer fails a job whose task stopped;
enqueue failure leaves no ghost job; S3 artifacts with presigned links; KMS envelope for job secrets;
the scheduled function's three tasks."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
import pytest

from kilo_bridge.config import Settings
from kilo_bridge.jobs.reasons import EndReason
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.platform import aws
from kilo_bridge.platform.redis import Store
from scripts.invoke import Context
from scripts.invoke import load_function as load_handler
from tests.fakes.fake_gateway import FakeGatewayThread
from tests.fakes.fake_github import FakeGitHub
from tests.fakes.secrets_proxy import SecretsProxy
from tests.jobkit import GITHUB_TOKEN, run_body, wait_job
from tests.support import ROOT, Aws


def load_function(name: str, monkeypatch: pytest.MonkeyPatch, settings: Settings) -> ModuleType:
    """functions/<name>/app.py imported fresh, with `settings` as its environment (a cold start)."""
    from kilo_bridge.config import settings_env

    for var, value in settings_env(settings).items():
        monkeypatch.setenv(var, value)
    return load_handler(name)


def sqs_event(message: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events/dispatcher/sqs-run-agent.json").read_text())
    record = event["Records"][0]
    record["messageId"], record["body"], record["receiptHandle"] = (
        message["MessageId"],
        message["Body"],
        message["ReceiptHandle"],
    )
    return event


def test_sqs_dispatch_is_idempotent_and_finalizer_fails_a_stopped_task(
    aws_env: Aws,
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    http_client: Callable[..., httpx.Client],
) -> None:
    settings = job_settings(**aws_env.settings(), jobs_concurrency=0)
    api = http_client(base_url=serve(settings), timeout=10)
    accepted = api.post(
        "/api/kilo/run-agent",
        json=run_body(fake_github.repo_url("acme", "widgets"), profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN}),
    )
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["jobId"]
    sqs = aws_env.client("sqs")
    messages = sqs.receive_message(QueueUrl=aws_env.queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in messages] == [{"jobId": job_id}]  # the queue carries the id only

    dispatcher = load_function("dispatcher", monkeypatch, settings)
    event = sqs_event(messages[0])
    assert dispatcher.handler(event, Context()) == {"batchItemFailures": []}
    assert dispatcher.handler(event, Context()) == {"batchItemFailures": []}  # redelivered: no second task
    ecs = aws_env.client("ecs")
    tasks = ecs.list_tasks(cluster=aws_env.cluster)["taskArns"]
    assert len(tasks) == 1
    described = ecs.describe_tasks(cluster=aws_env.cluster, tasks=tasks)["tasks"][0]
    overrides = described["overrides"]["containerOverrides"][0]
    assert overrides["environment"] == [{"name": "JOB_ID", "value": job_id}]
    assert GITHUB_TOKEN not in json.dumps(described, default=str)

    finalizer = load_function("finalizer", monkeypatch, settings)
    stopped = json.loads((ROOT / "events/finalizer/task-stopped.json").read_text())
    stopped["detail"]["overrides"]["containerOverrides"][0]["environment"][0]["value"] = job_id
    stopped["detail"]["taskArn"] = tasks[0]
    assert finalizer.handler(stopped, Context()) == {"outcome": "failed"}
    job = api.get(f"/api/kilo/job/{job_id}").json()
    assert (job["status"], job["reason"]) == ("failed", "task_stopped")
    assert "Essential container in task exited" in job["error"] and "137" in job["error"]
    assert finalizer.handler(stopped, Context()) == {"outcome": "already-finished"}  # redelivered event


def test_finalizer_counts_a_failure_the_runner_recorded_once(
    aws_env: Aws,
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    http_client: Callable[..., httpx.Client],
) -> None:
    settings = job_settings(**aws_env.settings(), jobs_concurrency=0)
    api = http_client(base_url=serve(settings), timeout=10)
    job_id = api.post("/api/kilo/run-agent", json=run_body(fake_github.repo_url("acme", "widgets"))).json()["jobId"]

    async def runner_fails_it() -> None:  # what the runner records when the agent fails (exit code 0)
        store = Store(settings)
        try:
            assert await JobStore(store).fail_unfinished(job_id, EndReason.AGENT_FAILED, "the agent exited with 1")
        finally:
            await store.close()

    asyncio.run(runner_fails_it())
    finalizer = load_function("finalizer", monkeypatch, settings)
    stopped = json.loads((ROOT / "events/finalizer/task-stopped.json").read_text())
    stopped["detail"]["overrides"]["containerOverrides"][0]["environment"][0]["value"] = job_id
    capsys.readouterr()
    assert finalizer.handler(stopped, Context()) == {"outcome": "ended-failed"}
    assert '"JobsFailed"' in capsys.readouterr().out  # the EMF metric the JobsFailed alarm reads
    assert finalizer.handler(stopped, Context()) == {"outcome": "already-finished"}  # redelivered: once
    assert '"JobsFailed"' not in capsys.readouterr().out
    assert api.get(f"/api/kilo/job/{job_id}").json()["reason"] == "agent_failed"  # the runner's reason stays


def test_dispatch_failure_is_reported_for_retry(
    aws_env: Aws,
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    http_client: Callable[..., httpx.Client],
) -> None:
    settings = job_settings(**{**aws_env.settings(), "ecs_cluster": "no-such-cluster"}, jobs_concurrency=0)
    api = http_client(base_url=serve(settings), timeout=10)
    job_id = api.post("/api/kilo/run-agent", json=run_body(fake_github.repo_url("acme", "widgets"))).json()["jobId"]
    message = aws_env.client("sqs").receive_message(QueueUrl=aws_env.queue_url)["Messages"][0]
    dispatcher = load_function("dispatcher", monkeypatch, settings)
    result = dispatcher.handler(sqs_event(message), Context())
    assert result == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert api.get(f"/api/kilo/job/{job_id}").json()["status"] == "queued"  # still waiting, retried later


def test_enqueue_failure_leaves_no_ghost_job(
    aws_env: Aws,
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    redis_client: Any,
    prefix: str,
    http_client: Callable[..., httpx.Client],
) -> None:
    missing = aws_env.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    api = http_client(
        base_url=serve(job_settings(**{**aws_env.settings(), "agent_queue_url": missing}, jobs_concurrency=0)),
        timeout=10,
    )
    body = run_body(fake_github.repo_url("acme", "widgets"), profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN})
    response = api.post("/api/kilo/run-agent", json=body, headers={"Idempotency-Key": "retry-me"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "queue_unavailable"
    assert response.headers["retry-after"]
    assert api.get("/api/kilo/jobs").json()["jobs"] == []
    assert api.get("/api/kilo/stats").json()["agentRuns"]["queued"] == 0
    # Nothing of the refused job stays in Redis: no record, no sealed secrets, no idempotency entry.
    left = [k.decode() for k in redis_client.scan_iter(match=prefix + "*")]
    assert not [k for k in left if "job" in k or "idem" in k], left
    # So the client's retry with the same key, once the queue is back, is a new, accepted job.
    healthy = http_client(base_url=serve(job_settings(**aws_env.settings(), jobs_concurrency=0)), timeout=10)
    retried = healthy.post("/api/kilo/run-agent", json=body, headers={"Idempotency-Key": "retry-me"})
    assert retried.status_code == 202, retried.text
    assert [j["id"] for j in healthy.get("/api/kilo/jobs").json()["jobs"]] == [retried.json()["jobId"]]


def test_s3_artifacts_and_kms_sealed_secrets(
    aws_env: Aws,
    serve: Callable[..., str],
    job_settings: Callable[..., Settings],
    fake_github: FakeGitHub,
    redis_client: Any,
    prefix: str,
    http_client: Callable[..., httpx.Client],
) -> None:
    # The local queue and worker, with AWS storage and KMS: the same runner as the ECS task.
    settings = job_settings(**{**aws_env.settings(), "job_queue": "local"})
    api = http_client(base_url=serve(settings), timeout=10)
    job_id = api.post(
        "/api/kilo/run-agent",
        json=run_body(fake_github.repo_url("acme", "widgets"), dryRun=True, profileEnv={"GITHUB_TOKEN": GITHUB_TOKEN}),
    ).json()["jobId"]
    assert redis_client.get(f"{prefix}job:{job_id}:env").startswith(b"v1.kms.")
    job = wait_job(api, job_id)
    assert job["status"] == "succeeded", job
    link = job["artifacts"]["diff.patch"]
    assert link["url"].startswith(aws_env.url) and "Signature" in link["url"]
    assert "+a change" in httpx.get(link["url"]).text
    keys = {o["Key"] for o in aws_env.client("s3").list_objects_v2(Bucket=aws_env.bucket)["Contents"]}
    # The three artifacts, and the CLI session a follow-up continues: sealed, served by no route.
    names = ("log.jsonl", "diff.patch", "result.json", "session.sealed")
    assert keys == {f"jobs/{job_id}/{n}" for n in names}


def test_scheduled_tasks(
    aws_env: Aws,
    job_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    monkeypatch: pytest.MonkeyPatch,
    fake_github: FakeGitHub,
) -> None:
    settings = job_settings(**aws_env.settings(), jobs_concurrency=0)
    scheduled = load_function("scheduled", monkeypatch, settings)
    fake.set_balance(42.0)
    assert scheduled.handler({"task": "refresh-credits"}, Context())["balanceUsd"] == 42.0
    assert scheduled.handler({"task": "reap-jobs"}, Context()) == {"task": "reap-jobs", "ended": {}}
    event = json.loads((ROOT / "events/scheduled/nightly-agent-run.json").read_text())
    first = scheduled.handler(event, Context())
    again = scheduled.handler(event, Context())  # Scheduler delivers at least once
    assert first["status"] == "queued" and first["jobId"] == again["jobId"]
    with pytest.raises(Exception, match="unknown task"):
        scheduled.handler({"task": "drop-tables"}, Context())


def test_keys_are_read_from_secrets_manager(aws_env: Aws, fake: FakeGatewayThread) -> None:
    from kilo_bridge.config import load_settings

    sm = aws_env.client("secretsmanager")
    kilo = sm.create_secret(Name=f"kilo-{uuid.uuid4().hex[:6]}", SecretString="kilo-key-from-secret-not-real")["ARN"]
    admin = sm.create_secret(
        Name=f"admin-{uuid.uuid4().hex[:6]}",
        SecretString=json.dumps({"ADMIN_API_KEY": "admin-key-from-secret-not-real"}),
    )["ARN"]
    redis_secret = sm.create_secret(
        Name=f"redis-{uuid.uuid4().hex[:6]}", SecretString=json.dumps({"username": "kb", "password": "p@ss/word"})
    )["ARN"]
    settings = load_settings(
        kilo_api_key_secret_arn=kilo,
        admin_api_key_secret_arn=admin,
        redis_url="rediss://cache.example:6379",
        redis_username="kb",
        redis_password_secret_arn=redis_secret,
    )
    assert settings.api_key == "kilo-key-from-secret-not-real"
    assert settings.admin_key == "admin-key-from-secret-not-real"
    assert settings.resolved_redis_url == "rediss://kb:p%40ss%2Fword@cache.example:6379"
    with pytest.raises(Exception, match="KILO_API_KEY_SECRET_ARN: cannot read the secret") as info:
        load_settings(kilo_api_key_secret_arn=kilo + "-missing")
    assert "kilo-key-from-secret" not in str(info.value)


def test_rotated_kilo_key_is_used_without_a_restart(
    aws_env: Aws, serve: Callable[..., str], make_settings: Callable[..., Settings], fake: FakeGatewayThread
) -> None:
    sm = aws_env.client("secretsmanager")
    arn = sm.create_secret(Name=f"kilo-{uuid.uuid4().hex[:6]}", SecretString="kilo-key-v1-not-real")["ARN"]
    url = serve(make_settings(kilo_api_key=None, kilo_api_key_secret_arn=arn, kilo_api_key_max_age_s=0))
    assert httpx.post(f"{url}/api/kilo/generate", json={"prompt": "one"}).status_code == 200
    sm.put_secret_value(SecretId=arn, SecretString="kilo-key-v2-not-real")
    # The re-read happens beside the calls, not before them: within a few calls the new key is the one used.
    for n in range(200):
        assert httpx.post(f"{url}/api/kilo/generate", json={"prompt": f"call {n}"}).status_code == 200
        if fake.chats[-1]["headers"]["authorization"] == "Bearer kilo-key-v2-not-real":
            break
    keys = [c["headers"]["authorization"] for c in fake.chats]
    assert keys[0] == "Bearer kilo-key-v1-not-real" and keys[-1] == "Bearer kilo-key-v2-not-real"
    assert set(keys) == {"Bearer kilo-key-v1-not-real", "Bearer kilo-key-v2-not-real"}


def test_a_slow_secret_read_never_delays_a_call(
    aws_env: Aws,
    serve: Callable[..., str],
    make_settings: Callable[..., Settings],
    fake: FakeGatewayThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past KILO_API_KEY_MAX_AGE_S the Kilo key is re-read off the request path: with Secrets Manager stuck (a slow
    NAT path), calls still go out at once on the key the function has, and the held read is the only one."""
    sm = aws_env.client("secretsmanager")
    arn = sm.create_secret(Name=f"kilo-{uuid.uuid4().hex[:6]}", SecretString="kilo-key-v1-not-real")["ARN"]
    settings = make_settings(kilo_api_key=None, kilo_api_key_secret_arn=arn, kilo_api_key_max_age_s=0)
    with SecretsProxy(aws_env.url) as proxy:
        proxy.hold = True
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", proxy.url)
        aws.reset_clients()
        url = serve(settings)
        first = httpx.post(f"{url}/api/kilo/generate", json={"prompt": "one"}, timeout=10)
        assert first.status_code == 200
        assert proxy.held.wait(10)  # the re-read started, and is stuck
        second = httpx.post(f"{url}/api/kilo/generate", json={"prompt": "two"}, timeout=10)
        assert second.status_code == 200 and proxy.in_flight == 1  # answered while the read is still held
        assert sum(proxy.reads.values()) == 1  # one re-read at a time
        proxy.release()
    keys = [c["headers"]["authorization"] for c in fake.chats]
    assert keys == ["Bearer kilo-key-v1-not-real", "Bearer kilo-key-v1-not-real"]


def test_each_secret_is_read_once_at_start_and_all_at_once(aws_env: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold start reads every secret it is given once (the GitHub App's one secret feeds two settings), the reads
    in flight together, with short explicit timeouts, not botocore's 60 s."""
    from kilo_bridge.config import SECRET_READ_TIMEOUTS, load_settings, reset_secrets_client

    sm = aws_env.client("secretsmanager")
    tag = uuid.uuid4().hex[:6]
    kilo = sm.create_secret(Name=f"kilo-{tag}", SecretString="kilo-key-not-real")["ARN"]
    admin = sm.create_secret(Name=f"admin-{tag}", SecretString="admin-key-not-real")["ARN"]
    app = sm.create_secret(
        Name=f"app-{tag}", SecretString=json.dumps({"privateKey": "pem-not-real", "webhookSecret": "whs-not-real"})
    )["ARN"]
    cache = sm.create_secret(Name=f"cache-{tag}", SecretString=json.dumps({"username": "u", "password": "pw"}))["ARN"]
    with SecretsProxy(aws_env.url, gather=4) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", proxy.url)
        reset_secrets_client()
        settings = load_settings(
            kilo_api_key_secret_arn=kilo,
            admin_api_key_secret_arn=admin,
            github_app_id="12345",
            github_app_secret_arn=app,
            redis_url="rediss://cache.example:6379",
            redis_username="u",
            redis_password_secret_arn=cache,
        )
    assert proxy.reads == {kilo: 1, admin: 1, app: 1, cache: 1}
    assert proxy.most_in_flight == 4  # together, not one after another
    assert settings.api_key == "kilo-key-not-real" and settings.admin_key == "admin-key-not-real"
    assert settings.github_app_private_key is not None and settings.github_webhook_secret is not None
    assert settings.github_app_private_key.get_secret_value() == "pem-not-real"
    assert settings.github_webhook_secret.get_secret_value() == "whs-not-real"
    assert settings.resolved_redis_url == "rediss://u:pw@cache.example:6379"
    from kilo_bridge.config import _secrets

    config = _secrets().meta.config
    assert (config.connect_timeout, config.read_timeout) == (
        SECRET_READ_TIMEOUTS["connect_timeout"],
        SECRET_READ_TIMEOUTS["read_timeout"],
    )
    assert config.retries["total_max_attempts"] == SECRET_READ_TIMEOUTS["total_max_attempts"]
    reset_secrets_client()
