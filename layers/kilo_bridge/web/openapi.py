"""OpenAPI 3.1 document generated from the route table and its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from kilo_bridge import __version__
from kilo_bridge.web.errors import is_passthrough
from kilo_bridge.web.models import ErrorResponse, OpenAIError
from kilo_bridge.web.routing import JSON, Endpoint

_REF = "#/components/schemas/{model}"
_STATUS_TEXT = {
    400: "Malformed JSON",
    401: "Missing or invalid API key",
    402: "Credits exhausted or budget reached",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Body or prompt too large",
    415: "Body is not JSON",
    422: "Invalid request body",
    429: "Rate limited (see Retry-After)",
    502: "Kilo Gateway error",
    503: "Not configured, or Redis unreachable",
    504: "Kilo Gateway timed out",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def build_openapi(
    endpoints: list[Endpoint],
    *,
    title: str = "Kilo Bridge",
    server_rules: dict[str, dict[str, Any]] | None = None,
    body_rules: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """`server_rules`: wire field name (or `Model.field`) → the JSON Schema keywords this server's settings add
    to that field of every request body, or of that model (the agents it has, the repository hosts it allows, the
    longest prompt); `body_rules`: request model name → rules across its fields (`allOf`), e.g. what each agent
    takes."""
    schemas = _schemas(endpoints, server_rules or {}, body_rules or {})
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        if not e.public:
            continue
        op: dict[str, Any] = {
            "operationId": e.handler.__name__,
            "summary": e.summary,
            "tags": list(e.tags),
            "responses": {},
        }
        if e.description:
            op["description"] = e.description
        params = [
            {"name": name, "in": "path", "required": True, "schema": e.path_params.get(name, {"type": "string"})}
            for name in _path_params(e.path)
        ]
        params += [
            {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
            for name, (text, schema) in e.query.items()
        ]
        params += [
            {"name": name, "in": "header", "required": False, "schema": schema, "description": text}
            for name, (text, schema) in e.headers.items()
        ]
        if params:
            op["parameters"] = params
        if e.body is not None:
            op["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(e.body)}}}
        if e.events:
            names = ", ".join(f"`{n}`" for n in e.events)
            op["responses"][str(e.status)] = {
                "description": f"Server-sent events: {names}; `: keep-alive` comments while the upstream is silent.",
                "content": {"text/event-stream": {"schema": {"oneOf": [_ref(m) for m in e.events.values()]}}},
            }
        elif e.response is not None:
            op["responses"][str(e.status)] = {"description": "OK", "content": {JSON: {"schema": _ref(e.response)}}}
        else:
            op["responses"][str(e.status)] = {"description": "OK"}
        if e.auth in ("key", "admission", "admin"):
            op["security"] = [{"bearer": []}, {"apiKey": []}]
        needs_key = {401} if e.auth in ("key", "admission", "admin") else set()
        error_model = OpenAIError if is_passthrough(e.path) else ErrorResponse
        for status in sorted(set(e.errors) | needs_key | ({400, 413, 415, 422} if e.body else set())):
            op["responses"][str(status)] = {
                "description": _STATUS_TEXT.get(status, "Error"),
                "content": {JSON: {"schema": _ref(error_model)}},
            }
        paths.setdefault(_openapi_path(e.path), {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": __version__,
            "description": "The Kilo Gateway and Kilo agents behind one small, safe HTTP API.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }


def _schemas(
    endpoints: list[Endpoint], server_rules: dict[str, dict[str, Any]], body_rules: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Every model's JSON Schema (what the routes validate with), with this server's rules added."""
    models: set[type[BaseModel]] = {ErrorResponse, OpenAIError}
    for e in endpoints:
        models.update(m for m in (e.body, e.response) if m is not None)
        models.update((e.events or {}).values())
    ordered = sorted(models, key=lambda m: m.__name__)
    _, generated = models_json_schema([(m, "validation") for m in ordered], ref_template=_REF, by_alias=True)
    schemas: dict[str, Any] = generated.get("$defs", {})
    if server_rules:
        _narrow_requests(schemas, {e.body.__name__ for e in endpoints if e.body}, server_rules)
    for name, rules in body_rules.items():
        schemas[name].setdefault("allOf", []).extend(rules)
    return schemas


def _narrow_requests(defs: dict[str, Any], bodies: set[str], rules: dict[str, dict[str, Any]]) -> None:
    """Add `rules` to the fields of the request bodies and the models they nest (not to answers)."""
    seen: set[str] = set()
    todo = [name for name in bodies if name in defs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        schema = defs[name]
        for field, prop in schema.get("properties", {}).items():
            for key in (field, f"{name}.{field}"):  # every body's field, or one model's
                if key in rules:
                    _narrow(prop, rules[key])
        todo += [ref.rsplit("/", 1)[1] for ref in _refs(schema) if ref.rsplit("/", 1)[1] in defs]


def _narrow(prop: dict[str, Any], extra: dict[str, Any]) -> None:
    """An optional field's `anyOf: [<schema>, {type: null}]`: the rule is the non-null branch's."""
    branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"] or [prop]
    for branch in branches:
        branch.update(extra)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":", 1)[0] for part in path.split("/") if part.startswith("{")]


def _openapi_path(path: str) -> str:
    """Starlette's `{id:str}` → OpenAPI's `{id}`."""
    return "/".join(
        "{" + part[1:-1].split(":", 1)[0] + "}" if part.startswith("{") else part for part in path.split("/")
    )
