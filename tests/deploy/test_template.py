"""The AWS SAM template keeps its promises: code where it points, streaming that streams, a wired DLQ,
the two fixed schedules, narrow IAM, no plaintext keys, a private bucket, and the layer's pins equal to
pyproject's. Parsed offline with a CloudFormation-tag-aware YAML loader (no AWS, no sam CLI)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT

TEMPLATE = ROOT / "template.yaml"

# Actions that take no resource narrower than "*" (AWS service authorization reference).
WILDCARD_OK = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "cloudwatch:PutMetricData",
    "ecr:GetAuthorizationToken",
}
# Served only by the local server: with S3 storage (the AWS deployment) a job's artifact links are presigned
# S3 URLs (web/routes/jobs.py, jobs/artifacts.py), so API Gateway routes nothing here.
# Prometheus's /metrics is the local server's (on AWS the same figures are CloudWatch metrics).
LOCAL_ONLY_ROUTES = {("/api/kilo/job/{}/artifacts/{}", "GET"), ("/metrics", "GET")}


def route_shape(path: str, method: str) -> tuple[str, str]:
    """A route as (path, METHOD) with its path parameters unnamed: the app calls one `{key_id}` where the
    template's API Gateway event says `{id}`, and only the shape decides which requests reach a function."""
    return re.sub(r"\{[^/{}]+\}", "{}", path), method.upper()


# The /v1 inference calls: plain or streamed as the client asks, up to 15 minutes (count_tokens is a short call).
V1_INFERENCE = {
    ("/v1/chat/completions", "POST"),
    ("/v1/responses", "POST"),
    ("/v1/messages", "POST"),
    ("/v1/embeddings", "POST"),
}


def app_routes() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(short, streaming) routes of the app's route table: the event-stream endpoints (those with `events`) and
    the /v1 inference calls (POST; plain or `"stream": true`, as the client asks) are the StreamFunction's
    (Lambda Web Adapter, response streaming, 15 minutes), the rest the ApiFunction's (Mangum)."""
    from kilo_bridge.web.routes import api

    short: set[tuple[str, str]] = set()
    streaming: set[tuple[str, str]] = set()
    for endpoint in api.endpoints:
        route = route_shape(endpoint.path, endpoint.method)
        if route not in LOCAL_ONLY_ROUTES:
            (streaming if endpoint.events or route in V1_INFERENCE else short).add(route)
    return short, streaming


