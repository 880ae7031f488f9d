"""The OpenAPI document is generated from the route table: every route is in it, every $ref resolves."""

import json

from kilo_bridge.web.routes import api
from kilo_bridge.web.routes.meta import openapi_dict


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_route_is_documented_with_resolvable_refs() -> None:
    doc = openapi_dict()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    for e in api.endpoints:
        assert (e.path.replace(":str", "").replace(":path", ""), e.method) in documented  # model ids hold "/"
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref
    json.dumps(doc)  # serialisable


def test_generate_documents_camel_case_fields_and_errors() -> None:
    doc = openapi_dict()
    body = doc["components"]["schemas"]["GenerateRequest"]
    assert {"prompt", "system", "model", "maxTokens", "temperature"} <= set(body["properties"])
    assert body["required"] == ["prompt"]
    responses = doc["paths"]["/api/kilo/generate"]["post"]["responses"]
    assert {"200", "402", "413", "422", "429", "502", "503", "504"} <= set(responses)
    stream = doc["paths"]["/api/kilo/generate-stream"]["post"]["responses"]["200"]
    assert "text/event-stream" in stream["content"]


def test_run_agent_documents_its_idempotency_header() -> None:
    op = openapi_dict()["paths"]["/api/kilo/run-agent"]["post"]
    header = next(p for p in op["parameters"] if p["in"] == "header")
    assert header["name"] == "Idempotency-Key" and header["schema"]["maxLength"] == 200
    assert {"202", "400", "409"} <= set(op["responses"])


def test_the_served_document_states_this_server_s_agents_hosts_and_timeout() -> None:
    from kilo_bridge.config import load_settings
    from kilo_bridge.jobs.catalogue import load_catalog

    settings = load_settings(repo_host_allowlist="github.com,git.example.org", job_timeout_max_ms=120_000)
    schemas = openapi_dict(settings)["components"]["schemas"]
    run = schemas["RunAgentRequest"]
    assert run["properties"]["agent"]["enum"] == sorted(load_catalog(settings.agents_path))
    pattern = run["properties"]["repoUrl"]["pattern"]
    assert "github\\.com" in pattern and "git\\.example\\.org" in pattern
    assert schemas["ScheduledRun"]["properties"]["repoUrl"]["pattern"] == pattern
    timeout = next(b for b in run["properties"]["timeoutMs"]["anyOf"] if b["type"] == "integer")
    assert timeout["maximum"] == 120_000
    review = next(r for r in run["allOf"] if r["if"]["properties"]["agent"]["const"] == "review")
    assert review["then"]["properties"]["patch"] == {"type": "null"}  # only a patch agent takes a patch
    # Answers are left as they are: a job made before an agent was removed still shows its agent.
    assert "enum" not in schemas["JobView"]["properties"]["agent"]
