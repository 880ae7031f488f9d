"""The CloudFormation SAM makes of template.yaml (scripts/sam_translate.py, aws-sam-translator from the SAM
virtualenv), asserted where API Gateway and Lambda read it: the streaming integrations, and every function's
timeout against the deadlines it enforces."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The /v1 inference calls too: plain and streamed ("stream": true) answers both go through the streaming function.
V1_INFERENCE = {("/v1/chat/completions", "post"), ("/v1/responses", "post"), ("/v1/messages", "post"),
                ("/v1/embeddings", "post")}  # fmt: skip
STREAM_ROUTES = {("/api/kilo/generate-stream", "post"), ("/api/kilo/job/{id}/logs", "get"), *V1_INFERENCE}
# API Gateway: a streamed integration may run 15 minutes; a buffered one 29 s (the REST default quota).
STREAM_INTEGRATION_MS = 900_000
BUFFERED_INTEGRATION_MS = 29_000


def sam_python() -> str:
    """The SAM virtualenv's interpreter (`make sam-install`; `make test` installs it first)."""
    python = os.getenv("SAM_PYTHON") or str(ROOT / ".venv-sam" / "bin" / "python")
    if not Path(python).is_file():
        pytest.fail(f"{python} missing: run `make sam-install` (or set SAM_PYTHON to that venv's python)")
    return python