SHORT_ROUTES, STREAM_ROUTES = app_routes()


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags (!Ref, !GetAtt, !Sub, ...) into their long form."""


def _cfn_tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(text: str | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text() if text is None else text, Loader=CfnLoader)  # noqa: S506 - safe subclass
    return loaded


@pytest.fixture(scope="module")
def tpl() -> dict[str, Any]:
    return load_template()


def resources(tpl: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in tpl["Resources"].items() if r["Type"] == rtype}


def function(tpl: dict[str, Any], name: str) -> dict[str, Any]:
    fn = tpl["Resources"].get(name)
    assert fn is not None and fn["Type"] == "AWS::Serverless::Function", f"{name} is not in the template"
    properties: dict[str, Any] = fn["Properties"]
    return properties


def env_of(tpl: dict[str, Any], name: str) -> dict[str, Any]:
    """A function's effective environment: Globals merged with its own variables."""
    merged = dict(tpl.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    merged.update(function(tpl, name).get("Environment", {}).get("Variables", {}))
    return merged


def api_events(tpl: dict[str, Any], name: str) -> dict[tuple[str, str], dict[str, Any]]:
    events = function(tpl, name).get("Events", {})
    return {
        route_shape(e["Properties"]["Path"], e["Properties"]["Method"]): e["Properties"]
        for e in events.values()
        if e["Type"] == "Api"
    }


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ------------------------------------------------------------------------------------------ functions

EXPECTED_CODE = {
    "ApiFunction": ("functions/api/", "app.handler"),
    "StreamFunction": ("functions/stream/", "run.sh"),
    "DispatcherFunction": ("functions/dispatcher/", "app.handler"),
    "FinalizerFunction": ("functions/finalizer/", "app.handler"),
    "ScheduledFunction": ("functions/scheduled/", "app.handler"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_CODE))
def test_function_code_and_handler_exist(tpl: dict[str, Any], name: str) -> None:
    props = function(tpl, name)
    assert (props["CodeUri"], props["Handler"]) == EXPECTED_CODE[name]
    code_dir = ROOT / props["CodeUri"]
    handler = props["Handler"]
    if handler.endswith(".sh"):
        script = code_dir / handler
        assert script.is_file(), f"{script} is missing"
        assert os.access(script, os.X_OK), f"{script} must be executable (Lambda runs it directly)"
        return
    module, _, func = handler.rpartition(".")
    source = code_dir / f"{module.replace('.', '/')}.py"
    assert source.is_file(), f"{source} is missing"
    tree = ast.parse(source.read_text())
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert func in defined, f"{source} defines no {func!r}"


def test_every_function_has_its_own_role(tpl: dict[str, Any]) -> None:
    roles = []
    for name, fn in resources(tpl, "AWS::Serverless::Function").items():
        role = fn["Properties"].get("Role")
        # Without Role, SAM attaches managed policies whose statements are on "*".
        assert role, f"{name} has no explicit Role"
        assert "Policies" not in fn["Properties"], f"{name}: use its Role, not SAM policy templates"
        roles.append(role["Fn::GetAtt"][0])
    assert len(roles) == len(set(roles)) == 5


def test_short_routes_on_api_function(tpl: dict[str, Any]) -> None:
    routes = api_events(tpl, "ApiFunction")
    missing = SHORT_ROUTES - set(routes)
    assert not missing, f"short routes missing from ApiFunction: {sorted(missing)}"
    assert not STREAM_ROUTES & set(routes), "streaming routes must not go through Mangum (it buffers)"


def test_every_api_event_is_a_route_of_the_app(tpl: dict[str, Any]) -> None:
    from kilo_bridge.web.routes import api

    table = {route_shape(e.path, e.method) for e in api.endpoints}
    assert SHORT_ROUTES and STREAM_ROUTES, "the route table gave no routes to check the template against"
    assert table >= LOCAL_ONLY_ROUTES, "LOCAL_ONLY_ROUTES names a route the app no longer has"
    for name in ("ApiFunction", "StreamFunction"):
        unknown = set(api_events(tpl, name)) - table
        assert not unknown, f"{name} has API events for routes the app does not serve: {sorted(unknown)}"


def test_streaming_routes_stream(tpl: dict[str, Any]) -> None:
    routes = api_events(tpl, "StreamFunction")
    assert set(routes) == STREAM_ROUTES
    for route, props in routes.items():
        # STREAM is accepted by lint and silently buffers; only RESPONSE_STREAM streams.
        assert props.get("ResponseTransferMode") == "RESPONSE_STREAM", route
        assert props.get("TimeoutInMillis") == 900000, route  # streamed: 15 minutes (buffered: 5)
    env = env_of(tpl, "StreamFunction")
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert str(env["PORT"]) == "8080"
    assert "LambdaAdapterLayer" in json.dumps(function(tpl, "StreamFunction")["Layers"])
    timeout = function(tpl, "StreamFunction")["Timeout"]
    assert timeout >= 900, "the function must outlive the stream's integration timeout"


def test_no_event_uses_the_buffering_stream_value(tpl: dict[str, Any]) -> None:
    for fn in resources(tpl, "AWS::Serverless::Function").values():
        for event in fn["Properties"].get("Events", {}).values():
            assert event["Properties"].get("ResponseTransferMode") in (None, "RESPONSE_STREAM")


# -------------------------------------------------------------------------------------- agent queue


def test_queue_has_dead_letter_queue(tpl: dict[str, Any]) -> None:
    queue = tpl["Resources"]["AgentQueue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 3
    dlq_name = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert tpl["Resources"][dlq_name]["Type"] == "AWS::SQS::Queue"
    assert dlq_name != "AgentQueue"
    assert queue["VisibilityTimeout"] >= function(tpl, "DispatcherFunction")["Timeout"]


def test_dispatcher_reports_batch_item_failures(tpl: dict[str, Any]) -> None:
    events = [e["Properties"] for e in function(tpl, "DispatcherFunction")["Events"].values() if e["Type"] == "SQS"]
    assert len(events) == 2
    sqs = events[0]
    assert sqs["Queue"] == {"Fn::GetAtt": ["AgentQueue", "Arn"]}
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert sqs["BatchSize"] == 10
    assert "MaximumConcurrency" in sqs["ScalingConfig"]


def test_the_dispatcher_fails_the_jobs_of_dead_lettered_messages(tpl: dict[str, Any]) -> None:
    """A message that reached the DLQ (by any path) is read by the dispatcher, which knows it by the queue's ARN
    and fails its job if it is still queued with no task."""
    events = {
        n: e["Properties"] for n, e in function(tpl, "DispatcherFunction")["Events"].items() if e["Type"] == "SQS"
    }
    dlq = events["DeadLetters"]
    assert dlq["Queue"] == {"Fn::GetAtt": ["AgentDeadLetterQueue", "Arn"]}
    assert dlq["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # a message naming no job stays
    assert env_of(tpl, "DispatcherFunction").get("AGENT_DEAD_LETTER_QUEUE_ARN") == dlq["Queue"]
    consume = [
        s
        for p in tpl["Resources"]["DispatcherFunctionRole"]["Properties"]["Policies"]
        for s in p["PolicyDocument"]["Statement"]
        if "sqs:ReceiveMessage" in as_list(s["Action"])
    ]
    assert dlq["Queue"] in as_list(consume[0]["Resource"])
    dead = tpl["Resources"]["AgentDeadLetterQueue"]["Properties"]
    assert dead["VisibilityTimeout"] >= function(tpl, "DispatcherFunction")["Timeout"]


def test_dispatcher_may_run_only_the_agent_task(tpl: dict[str, Any]) -> None:
    statements = [
        s
        for p in tpl["Resources"]["DispatcherFunctionRole"]["Properties"]["Policies"]
        for s in p["PolicyDocument"]["Statement"]
    ]
    run = [s for s in statements if "ecs:RunTask" in as_list(s["Action"])]
    assert len(run) == 1 and run[0]["Resource"] == {"Ref": "AgentTaskDefinition"}
    assert "ecs:cluster" in json.dumps(run[0]["Condition"])
    passes = [s for s in statements if "iam:PassRole" in as_list(s["Action"])]
    assert len(passes) == 1
    assert sorted(r["Fn::GetAtt"][0] for r in passes[0]["Resource"]) == ["AgentExecutionRole", "AgentTaskRole"]


def test_finalizer_listens_to_stopped_agent_tasks(tpl: dict[str, Any]) -> None:
    (event,) = function(tpl, "FinalizerFunction")["Events"].values()
    pattern = event["Properties"]["Pattern"]
    assert event["Type"] == "EventBridgeRule"
    assert pattern["source"] == ["aws.ecs"] and pattern["detail-type"] == ["ECS Task State Change"]
    assert pattern["detail"]["lastStatus"] == ["STOPPED"]
    assert pattern["detail"]["clusterArn"] == [{"Fn::GetAtt": ["AgentCluster", "Arn"]}]


def test_task_container_is_named_agent_and_logs(tpl: dict[str, Any]) -> None:
    (container,) = tpl["Resources"]["AgentTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["Name"] == "agent" == env_of(tpl, "DispatcherFunction")["ECS_CONTAINER_NAME"]
    assert container["Image"] == {"Ref": "AgentImageUri"}
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"


# ---------------------------------------------------------------------------------------- schedules


def test_two_fixed_schedules_with_their_task_input_and_no_fixed_agent_run(tpl: dict[str, Any]) -> None:
    """The credit refresh and the reaper are fixed; agent runs are schedules made through the API (the nightly
    run of docs/deploy.md among them), so no schedule in the template starts one."""
    events = {n: e for n, e in function(tpl, "ScheduledFunction")["Events"].items() if e["Type"] == "ScheduleV2"}
    assert set(events) == {"RefreshCredits", "ReapJobs"}
    refresh, reap = (events[n]["Properties"] for n in ("RefreshCredits", "ReapJobs"))
    assert refresh["ScheduleExpression"] == "rate(5 minutes)"
    assert json.loads(refresh["Input"]) == {"task": "refresh-credits"}
    assert reap["ScheduleExpression"] == "rate(1 minute)"
    assert json.loads(reap["Input"]) == {"task": "reap-jobs"}
    schedules = resources(tpl, "AWS::Scheduler::Schedule")
    for name, node in [*events.items(), *schedules.items()]:
        assert "run-agent" not in json.dumps(node), f"{name} is a fixed agent run"
    assert not [p for p in tpl["Parameters"] if p.startswith("Nightly")]


def test_the_documented_nightly_run_is_a_schedule_the_api_takes() -> None:
    """docs/deploy.md's nightly dependency-update body is a valid POST /api/kilo/schedules body naming an agent of
    the catalogue, and it and README make it with curl and with the terminal client."""
    from kilo_bridge.config import load_settings
    from kilo_bridge.jobs.catalogue import load_catalog
    from kilo_bridge.schedules.cron import check
    from kilo_bridge.schedules.models import ScheduleCreate

    deploy = (ROOT / "docs/deploy.md").read_text()
    match = re.search(r"<<'JSON'\n(.*?)\nJSON\n", deploy, re.S)
    assert match, "docs/deploy.md: the nightly schedule's body (a <<'JSON' here-document)"
    body = ScheduleCreate.model_validate_json(match.group(1))
    assert body.run.agent == "dependency-update" and body.run.agent in load_catalog(load_settings().agents_path)
    check(body.cron, body.timezone)  # the rules the API applies (at most every 10 minutes, a real zone)
    readme = (ROOT / "README.md").read_text()
    assert "kilo-bridge schedules create" in deploy and "kilo-bridge schedules create" in readme


# ---------------------------------------------------------------------------------------------- IAM

POLICY_TYPES = (
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
)


def policy_documents(tpl: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every identity and resource policy in the template (KMS key policies name their key as "*": excluded)."""
    for name, res in tpl["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield name, policy["PolicyDocument"]
        elif res["Type"] in POLICY_TYPES:
            yield name, props["PolicyDocument"]


def statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A policy's statements, a conditional one (`!If [cond, statement, !Ref AWS::NoValue]`) as its statement."""
    out = []
    for st in as_list(doc["Statement"]):
        if "Fn::If" in st:
            out += [s for s in st["Fn::If"][1:] if isinstance(s, dict) and "Effect" in s]
        else:
            out.append(st)
    return out


def test_no_wildcard_resource_beyond_actions_that_need_it(tpl: dict[str, Any]) -> None:
    found = 0
    for name, doc in policy_documents(tpl):
        for st in statements(doc):
            found += 1
            if st["Effect"] == "Deny":
                continue
            assert "NotResource" not in st and "NotAction" not in st, name
            resources_ = as_list(st["Resource"])
            if "*" in resources_:
                extra = set(as_list(st["Action"])) - WILDCARD_OK
                assert not extra, f"{name} grants {sorted(extra)} on '*'"
            for action in as_list(st["Action"]):
                assert not action.endswith(":*"), f"{name} grants a whole service: {action}"
    assert found > 20, "no IAM statements found: the walk is broken"


def _readable_secrets(tpl: dict[str, Any], role: str) -> list[Any]:
    out: list[Any] = []
    for policy in tpl["Resources"][role]["Properties"].get("Policies", []):
        for st in statements(policy["PolicyDocument"]):
            if st["Effect"] == "Allow" and "secretsmanager:GetSecretValue" in as_list(st["Action"]):
                out += as_list(st["Resource"])
    return out


def _secret_readers(tpl: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(who, role, environment) for every function and the agent task's container."""
    for name in resources(tpl, "AWS::Serverless::Function"):
        yield name, function(tpl, name)["Role"]["Fn::GetAtt"][0], env_of(tpl, name)
    task = tpl["Resources"]["AgentTaskDefinition"]["Properties"]
    for container in task["ContainerDefinitions"]:
        env = {e["Name"]: e["Value"] for e in container.get("Environment", [])}
        yield f"task container {container['Name']}", task["TaskRoleArn"]["Fn::GetAtt"][0], env


def test_every_secret_a_part_is_given_its_role_may_read(tpl: dict[str, Any]) -> None:
    # Settings read each *_SECRET_ARN at start: one the role cannot read fails every cold start.
    checked = 0
    for who, role, env in _secret_readers(tpl):
        readable = _readable_secrets(tpl, role)
        for var, value in env.items():
            if var.endswith("_SECRET_ARN"):
                checked += 1
                assert value in readable, f"{who} is given {var} but {role} may not read it"
    assert checked >= 8


def _conditional_statements(doc: dict[str, Any]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(condition or None, statement) for each statement of a policy."""
    for st in as_list(doc["Statement"]):
        if "Fn::If" in st:
            condition, then, otherwise = st["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}, st
            yield condition, then
        else:
            yield None, st


def test_the_github_app_secret_is_read_by_the_webhook_and_the_runner_only_and_only_when_set(
    tpl: dict[str, Any],
) -> None:
    """The App's key and webhook secret: a parameter each part is given under the setting that reads it, a grant
    on that one secret to the API function (the webhook) and the agent task (it mints tokens) only, and only when
    the parameter is set: an empty one is no App and no grant (nor a grant on an empty ARN)."""
    from kilo_bridge.config import Settings

    params = tpl["Parameters"]
    for name in ("GitHubAppId", "GitHubAppSecretArn", "GitHubAppKeyId", "GitHubReviewRepos"):
        assert params[name]["Default"] == "", name  # off unless set
    arn = {"Ref": "GitHubAppSecretArn"}
    assert tpl["Conditions"]["HasGitHubAppSecret"] == {"Fn::Not": [{"Fn::Equals": [arn, ""]}]}
    grants: dict[str, list[tuple[str | None, dict[str, Any]]]] = {}
    for name, doc in policy_documents(tpl):
        for condition, st in _conditional_statements(doc):
            if arn in as_list(st.get("Resource")):
                grants.setdefault(name, []).append((condition, st))
    assert set(grants) == {"ApiFunctionRole", "AgentTaskRole"}
    for name, found in grants.items():
        ((condition, st),) = found
        assert condition == "HasGitHubAppSecret", name
        assert st["Effect"] == "Allow" and st["Action"] == "secretsmanager:GetSecretValue", name
        assert st["Resource"] == arn, name  # that secret alone
    given = {who: env for who, _, env in _secret_readers(tpl)}
    expected = {
        "ApiFunction": {
            "GITHUB_APP_ID": "GitHubAppId",
            "GITHUB_APP_SECRET_ARN": "GitHubAppSecretArn",
            "GITHUB_REVIEW_REPOS": "GitHubReviewRepos",
            "GITHUB_APP_KEY_ID": "GitHubAppKeyId",  # who owns the App's jobs: read by the webhook only
        },
        "task container agent": {"GITHUB_APP_ID": "GitHubAppId", "GITHUB_APP_SECRET_ARN": "GitHubAppSecretArn"},
    }
    for who, env in given.items():
        wanted = expected.get(who, {})
        for var, param in wanted.items():
            assert env.get(var) == {"Ref": param}, f"{who}: {var}"
            assert var.lower() in {f.name for f in Settings.fields()}, var  # the setting that reads it
        assert "GITHUB_APP_SECRET_ARN" in env or not wanted, who
        if not wanted:
            assert not {v for v in env if v.startswith("GITHUB_")}, f"{who} is given the GitHub App"


def test_no_managed_policies(tpl: dict[str, Any]) -> None:
    # Managed policies hide "*" resources from the check above.
    for name, res in tpl["Resources"].items():
        assert "ManagedPolicyArns" not in res.get("Properties", {}), name


def test_each_wildcard_resource_has_a_comment_saying_why() -> None:
    lines = TEMPLATE.read_text().splitlines()
    wildcards = [i for i, line in enumerate(lines) if re.fullmatch(r'\s*Resource: "\*"', line)]
    assert wildcards
    for i in wildcards:
        j = i
        while not lines[j].lstrip().startswith("- "):  # back to the start of the statement
            j -= 1
        assert lines[j - 1].lstrip().startswith("#"), f"template.yaml:{i + 1}: '*' without a comment saying why"


# ---------------------------------------------------------------------------------- secrets and data


def test_no_plaintext_kilo_or_admin_key(tpl: dict[str, Any]) -> None:
    banned = {"KILO_API_KEY", "ADMIN_API_KEY"}
    for node in walk(tpl):
        if isinstance(node, dict):
            assert not banned & set(node), f"plaintext key variable in {node}"
            assert not (isinstance(node.get("Name"), str) and node["Name"] in banned), f"plaintext key in {node}"
    env = env_of(tpl, "ApiFunction")
    assert "KILO_API_KEY_SECRET_ARN" in env and "ADMIN_API_KEY_SECRET_ARN" in env
    secret = tpl["Resources"]["KiloApiKeySecret"]["Properties"]
    assert "placeholder" in secret["SecretString"], "the template must never hold a real key"


def test_redis_is_tls_with_hash_tagged_prefix(tpl: dict[str, Any]) -> None:
    env = env_of(tpl, "ApiFunction")
    assert env["REDIS_URL"]["Fn::Sub"].startswith("rediss://")
    assert env["REDIS_PREFIX"] == "{kb}:"
    assert "REDIS_PASSWORD_SECRET_ARN" in env


def bucket_policy(tpl: dict[str, Any], bucket: str) -> list[dict[str, Any]]:
    """The statements of the one bucket policy on `bucket`."""
    (policy,) = [
        p for p in resources(tpl, "AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    found: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def assert_private_encrypted_tls_only(tpl: dict[str, Any], name: str) -> dict[str, Any]:
    bucket: dict[str, Any] = tpl["Resources"][name]["Properties"]
    block = bucket["PublicAccessBlockConfiguration"]
    assert all(
        block[k] is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    ), name
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"], name
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled", name
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}], name  # no ACLs
    denies = [s for s in bucket_policy(tpl, name) if s["Effect"] == "Deny"]
    tls = [s for s in denies if s["Condition"]["Bool"]["aws:SecureTransport"] == "false"]
    assert tls and tls[0]["Action"] == "s3:*" and tls[0]["Principal"] == "*", name
    assert tpl["Resources"][name]["DeletionPolicy"] == "Retain", name  # an audit trail outlives the stack
    return bucket


def test_bucket_is_private_encrypted_and_tls_only(tpl: dict[str, Any]) -> None:
    assert_private_encrypted_tls_only(tpl, "AuditBucket")


def test_audit_bucket_access_is_logged_to_its_own_log_bucket(tpl: dict[str, Any]) -> None:
    audit = tpl["Resources"]["AuditBucket"]["Properties"]
    logging = audit.get("LoggingConfiguration", {})
    assert logging.get("DestinationBucketName") == {"Ref": "AuditAccessLogBucket"}  # a separate bucket, not itself
    prefix = logging["LogFilePrefix"]
    logs = assert_private_encrypted_tls_only(tpl, "AuditAccessLogBucket")
    assert "LoggingConfiguration" not in logs  # a log bucket logging into itself would loop
    # Server access logs are delivered only into SSE-S3 buckets (not SSE-KMS).
    (rule,) = logs["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # Retained for a bounded time, its own parameter, at least as long as the artifacts it describes.
    (expiry,) = [
        r for r in logs["LifecycleConfiguration"]["Rules"] if r["Status"] == "Enabled" and "ExpirationInDays" in r
    ]
    assert expiry["ExpirationInDays"] == {"Ref": "AccessLogRetentionDays"}
    assert "NoncurrentVersionExpiration" in expiry
    params = tpl["Parameters"]
    assert params["AccessLogRetentionDays"]["Default"] >= params["ArtifactRetentionDays"]["Default"]
    # With ACLs off (BucketOwnerEnforced) delivery needs the policy grant: the logging service, only for the
    # audit bucket of this account, only under the prefix.
    (grant,) = [s for s in bucket_policy(tpl, "AuditAccessLogBucket") if s["Effect"] == "Allow"]
    assert grant["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert grant["Action"] == "s3:PutObject"
    assert grant["Resource"] == {"Fn::Sub": "${AuditAccessLogBucket.Arn}/" + prefix + "*"}
    assert grant["Condition"]["ArnLike"]["aws:SourceArn"] == {"Fn::GetAtt": ["AuditBucket", "Arn"]}
    assert grant["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


# ------------------------------------------------------------------------------------------- layer


def _locked(path: Path) -> dict[str, tuple[str, int]]:
    """A hashed lock file: each package's pinned version and how many hashes it carries."""
    locked: dict[str, tuple[str, int]] = {}
    name = ""
    for line in path.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", line)
        if pin:
            name = pin.group(1).lower().replace("_", "-")
            locked[name] = (pin.group(2), 0)
        elif "--hash=sha256:" in line and name:
            version, hashes = locked[name]
            locked[name] = (version, hashes + 1)
    return locked


@pytest.mark.parametrize(
    ("lock", "groups"),
    [("layers/requirements.txt", ("server",)), ("requirements/test.lock", ("server", "dev", "clients"))],
)
def test_lock_files_hold_every_pin_of_pyproject_with_hashes(lock: str, groups: tuple[str, ...]) -> None:
    """The lock files are pyproject.toml's pins resolved (`make lock`): every direct pin at its version, every
    package with its hashes (pip installs them with --require-hashes)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [*project["dependencies"], *(p for g in groups for p in project["optional-dependencies"][g])]
    locked = _locked(ROOT / lock)
    for pin in pins:
        name, version = re.sub(r"\[.*?\]", "", pin.split(";")[0]).strip().split("==")
        assert locked.get(name.lower().replace("_", "-"), ("", 0))[0] == version, f"{lock}: {pin} not locked"
    assert all(hashes for _, hashes in locked.values()), f"{lock}: a package without its hashes"


def test_layer_carries_library_and_agent_catalogue(tpl: dict[str, Any]) -> None:
    layer = tpl["Resources"]["KiloBridgeLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/"
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (ROOT / "layers/Makefile").read_text()
    assert "build-KiloBridgeLayer:" in makefile
    assert '"$(ARTIFACTS_DIR)/agent_task/"' in makefile and "agent_task/agents" in makefile
    assert env_of(tpl, "ApiFunction")["AGENTS_DIR"] == "/opt/agent_task/agents"
    for fn in resources(tpl, "AWS::Serverless::Function"):
        layers = tpl["Globals"]["Function"]["Layers"] + function(tpl, fn).get("Layers", [])
        assert {"Ref": "KiloBridgeLayer"} in layers, fn


def test_layer_ships_byte_code_that_needs_no_source_check(tmp_path: Path) -> None:
    """Lambda's /opt is read-only: a module without its .pyc is compiled at every cold start. The build's last step
    compiles the layer (after the __pycache__ clean-up), hash-based and unchecked, as the zip keeps no exact mtime."""
    art = tmp_path / "artifacts"
    dry = subprocess.run(
        ["make", "-s", "-n", "-C", str(ROOT / "layers"), "build-KiloBridgeLayer", f"ARTIFACTS_DIR={art}",
         f"PYTHON312={sys.executable}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    steps = [ln for ln in dry.stdout.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert "compileall" in steps[-1] and "--invalidation-mode unchecked-hash" in steps[-1], steps[-1]
    assert any("__pycache__" in step and "rm -rf" in step for step in steps[:-1])
    # The step itself, on the library as it is copied into the layer: every module gets an unchecked-hash .pyc.
    shutil.copytree(
        ROOT / "layers" / "kilo_bridge", art / "python" / "kilo_bridge", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(shlex.split(steps[-1]), check=True)
    for source in (art / "python" / "kilo_bridge").rglob("*.py"):
        pyc = Path(importlib.util.cache_from_source(str(source)))
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        assert flags == 0b01, source  # hash-based (bit 0), source not checked (bit 1 clear): PEP 552


# ------------------------------------------------------------------------------- the checks bite


@pytest.mark.parametrize(
    ("old", "new", "test"),
    [
        ("ResponseTransferMode: RESPONSE_STREAM", "ResponseTransferMode: STREAM", test_streaming_routes_stream),
        ("Path: /api/kilo/docs, Method: GET", "Path: /api/kilo/doc, Method: GET", test_short_routes_on_api_function),
        (
            "Path: /api/kilo/docs, Method: GET",
            "Path: /api/kilo/doc, Method: GET",
            test_every_api_event_is_a_route_of_the_app,
        ),
        ("maxReceiveCount: 3", "maxReceiveCount: 30", test_queue_has_dead_letter_queue),
        (
            "FunctionResponseTypes: [ReportBatchItemFailures]",
            "FunctionResponseTypes: []",
            test_dispatcher_reports_batch_item_failures,
        ),
        (
            """Input: '{"task": "reap-jobs"}'""",
            """Input: '{"task": "reap"}'""",
            test_two_fixed_schedules_with_their_task_input_and_no_fixed_agent_run,
        ),
        ("Resource: !GetAtt AgentQueue.Arn", 'Resource: "*"', test_no_wildcard_resource_beyond_actions_that_need_it),
        ("AGENTS_DIR: /opt/agent_task/agents", "KILO_API_KEY: sk-not-a-real-key", test_no_plaintext_kilo_or_admin_key),
        ("RestrictPublicBuckets: true", "RestrictPublicBuckets: false", test_bucket_is_private_encrypted_and_tls_only),
        (
            "        DestinationBucketName: !Ref AuditAccessLogBucket\n",
            "",
            test_audit_bucket_access_is_logged_to_its_own_log_bucket,
        ),
        (
            "ExpirationInDays: !Ref AccessLogRetentionDays",
            "ExpirationInDays: !Ref ArtifactRetentionDays",
            test_audit_bucket_access_is_logged_to_its_own_log_bucket,
        ),
        (
            "Principal: {Service: logging.s3.amazonaws.com}",
            'Principal: "*"',
            test_audit_bucket_access_is_logged_to_its_own_log_bucket,
        ),
        (
            '.Arn}/*"\n            Condition:\n              Bool: {aws:SecureTransport: "false"}\n\n  # ---',
            '.Arn}/*"\n            Condition:\n              Bool: {aws:SecureTransport: "true"}\n\n  # ---',
            test_audit_bucket_access_is_logged_to_its_own_log_bucket,
        ),
        (
            "        JOB_SECRETS_KMS_KEY_ID: !GetAtt",
            "        ADMIN_API_KEY_SECRET_ARN: !Ref AdminApiKeySecret\n        JOB_SECRETS_KMS_KEY_ID: !GetAtt",
            test_every_secret_a_part_is_given_its_role_may_read,
        ),
        (
            "                - HasGitHubAppSecret\n                - Sid: ReadGitHubAppSecret",
            "                - TracingOn\n                - Sid: ReadGitHubAppSecret",
            test_the_github_app_secret_is_read_by_the_webhook_and_the_runner_only_and_only_when_set,
        ),
        (
            "no admin key here.\n",
            "no admin key here.\n          GITHUB_APP_SECRET_ARN: !Ref GitHubAppSecretArn\n",
            test_the_github_app_secret_is_read_by_the_webhook_and_the_runner_only_and_only_when_set,
        ),
        (
            "            - {Name: GITHUB_APP_SECRET_ARN, Value: !Ref GitHubAppSecretArn}\n",
            "",
            test_the_github_app_secret_is_read_by_the_webhook_and_the_runner_only_and_only_when_set,
        ),
    ],
)
def test_checks_fail_when_the_template_breaks_a_promise(old: str, new: str, test: Any) -> None:
    text = TEMPLATE.read_text()
    assert old in text, f"fixture text {old!r} no longer in template.yaml"
    broken = load_template(text.replace(old, new))
    with pytest.raises(AssertionError):
        test(broken)


def test_only_the_runner_opens_job_secrets_and_the_api_opens_profiles_and_triggers_only(tpl: dict[str, Any]) -> None:
    """kms:Decrypt on the job secrets key: the agent task for its job's secrets; the functions that submit runs
    (a run may name a saved profile) only under a profile's (or, the API, a trigger's) encryption context, never
    a job's."""
    openers: dict[str, list[dict[str, Any]]] = {}
    for name, role in resources(tpl, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if not isinstance(statement, dict) or "kms:Decrypt" not in as_list(statement.get("Action")):
                    continue
                if statement.get("Resource") == {"Fn::GetAtt": ["JobSecretsKey", "Arn"]}:
                    openers.setdefault(name, []).append(statement)
    assert set(openers) == {"AgentTaskRole", "ApiFunctionRole", "ScheduledFunctionRole"}
    # The API also opens a trigger's signing secret ({"trigger": ...}) to verify a call to it.
    contexts = {
        "ApiFunctionRole": ["profile", "trigger"],
        "ScheduledFunctionRole": ["profile"],
        "AgentTaskRole": ["jobId"],  # its own job's secrets: never a profile's or a trigger's
    }
    for name, keys in contexts.items():
        (statement,) = openers[name]
        condition = statement["Condition"]
        assert condition["ForAllValues:StringEquals"] == {"kms:EncryptionContextKeys": keys}
        assert condition["Null"]["kms:EncryptionContextKeys"] == "false"  # no context at all is no profile


def _resource_path(path: str) -> str:
    return "/" + path.replace("/", "~1")  # API Gateway: "/" then the path with each "/" as "~1"


def test_a_client_sends_one_key_and_public_posts_have_their_own_throttle(tpl: dict[str, Any]) -> None:
    """No API Gateway key or usage plan, on the API or any route: the service's own key (Bearer or x-api-key) is
    the only credential a client sends, checked by the app. The stage throttles bound the account; a public POST
    (a GitHub delivery, a trigger call: each may start a job) gets its own throttle."""
    from kilo_bridge.web.routes import api

    props = tpl["Resources"]["KiloApi"]["Properties"]
    assert "Auth" not in props, "API-wide Auth asks clients for a second credential"
    for name in ("ApiFunction", "StreamFunction"):
        for route, event in api_events(tpl, name).items():
            assert "Auth" not in event, f"{route} sets its own Auth"
    assert not resources(tpl, "AWS::ApiGateway::UsagePlan") and not resources(tpl, "AWS::ApiGateway::ApiKey")
    settings = props["MethodSettings"]
    stage_wide = [s for s in settings if (s["ResourcePath"], s["HttpMethod"]) == ("/*", "*")]
    assert stage_wide and {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(stage_wide[0])
    throttled = {(s["ResourcePath"], s["HttpMethod"]) for s in settings}
    posts = [e for e in api.endpoints if e.auth == "public" and e.method == "POST"]
    assert {e.path for e in posts} >= {"/api/kilo/github/webhook", "/api/kilo/triggers/{id}"}
    for e in posts:
        assert (_resource_path(e.path), "POST") in throttled, f"{e.path} has no throttle of its own"


def test_throttling_reaches_clients_as_429_with_retry_after(tpl: dict[str, Any]) -> None:
    """API Gateway's own throttle, and a throttled Lambda (which API Gateway sees as an integration failure and
    would answer 500): 429 with a Retry-After, in the service's error shape."""
    responses = tpl["Resources"]["KiloApi"]["Properties"]["GatewayResponses"]
    for kind in ("THROTTLED", "INTEGRATION_FAILURE"):
        response = responses[kind]
        assert int(response["StatusCode"]) == 429, kind
        retry_after = response.get("ResponseParameters", {}).get("Headers", {}).get("Retry-After", "")
        assert re.fullmatch(r"'[1-9][0-9]*'", retry_after), kind  # a static value: quoted
        body = response["ResponseTemplates"]["application/json"]
        assert '"requestId": "$context.requestId"' in body and '"code": ' in body, kind


def test_the_task_holds_only_its_jobs_secrets(tpl: dict[str, Any]) -> None:
    """The agent task's role: kms:Decrypt only under a job's encryption context ({"jobId": ...}, never a profile's
    or a trigger's), artifacts written under jobs/ only, its own cache user's secret (not the functions')."""
    sts = {
        st.get("Sid"): st
        for policy in tpl["Resources"]["AgentTaskRole"]["Properties"]["Policies"]
        for _, st in _conditional_statements(policy["PolicyDocument"])
    }
    decrypt = sts["DecryptJobSecrets"]
    condition = decrypt.get("Condition", {})
    assert condition.get("ForAllValues:StringEquals") == {"kms:EncryptionContextKeys": ["jobId"]}
    assert condition.get("Null") == {"kms:EncryptionContextKeys": "false", "kms:EncryptionContext:jobId": "false"}
    write = sts["WriteArtifacts"]
    assert as_list(write["Action"]) == ["s3:PutObject"]
    assert write["Resource"] == {"Fn::Sub": "${AuditBucket.Arn}/jobs/job_*"}
    from kilo_bridge.jobs.artifacts import artifact_key
    from kilo_bridge.jobs.record import new_job_id

    assert artifact_key(new_job_id(), "result.json").startswith("jobs/job_")
    (container,) = tpl["Resources"]["AgentTaskDefinition"]["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["REDIS_PASSWORD_SECRET_ARN"] == {"Ref": "RunnerCacheUserSecret"}
    assert env["REDIS_USERNAME"] == "kilo-bridge-runner"
    assert "CacheUserSecret" not in json.dumps(sts["ReadSecrets"]["Resource"]).replace("RunnerCacheUserSecret", "")
    runner = tpl["Resources"]["CacheRunnerUser"]["Properties"]
    assert runner["UserName"] == "kilo-bridge-runner"
    acl = runner["AccessString"].split()
    assert "~*" not in acl and "~{kb}:*" not in acl and "-@dangerous" in acl
    for family in ("~{kb}:apikeys", "~{kb}:profile:*", "~{kb}:trigger:*", "~{kb}:schedule:*"):
        assert family not in acl
    assert {"Ref": "CacheRunnerUser"} in tpl["Resources"]["CacheUserGroup"]["Properties"]["UserIds"]


def test_the_tasks_agent_calls_no_api_gateway_route(tpl: dict[str, Any]) -> None:
    """The runner serves its agent's model endpoint itself, in the task: the task is not pointed at the API's URL
    (no BRIDGE_URL, nothing naming the REST API), it reads the Kilo key for that, and the runner's own stop is
    handled under an init."""
    (container,) = tpl["Resources"]["AgentTaskDefinition"]["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert "BRIDGE_URL" not in env
    # Only the links' base (PUBLIC_BASE_URL) may name the API; nothing the model calls use does.
    others = {**container, "Environment": [e for e in container["Environment"] if e["Name"] != "PUBLIC_BASE_URL"]}
    dumped = json.dumps(others)
    assert '"KiloApi"' not in dumped and "${KiloApi}" not in dumped and "execute-api" not in dumped
    assert env["KILO_API_KEY_SECRET_ARN"] == {
        "Fn::If": ["CreateKiloSecret", {"Ref": "KiloApiKeySecret"}, {"Ref": "KiloApiKeySecretArn"}]
    }
    assert container["LinuxParameters"]["InitProcessEnabled"] is True


def test_the_api_manages_run_schedules_in_its_own_group_only(tpl: dict[str, Any]) -> None:
    """Exactly Create/Delete/Update/GetSchedule on its own group's schedules, and PassRole of the schedules'
    role (to the scheduler only); that role may invoke the scheduled function and nothing else."""
    sts = {
        st.get("Sid"): st
        for policy in tpl["Resources"]["ApiFunctionRole"]["Properties"]["Policies"]
        for st in statements(policy["PolicyDocument"])
    }
    manage = sts["ManageRunSchedules"]
    assert sorted(as_list(manage["Action"])) == [
        "scheduler:CreateSchedule",
        "scheduler:DeleteSchedule",
        "scheduler:GetSchedule",
        "scheduler:UpdateSchedule",
    ]
    assert manage["Resource"]["Fn::Sub"].endswith(":schedule/${AgentRunScheduleGroup}/*")
    scheduler_actions = [a for st in sts.values() for a in as_list(st["Action"]) if a.startswith("scheduler:")]
    assert len(scheduler_actions) == 4
    passing = sts["PassSchedulerRole"]
    assert passing["Action"] == "iam:PassRole" and passing["Resource"] == {
        "Fn::GetAtt": ["AgentRunSchedulerRole", "Arn"]
    }
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    role = tpl["Resources"]["AgentRunSchedulerRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "scheduler.amazonaws.com"}
    (invoke,) = statements(role["Policies"][0]["PolicyDocument"])
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert invoke["Resource"] == {"Fn::GetAtt": ["ScheduledFunction", "Arn"]}
    env = env_of(tpl, "ApiFunction")
    assert env["SCHEDULE_GROUP"] == {"Ref": "AgentRunScheduleGroup"}
    assert env["SCHEDULE_TARGET_ARN"] == {"Fn::GetAtt": ["ScheduledFunction", "Arn"]}
    assert env["SCHEDULE_ROLE_ARN"] == {"Fn::GetAtt": ["AgentRunSchedulerRole", "Arn"]}


@pytest.mark.parametrize(
    ("old", "new", "test"),
    [
        (
            "      GatewayResponses:\n",
            "      Auth: {ApiKeyRequired: true}\n      GatewayResponses:\n",
            test_a_client_sends_one_key_and_public_posts_have_their_own_throttle,
        ),
        (
            "Path: /v1/chat/completions\n            Method: POST\n            ResponseTransferMode: RESPONSE_STREAM",
            "Path: /v1/chat/completions\n            Method: POST\n            Auth: {ApiKeyRequired: true}",
            test_a_client_sends_one_key_and_public_posts_have_their_own_throttle,
        ),
        ("Retry-After: \"'2'\"", "X-Retry: \"'2'\"", test_throttling_reaches_clients_as_429_with_retry_after),
        (
            "                  ForAllValues:StringEquals: {kms:EncryptionContextKeys: [jobId]}\n",
            "",
            test_the_task_holds_only_its_jobs_secrets,
        ),
        (
            'Resource: !Sub "${AuditBucket.Arn}/jobs/job_*"',
            'Resource: !Sub "${AuditBucket.Arn}/*"',
            test_the_task_holds_only_its_jobs_secrets,
        ),
        (
            "{Name: REDIS_PASSWORD_SECRET_ARN, Value: !Ref RunnerCacheUserSecret}",
            "{Name: REDIS_PASSWORD_SECRET_ARN, Value: !Ref CacheUserSecret}",
            test_the_task_holds_only_its_jobs_secrets,
        ),
        (
            "            - {Name: JOB_SECRETS_KMS_KEY_ID, Value: !GetAtt JobSecretsKey.Arn}\n            # Empty",
            '            - Name: BRIDGE_URL\n              Value: !Sub "https://${KiloApi}.execute-api.${AWS::Region}.'
            '${AWS::URLSuffix}/${StageName}"\n'
            "            - {Name: JOB_SECRETS_KMS_KEY_ID, Value: !GetAtt JobSecretsKey.Arn}\n            # Empty",
            test_the_tasks_agent_calls_no_api_gateway_route,
        ),
        (
            "            InitProcessEnabled: true\n",
            "            InitProcessEnabled: false\n",
            test_the_tasks_agent_calls_no_api_gateway_route,
        ),
        (
            "          AGENT_DEAD_LETTER_QUEUE_ARN: !GetAtt AgentDeadLetterQueue.Arn\n",
            "",
            test_the_dispatcher_fails_the_jobs_of_dead_lettered_messages,
        ),
    ],
)
def test_the_one_key_and_least_privilege_checks_fail_when_the_template_breaks_them(
    old: str, new: str, test: Any
) -> None:
    test_checks_fail_when_the_template_breaks_a_promise(old, new, test)
