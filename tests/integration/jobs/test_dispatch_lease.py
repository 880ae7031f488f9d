"""Dispatch as a lease, on moto (over HTTP) through functions/dispatcher as `make invoke` loads it: a dispatcher
killed between its mark and RunTask leaves a mark that lapses, and the redelivered message starts the one task;
RunTask failures are retried with backoff a bounded number of times; on a message's last receive a task that
still cannot start fails the job (`dispatch_failed: <ECS reason>`) instead of leaving it `queued` for a day."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import httpx
import pytest

from kilo_bridge.config import Settings, settings_env
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.platform import aws
from kilo_bridge.platform.redis import Store
from scripts.invoke import Context, load_function
from tests.fakes.fake_ecs_capacity import CAPACITY, FakeEcsCapacity
from tests.fakes.fake_github import FakeGitHub
from tests.jobkit import run_body

ROOT = Path(__file__).resolve().parents[3]
LEASE_S = 120.0


@pytest.fixture
def aws_settings(aws_env: Any) -> dict[str, Any]:
    """The ECS dispatch settings of this test's own AWS (conftest.py), with a lease and quick retries."""
    keep = ("job_queue", "agent_queue_url", "ecs_cluster", "ecs_task_definition", "ecs_subnets", "ecs_security_groups")
    return {
        **{k: v for k, v in aws_env.settings().items() if k in keep},
        "jobs_concurrency": 0,
        "dispatch_lease_s": LEASE_S,
        "ecs_run_task_backoff_s": 0.01,
        "agent_queue_max_receives": 3,
    }


@pytest.fixture
def queued_job(
    aws_settings: dict[str, Any],
    job_settings: Callable[..., Settings],
    serve: Callable[..., str],
    fake_github: FakeGitHub,
    http_client: Callable[..., httpx.Client],
) -> Callable[..., tuple[str, dict[str, Any]]]:
    """`queued_job(**settings)` → (job id, its SQS message), accepted by the real API on those settings."""

    def make(**overrides: Any) -> tuple[str, dict[str, Any]]:
        settings = job_settings(**{**aws_settings, **overrides})
        api = http_client(base_url=serve(settings), timeout=10)
        accepted = api.post("/api/kilo/run-agent", json=run_body(fake_github.repo_url("acme", "widgets")))
        assert accepted.status_code == 202, accepted.text
        sqs = boto3.client("sqs")
        message = sqs.receive_message(QueueUrl=aws_settings["agent_queue_url"])["Messages"][0]
        return accepted.json()["jobId"], message

    return make


