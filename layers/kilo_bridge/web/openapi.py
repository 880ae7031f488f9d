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


def build_openapi(endpoints: list[Endpoint], *, title: str = "Kilo Bridge") -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorResponse, OpenAIError}
    for e in endpoints:
        models.update(m for m in (e.body, e.response) if m is not None)
        models.update((e.events or {}).values())
    ordered = sorted(models, key=lambda m: m.__name__)
    _, schemas = models_json_schema([(m, "validation") for m in ordered], ref_template=_REF, by_alias=True)
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
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(e.path)
        ]
        params += [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": text}
            for name, text in e.query.items()
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
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1].split(":", 1)[0] for part in path.split("/") if part.startswith("{")]


def _openapi_path(path: str) -> str:
    """Starlette's `{id:str}` → OpenAPI's `{id}`."""
    return "/".join(
        "{" + part[1:-1].split(":", 1)[0] + "}" if part.startswith("{") else part for part in path.split("/")
    )
