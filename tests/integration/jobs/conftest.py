"""AWS for the job tests: per test its own queue, cluster, task definition, network, bucket and KMS key in the
session's moto server (tests/conftest.py `moto_url`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import pytest

from kilo_bridge.platform import aws
from tests.support import Aws


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    for name, value in {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    aws.reset_clients()
    tag = uuid.uuid4().hex[:8]
    sqs, ecs, ec2 = (boto3.client(s, endpoint_url=moto_url) for s in ("sqs", "ecs", "ec2"))
    queue_url = sqs.create_queue(QueueName=f"agent-jobs-{tag}")["QueueUrl"]
    cluster = ecs.create_cluster(clusterName=f"kb-{tag}")["cluster"]["clusterArn"]
    # The real one is awsvpc/FARGATE (template.yaml); moto 5.2.5 fails RunTask on awsvpc task definitions
    # ('NetworkInterface' has no 'private_dns_name'), so the stand-in here leaves networkMode out.
    task_def = ecs.register_task_definition(
        family=f"kb-agent-{tag}",
        containerDefinitions=[{"name": "agent", "image": "agent:test", "memory": 2048, "essential": True}],
    )["taskDefinition"]["taskDefinitionArn"]
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"kb-{tag}", Description="agent", VpcId=vpc)["GroupId"]
    bucket = f"kb-audit-{tag}"
    boto3.client("s3", endpoint_url=moto_url).create_bucket(Bucket=bucket)
    key = boto3.client("kms", endpoint_url=moto_url).create_key(Description="job secrets")["KeyMetadata"]["Arn"]
    yield Aws(moto_url, queue_url, cluster, task_def, subnet, group, bucket, key)
    aws.reset_clients()