def dispatcher(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for var, value in settings_env(settings).items():
        monkeypatch.setenv(var, value)
    return load_function("dispatcher")


def delivery(message: dict[str, Any], receive_count: int) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events/dispatcher/sqs-run-agent.json").read_text())
    record = event["Records"][0]
    record["messageId"], record["body"], record["receiptHandle"] = (
        message["MessageId"],
        message["Body"],
        message["ReceiptHandle"],
    )
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return event


def job(settings: Settings, job_id: str) -> dict[str, str]:
    async def read() -> dict[str, str]:
        store = Store(settings)
        try:
            return await store.hash(JobStore(store).job_key(job_id))
        finally:
            await store.close()

    return asyncio.run(read())


def kill_mid_dispatch(settings: Settings, job_id: str, age_s: float) -> None:
    """What a dispatcher killed after taking the lease and before RunTask answered leaves: the mark, no ARN,
    taken `age_s` ago."""

    async def mark() -> None:
        store = Store(settings)
        try:
            jobs = JobStore(store)
            await store.call("HDEL", jobs.job_key(job_id), "dispatchMs")  # a fresh dispatcher each time
            assert await jobs.mark_dispatched(job_id, int(LEASE_S * 1000)) > 0
            raw = await store.field(jobs.job_key(job_id), "dispatchMs")
            await store.call("HSET", jobs.job_key(job_id), "dispatchMs", int(raw or 0) - int(age_s * 1000))
        finally:
            await store.close()

    asyncio.run(mark())


def tasks(aws_settings: dict[str, Any]) -> list[str]:
    return list(boto3.client("ecs").list_tasks(cluster=aws_settings["ecs_cluster"])["taskArns"])


def test_redelivery_after_a_killed_invocation_starts_the_one_task(
    queued_job: Callable[..., tuple[str, dict[str, Any]]],
    aws_settings: dict[str, Any],
    job_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = job_settings(**aws_settings)
    job_id, message = queued_job()
    handler = dispatcher(settings, monkeypatch).handler

    kill_mid_dispatch(settings, job_id, age_s=1)  # the first invocation is still (or was just) at work
    busy = handler(delivery(message, 2), Context())
    assert busy == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}  # retried, not dropped
    assert tasks(aws_settings) == []

    kill_mid_dispatch(settings, job_id, age_s=LEASE_S + 1)  # ... and died: its lease has lapsed
    assert handler(delivery(message, 3), Context()) == {"batchItemFailures": []}
    started = tasks(aws_settings)
    assert len(started) == 1 and job(settings, job_id)["taskArn"] == started[0]
    assert job(settings, job_id)["status"] == "queued"  # the runner in the task claims it

    assert handler(delivery(message, 4), Context()) == {"batchItemFailures": []}  # once more: nothing new
    assert tasks(aws_settings) == started


def test_a_failed_run_task_gives_the_lease_back_then_fails_the_job_on_the_last_receive(
    queued_job: Callable[..., tuple[str, dict[str, Any]]],
    aws_settings: dict[str, Any],
    job_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = job_settings(**{**aws_settings, "ecs_cluster": "no-such-cluster"})
    job_id, message = queued_job()
    handler = dispatcher(settings, monkeypatch).handler

    for receive in (1, 2):
        result = handler(delivery(message, receive), Context())
        assert result == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
        record = job(settings, job_id)
        assert record["status"] == "queued" and "dispatchMs" not in record  # the next receive may try at once

    capsys.readouterr()
    assert handler(delivery(message, 3), Context()) == {"batchItemFailures": []}  # handled: not to the DLQ
    record = job(settings, job_id)
    assert (record["status"], record["reason"]) == ("failed", "dispatch_failed")
    assert record["error"].startswith("dispatch_failed: ClusterNotFoundException"), record["error"]
    assert '"JobsFailed"' in capsys.readouterr().out  # the alarm's metric, as for a stopped task


@pytest.mark.parametrize(
    ("short", "receive", "calls", "status"),
    [
        (2, 1, 3, "queued"),  # capacity back after two refusals: started on the third attempt
        (10, 1, 4, "queued"),  # still none after ECS_RUN_TASK_ATTEMPTS: the message is retried later
        (10, 3, 4, "failed"),  # ... and on its last receive the job fails with ECS's reason
    ],
)
def test_capacity_refusals_are_retried_a_bounded_number_of_times(
    short: int,
    receive: int,
    calls: int,
    status: str,
    moto_url: str,
    queued_job: Callable[..., tuple[str, dict[str, Any]]],
    aws_settings: dict[str, Any],
    job_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = job_settings(**{**aws_settings, "ecs_run_task_attempts": 4})
    job_id, message = queued_job()
    with FakeEcsCapacity(moto_url, short) as ecs:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", ecs.url)
        aws.reset_clients()
        result = dispatcher(settings, monkeypatch).handler(delivery(message, receive), Context())
        assert ecs.run_task_calls == calls
    monkeypatch.delenv("AWS_ENDPOINT_URL_ECS")
    # Each refusal was definite (ECS answered, no task): every retry came with a client token of its own, as ECS
    # answers a repeated token with the first call's outcome.
    assert ecs.tokens[0] == job_id and len(set(ecs.tokens)) == calls
    record = job(settings, job_id)
    assert record["status"] == status
    if short < calls:
        assert result == {"batchItemFailures": []} and len(tasks(aws_settings)) == 1
    elif status == "queued":
        assert result == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
        assert tasks(aws_settings) == [] and "dispatchMs" not in record
    else:
        assert result == {"batchItemFailures": []}
        assert record["error"] == f"dispatch_failed: {CAPACITY}"


def test_no_attempt_starts_past_the_invocation_deadline(
    moto_url: str,
    queued_job: Callable[..., tuple[str, dict[str, Any]]],
    aws_settings: dict[str, Any],
    job_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = job_settings(**{**aws_settings, "ecs_run_task_attempts": 10})
    _, message = queued_job()

    class EndingContext(Context):
        def get_remaining_time_in_millis(self) -> int:
            return 10_000  # less than one more RunTask call may take, after the dispatcher's margin

    with FakeEcsCapacity(moto_url, short=10) as ecs:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", ecs.url)
        aws.reset_clients()
        result = dispatcher(settings, monkeypatch).handler(delivery(message, 1), EndingContext())
        assert ecs.run_task_calls == 1
    assert result == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}


def test_a_retry_after_an_uncertain_failure_keeps_the_token_and_a_redelivery_after_definite_ones_moves_on(
    moto_url: str,
    queued_job: Callable[..., tuple[str, dict[str, Any]]],
    aws_settings: dict[str, Any],
    job_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = job_settings(**{**aws_settings, "ecs_run_task_attempts": 2})
    job_id, message = queued_job()
    handler = dispatcher(settings, monkeypatch).handler
    with FakeEcsCapacity(moto_url, short=2) as ecs:  # two definite refusals: this receive's two attempts
        monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", ecs.url)
        aws.reset_clients()
        assert handler(delivery(message, 1), Context())["batchItemFailures"]
        first = list(ecs.tokens)
    with FakeEcsCapacity(moto_url, short=0, server_errors=1) as ecs:  # ECS's own fault: it may have acted
        monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", ecs.url)
        aws.reset_clients()
        assert handler(delivery(message, 2), Context()) == {"batchItemFailures": []}
        second = list(ecs.tokens)
    monkeypatch.delenv("AWS_ENDPOINT_URL_ECS")
    assert len(set(first)) == 2
    # The redelivered message starts past the refused tokens, then retries its uncertain call with the same one.
    assert second[0] == second[1] and second[0] not in first
    assert len(tasks(aws_settings)) == 1 and job(settings, job_id)["taskArn"] == tasks(aws_settings)[0]


def dead_letter(aws_settings: dict[str, Any], message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Send `message` to a dead-letter queue the moto way (its receives exhausted), and return that queue's ARN and
    the SQS event the dispatcher gets from it."""
    sqs = boto3.client("sqs")
    url = aws_settings["agent_queue_url"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    dlq_arn = json.loads(arn)["deadLetterTargetArn"]
    dlq_url = sqs.get_queue_url(QueueName=dlq_arn.rsplit(":", 1)[1])["QueueUrl"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    assert not sqs.receive_message(QueueUrl=url).get("Messages")  # over maxReceiveCount: moved, not delivered
    (dead,) = sqs.receive_message(QueueUrl=dlq_url, AttributeNames=["All"])["Messages"]
    assert dead["Body"] == message["Body"]
    event = delivery(dead, int(dead["Attributes"]["ApproximateReceiveCount"]))
    event["Records"][0]["eventSourceARN"] = dlq_arn
    return dlq_arn, event


@pytest.fixture
def redriven(aws_settings: dict[str, Any]) -> dict[str, Any]:
    """The test's queue with a dead-letter queue after one receive (the template's has 3; moto moves a message
    the same way whatever the count)."""
    sqs = boto3.client("sqs")
    name = aws_settings["agent_queue_url"].rsplit("/", 1)[1] + "-dlq"
    dlq_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    sqs.set_queue_attributes(QueueUrl=aws_settings["agent_queue_url"], Attributes={"RedrivePolicy": policy})
    return {**aws_settings, "agent_dead_letter_queue_arn": dlq_arn}


def test_a_job_whose_message_was_dead_lettered_is_failed_at_once(
    redriven: dict[str, Any],
    queued_job: Callable[..., tuple[str, dict[str, Any]]],
    job_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The message ran out of receives without the dispatcher ever failing its job (a throttled invocation, a
    timeout, Redis down on the last receive): reading the DLQ fails the job `dispatch_failed`, not 24 h later."""
    settings = job_settings(**redriven)
    job_id, message = queued_job()
    _, event = dead_letter(redriven, message)
    assert job(settings, job_id)["status"] == "queued"
    capsys.readouterr()
    assert dispatcher(settings, monkeypatch).handler(event, Context()) == {"batchItemFailures": []}
    record = job(settings, job_id)
    assert (record["status"], record["reason"]) == ("failed", "dispatch_failed")
    assert "dead-letter queue" in record["error"]
    assert tasks(redriven) == []  # the dead letter starts nothing
    assert '"JobsFailed"' in capsys.readouterr().out  # counted by the alarm's metric


def test_a_dead_letter_leaves_a_started_job_and_keeps_a_message_naming_none(
    redriven: dict[str, Any],
    queued_job: Callable[..., tuple[str, dict[str, Any]]],
    job_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = job_settings(**redriven)
    job_id, message = queued_job()
    handler = dispatcher(settings, monkeypatch).handler
    assert handler(delivery(message, 1), Context()) == {"batchItemFailures": []}  # its task started
    assert job(settings, job_id)["taskArn"]
    _, event = dead_letter(redriven, message)  # ... and its message still ended in the DLQ
    assert handler(event, Context()) == {"batchItemFailures": []}
    assert job(settings, job_id)["status"] == "queued"  # the task's runner (or the finalizer) ends it
    event["Records"][0]["body"] = '{"not": "a job"}'
    failures = handler(event, Context())["batchItemFailures"]
    assert failures == [{"itemIdentifier": event["Records"][0]["messageId"]}]  # stays for inspection