def translate(*overrides: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "translate-only",
        "AWS_SECRET_ACCESS_KEY": "translate-only",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [sam_python(), str(ROOT / "scripts" / "sam_translate.py"), *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    translated: dict[str, Any] = json.loads(done.stdout)
    return translated


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translate()


def integrations(cfn: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    (api,) = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    return {
        (path, method): op["x-amazon-apigateway-integration"]
        for path, ops in api["Properties"]["Body"]["paths"].items()
        for method, op in ops.items()
    }


def function(cfn: dict[str, Any], name: str) -> dict[str, Any]:
    resource = cfn["Resources"][name]
    assert resource["Type"] == "AWS::Lambda::Function"
    props: dict[str, Any] = resource["Properties"]
    return props


def env_of(cfn: dict[str, Any], name: str) -> dict[str, Any]:
    variables: dict[str, Any] = function(cfn, name)["Environment"]["Variables"]
    return variables


def test_streaming_integrations_stream_for_fifteen_minutes(cfn: dict[str, Any]) -> None:
    found = integrations(cfn)
    for route in STREAM_ROUTES:
        integration = found[route]
        assert integration["type"] == "aws_proxy", route
        assert integration["responseTransferMode"] == "STREAM", route
        assert integration["uri"]["Fn::Sub"].endswith("/response-streaming-invocations"), route
        assert "${StreamFunction.Arn}" in integration["uri"]["Fn::Sub"], route
        assert integration["timeoutInMillis"] == STREAM_INTEGRATION_MS, route
    for route, integration in found.items():
        if route not in STREAM_ROUTES:  # the short routes stay buffered, through Mangum
            assert "responseTransferMode" not in integration, route
            assert integration.get("timeoutInMillis", BUFFERED_INTEGRATION_MS) <= BUFFERED_INTEGRATION_MS, route


def test_the_service_ends_its_streams_before_api_gateway_and_lambda_do(cfn: dict[str, Any]) -> None:
    stream_max_s = int(env_of(cfn, "StreamFunction")["KILO_STREAM_MAX_S"])
    assert stream_max_s * 1000 < STREAM_INTEGRATION_MS  # our own `error`/end event, never a cut
    assert stream_max_s < function(cfn, "StreamFunction")["Timeout"]


def test_the_short_route_function_outlives_its_upstream_deadline(cfn: dict[str, Any]) -> None:
    api = function(cfn, "ApiFunction")
    kilo_timeout_ms = int(env_of(cfn, "ApiFunction").get("KILO_TIMEOUT_MS", 30_000))  # the setting's default
    # The upstream deadline passes first: the client gets our 504 (and the spend is settled), not API
    # Gateway's, and the function is not killed mid-accounting.
    assert kilo_timeout_ms < api["Timeout"] * 1000 <= BUFFERED_INTEGRATION_MS


def test_dispatch_lease_fits_the_function_and_the_queue(cfn: dict[str, Any]) -> None:
    dispatcher, env = function(cfn, "DispatcherFunction"), env_of(cfn, "DispatcherFunction")
    queue = cfn["Resources"]["AgentQueue"]["Properties"]
    lease_s = float(env["DISPATCH_LEASE_S"])
    assert lease_s >= dispatcher["Timeout"]  # a dispatcher still at work is never overtaken
    assert lease_s < queue["VisibilityTimeout"]  # a message redelivered after a killed invocation can take over
    assert int(env["AGENT_QUEUE_MAX_RECEIVES"]) == queue["RedrivePolicy"]["maxReceiveCount"]
    assert queue["VisibilityTimeout"] >= 6 * dispatcher["Timeout"]  # Lambda's SQS event source advice


def setting(variables: dict[str, Any], name: str) -> float:
    """A setting as the function will read it: its environment variable, else the library's default."""
    from kilo_bridge.config import Settings

    default = {f.name: f.default for f in Settings.fields()}[name.lower()]
    return float(variables.get(name, default))


def test_every_function_outlives_the_deadlines_it_enforces(cfn: dict[str, Any]) -> None:
    names = set()
    for name, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        names.add(name)
        timeout_ms = resource["Properties"]["Timeout"] * 1000
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        # One upstream call (the API, the stream's first byte, the scheduled credit refresh) and one Redis
        # command each end on their own deadline, inside the invocation: our error, not Lambda's kill.
        assert setting(variables, "KILO_TIMEOUT_MS") < timeout_ms, name
        assert setting(variables, "REDIS_TIMEOUT_MS") * 2 < timeout_ms, name
    assert names == {"ApiFunction", "StreamFunction", "DispatcherFunction", "FinalizerFunction", "ScheduledFunction"}


def test_both_streaming_routes_end_their_own_streams_before_the_cut(cfn: dict[str, Any]) -> None:
    # generate-stream (the relay) and a job's live log (which resumes with Last-Event-ID) both stop at
    # KILO_STREAM_MAX_S: both are the StreamFunction's, whose setting is under its timeout and the integration's.
    for route in STREAM_ROUTES:
        assert "${StreamFunction.Arn}" in integrations(cfn)[route]["uri"]["Fn::Sub"], route
    variables = env_of(cfn, "StreamFunction")
    stream_max_ms = setting(variables, "KILO_STREAM_MAX_S") * 1000
    assert stream_max_ms < min(STREAM_INTEGRATION_MS, function(cfn, "StreamFunction")["Timeout"] * 1000)
    # Keep-alives come far more often than any idle limit on the way (API Gateway, NAT: minutes).
    assert setting(variables, "SSE_KEEPALIVE_S") <= 60


def test_scheduled_work_fits_its_function_and_its_period(cfn: dict[str, Any]) -> None:
    scheduled = function(cfn, "ScheduledFunction")
    variables = env_of(cfn, "ScheduledFunction")
    # The credit refresh is one gateway read (KILO_TIMEOUT_MS, at most 10 s); the reaper a Lua script per stale
    # job; a scheduled run one submit. A retried schedule would overlap the next run: no retries on the rates.
    assert setting(variables, "KILO_TIMEOUT_MS") < scheduled["Timeout"] * 1000
    schedules = [r["Properties"] for r in cfn["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule"]
    rates = [s for s in schedules if str(s["ScheduleExpression"]).startswith("rate(")]
    assert len(rates) == 2
    for schedule in rates:
        assert schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0


def test_the_task_is_bounded_by_its_job_deadline_alone(cfn: dict[str, Any]) -> None:
    # ECS has no task timeout: the runner's job deadline (timeoutMs <= JOB_TIMEOUT_MAX_MS, then a SIGKILL of the
    # agent's group after JOB_KILL_GRACE_S) is the only bound, so the API and the task must agree on it.
    (container,) = cfn["Resources"]["AgentTaskDefinition"]["Properties"]["ContainerDefinitions"]
    task_env = {e["Name"]: e["Value"] for e in container["Environment"]}
    api_env = env_of(cfn, "ApiFunction")
    for name in ("JOB_TIMEOUT_MAX_MS", "JOB_TIMEOUT_DEFAULT_MS", "JOB_KILL_GRACE_S"):
        assert setting(task_env, name) == setting(api_env, name), name
    # ECS stops a container with SIGTERM, then SIGKILL after StopTimeout: room for the agent's own grace.
    assert container["StopTimeout"] > setting(task_env, "JOB_KILL_GRACE_S")
    # A queued job's message lives as long as the reaper lets the job wait (JOB_QUEUE_MAX_WAIT_S): a message
    # never vanishes while its job still shows `queued` for longer than the reaper allows.
    queue = cfn["Resources"]["AgentQueue"]["Properties"]
    max_wait_s = setting(env_of(cfn, "ScheduledFunction"), "JOB_QUEUE_MAX_WAIT_S")
    assert max_wait_s <= queue["MessageRetentionPeriod"]


def condition(cfn: dict[str, Any], name: str, params: dict[str, str]) -> bool:
    """Evaluate one of the template's conditions (Equals/Not/And/Or over parameters) for `params`."""

    def value(node: Any) -> Any:
        if isinstance(node, dict) and "Ref" in node:
            return params.get(node["Ref"], cfn["Parameters"][node["Ref"]].get("Default"))
        return node

    def truth(node: dict[str, Any]) -> bool:
        ((op, args),) = node.items()
        if op == "Fn::Equals":
            return bool(value(args[0]) == value(args[1]))
        if op == "Fn::Not":
            return not truth(args[0])
        if op == "Condition":
            return truth(cfn["Conditions"][args])
        return all(map(truth, args)) if op == "Fn::And" else any(map(truth, args))

    return truth(cfn["Conditions"][name])


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["Ref"]} if isinstance(node.get("Ref"), str) else set()
        return found.union(*(refs(v) for v in node.values()))
    return set().union(*(refs(v) for v in node)) if isinstance(node, list) else set()


@pytest.mark.parametrize(
    ("choice", "logs", "sets_role"),
    [
        (None, False, False),  # the defaults: a fresh account without the API Gateway CloudWatch role deploys
        ("ON", True, False),  # the account has the role (the one-time step in docs/deploy.md)
        ("ON_SET_ACCOUNT_ROLE", True, True),
    ],
)
def test_access_logs_only_where_the_account_role_is(
    cfn: dict[str, Any], choice: str | None, logs: bool, sets_role: bool
) -> None:
    params = {} if choice is None else {"ApiAccessLogging": choice}
    (stage,) = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage"]
    access = stage["Properties"]["AccessLogSetting"]["Fn::If"]
    assert condition(cfn, access[0], params) is logs and access[2] == {"Ref": "AWS::NoValue"}
    assert condition(cfn, cfn["Resources"]["ApiGatewayAccount"]["Condition"], params) is sets_role
    # The stage is made after the account setting when this stack makes it: stage → deployment → API → handle
    # → ApiGatewayAccount (a conditional resource cannot be a DependsOn of its own).
    (deployment,) = [k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::ApiGateway::Deployment"]
    assert deployment in refs(stage["Properties"])
    assert "KiloApi" in refs(cfn["Resources"][deployment]["Properties"])
    assert cfn["Resources"]["KiloApi"]["DependsOn"] == "ApiGatewayAccountReady"
    assert "ApiGatewayAccount" in refs(cfn["Resources"]["ApiGatewayAccountReady"]["Metadata"])


def test_adapter_layer_version_is_a_parameter_with_a_cited_default(cfn: dict[str, Any]) -> None:
    assert cfn["Parameters"]["LambdaAdapterLayerVersion"]["Default"] == 26  # the adapter's README at v1.0.0
    layers = json.dumps(function(cfn, "StreamFunction")["Layers"])
    assert "layer:LambdaAdapterLayerX86:${LambdaAdapterLayerVersion}" in layers and "X86:28" not in layers


def test_every_reader_of_the_kilo_secret_may_decrypt_a_customer_key(cfn: dict[str, Any]) -> None:
    for name, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        statements = [s for p in resource["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
        if "KiloApiKeySecretArn" not in refs(statements):
            continue
        grants = [s["Fn::If"] for s in statements if isinstance(s, dict) and "Fn::If" in s]
        decrypt = [g for g in grants if g[0] == "KiloSecretHasCustomerKey" and g[1]["Action"] == "kms:Decrypt"]
        assert decrypt, f"{name} reads the Kilo secret but may not decrypt a customer key"
        assert decrypt[0][1]["Resource"] == {"Ref": "KiloApiKeySecretKmsKeyArn"}
        assert "kms:ViaService" in decrypt[0][1]["Condition"]["StringEquals"]  # through Secrets Manager only


def rest_api(cfn: dict[str, Any]) -> dict[str, Any]:
    (api,) = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    body: dict[str, Any] = api["Properties"]["Body"]
    return body


def test_v1_inference_streams_for_fifteen_minutes_through_the_stream_function(cfn: dict[str, Any]) -> None:
    found = integrations(cfn)
    for route in V1_INFERENCE:
        integration = found[route]
        assert integration["responseTransferMode"] == "STREAM", route
        assert integration["uri"]["Fn::Sub"].endswith("/response-streaming-invocations"), route
        assert "${StreamFunction.Arn}" in integration["uri"]["Fn::Sub"], route
        assert integration["timeoutInMillis"] == STREAM_INTEGRATION_MS, route
    # A plain answer through the stream function may take as long as a stream, under both timeouts.
    upstream_ms = setting(env_of(cfn, "StreamFunction"), "KILO_TIMEOUT_MS")
    assert 60_000 < upstream_ms < min(STREAM_INTEGRATION_MS, function(cfn, "StreamFunction")["Timeout"] * 1000)
    assert ("/v1/models", "get") in found and "responseTransferMode" not in found[("/v1/models", "get")]


def test_no_route_asks_for_a_second_client_credential(cfn: dict[str, Any]) -> None:
    """What API Gateway enforces: no method requires an API Gateway key (or any authorizer); the service's own key
    is checked by the app, so a client's `base_url` + one key is all it sends."""
    body = rest_api(cfn)
    for path, ops in body["paths"].items():
        for method, op in ops.items():
            assert not op.get("security"), (path, method)
    assert not body.get("components", {}).get("securitySchemes")
    assert "x-amazon-apigateway-api-key-source" not in body
    kinds = {r["Type"] for r in cfn["Resources"].values()}
    assert not kinds & {"AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::UsagePlanKey",
                        "AWS::ApiGateway::Authorizer"}  # fmt: skip
    (stage,) = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage"]
    (method_settings, *_) = stage["Properties"]["MethodSettings"]
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(method_settings)  # what bounds the account


def test_throttled_requests_are_429_with_retry_after(cfn: dict[str, Any]) -> None:
    responses = rest_api(cfn)["x-amazon-apigateway-gateway-responses"]
    for kind in ("THROTTLED", "INTEGRATION_FAILURE"):  # a throttled Lambda is an integration failure
        assert str(responses[kind]["statusCode"]) == "429", kind
        assert responses[kind]["responseParameters"]["gatewayresponse.header.Retry-After"].strip("'").isdigit()


def references(cfn: dict[str, Any], node: Any) -> set[str]:
    """Logical ids `node` refers to (Ref, GetAtt, ${...} in Sub)."""
    import re

    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("Ref"), str):
            found.add(node["Ref"])
        if "Fn::GetAtt" in node:
            target = node["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else str(target).split(".")[0])
        if "Fn::Sub" in node:
            text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
            found.update(m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text))
        for value in node.values():
            found |= references(cfn, value)
    elif isinstance(node, list):
        for value in node:
            found |= references(cfn, value)
    return {name for name in found if name in cfn["Resources"]}


def test_the_tasks_agent_model_calls_depend_on_no_api_gateway_route(cfn: dict[str, Any]) -> None:
    """The task definition, and everything it names in turn (roles, secrets, cache, ...), holds nothing of the REST
    API: the agent's model endpoint is the runner's own, in the task, reached on loopback."""
    # PUBLIC_BASE_URL names the API for links only (a job's page, in a GitHub comment); the model calls' base is
    # agent_api_base, which never reads it (asserted below).
    (definition,) = [cfn["Resources"]["AgentTaskDefinition"]]
    task = json.loads(json.dumps(definition["Properties"]))
    (task_container,) = task["ContainerDefinitions"]
    task_container["Environment"] = [e for e in task_container["Environment"] if e["Name"] != "PUBLIC_BASE_URL"]
    seen: set[str] = {"AgentTaskDefinition"}
    todo = sorted(references(cfn, task))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        resource = cfn["Resources"][name]
        todo.extend(references(cfn, resource.get("Properties", {})))
        depends = resource.get("DependsOn", [])
        todo.extend([depends] if isinstance(depends, str) else depends)
    api_side = sorted(n for n in seen if cfn["Resources"][n]["Type"].startswith("AWS::ApiGateway::"))
    assert not api_side, f"the agent task depends on {api_side}"
    (container,) = cfn["Resources"]["AgentTaskDefinition"]["Properties"]["ContainerDefinitions"]
    task_env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert "BRIDGE_URL" not in task_env
    from kilo_bridge.config import Settings

    # With no BRIDGE_URL the runner gives its agent a loopback base: its own endpoint in the task, whatever the
    # public address is.
    assert Settings().agent_api_base.startswith("http://127.0.0.1:")
    public = Settings(public_base_url="https://api.example.com/prod")
    assert public.agent_api_base.startswith("http://127.0.0.1:")
    # The runner reads the Kilo key (and its own cache user's password) with the task role.
    role = cfn["Resources"]["AgentTaskRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    reads = [s for s in statements if isinstance(s, dict) and s.get("Action") == "secretsmanager:GetSecretValue"]
    readable = json.dumps(reads)
    assert json.dumps(task_env["KILO_API_KEY_SECRET_ARN"]) in readable
    assert json.dumps(task_env["REDIS_PASSWORD_SECRET_ARN"]) in readable
    assert container["LinuxParameters"]["InitProcessEnabled"] is True


def test_the_task_role_opens_only_job_secrets_and_writes_only_job_artifacts(cfn: dict[str, Any]) -> None:
    role = cfn["Resources"]["AgentTaskRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] if isinstance(s, dict)]
    by_sid = {s.get("Sid"): s for s in statements}
    decrypt = [
        s for s in statements if "kms:Decrypt" in json.dumps(s.get("Action")) and "JobSecretsKey" in json.dumps(s)
    ]
    assert decrypt == [by_sid["DecryptJobSecrets"]]
    condition = decrypt[0]["Condition"]
    assert condition["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"] == ["jobId"]
    assert condition["Null"]["kms:EncryptionContext:jobId"] == "false"
    puts = [s for s in statements if "s3:" in json.dumps(s.get("Action"))]
    assert puts == [by_sid["WriteArtifacts"]] and by_sid["WriteArtifacts"]["Action"] == "s3:PutObject"
    assert by_sid["WriteArtifacts"]["Resource"] == {"Fn::Sub": "${AuditBucket.Arn}/jobs/job_*"}
