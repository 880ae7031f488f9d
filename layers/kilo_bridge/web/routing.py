"""A route table that knows each endpoint's models, so the same declarations serve requests and the
OpenAPI document (openapi.py): the schema is generated, never kept by hand."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import orjson
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kilo_bridge.web.auth import caller_digest, require_admin, require_key
from kilo_bridge.web.errors import ApiError

if TYPE_CHECKING:
    from kilo_bridge.services import Services

Handler = Callable[..., Awaitable[Any]]
JSON = "application/json"


# "key": an API key when the server requires one (checked here); "admission": checked by the handler's own
# admission call; "admin": the admin key; "public": nobody is turned away.
Auth = Literal["key", "admission", "admin", "public"]


@dataclass(slots=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tags: tuple[str, ...]
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    # For text/event-stream endpoints: event name → model of its data.
    events: dict[str, type[BaseModel]] | None = None
    errors: tuple[int, ...] = ()
    description: str = ""
    # Optional query parameters and request headers the handler reads, and the path parameters' formats:
    # name → (description, JSON schema): the rules the handler enforces, stated in the OpenAPI document.
    query: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    headers: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    public: bool = True
    # The body is relayed: the handler gets the validated model and the parsed JSON object as sent.
    raw_body: bool = False
    auth: Auth = "key"
    # An administrative change: each success appends this action to the audit log (web/audit.py).
    audit: str | None = None

    def __post_init__(self) -> None:
        # `Api.route` passes its keywords through untyped: a misspelt auth would otherwise serve the route open.
        if self.auth not in get_args(Auth):
            raise ValueError(f"{self.method} {self.path}: auth must be one of {get_args(Auth)}, not {self.auth!r}")


def json_response(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None, background: Any = None
) -> Response:
    """A model as camelCase JSON; `background` runs after the body is sent (e.g. a usage record)."""
    body = model.model_dump_json(by_alias=True)
    return Response(body, status, headers, JSON, BackgroundTask(background) if background else None)


def request_id(request: Request) -> str:
    return str(request.scope["state"]["request_id"])


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def api_base(request: Request) -> str:
    """The public base URL of this API, as the client reached it: every link the API returns starts here.

    PUBLIC_BASE_URL when set (a custom domain); else the request's own scheme and host plus the path prefix
    API Gateway removed before the app saw the path (the stage, `/prod`): Mangum and the Lambda Web Adapter
    both hand the app a root path of "".
    """
    configured = services(request).settings.public_base_url
    if configured:
        return configured
    base = str(request.base_url).rstrip("/")
    found = _gateway_request(request)
    return base + _gateway_prefix(*found) if found else base


# A path prefix of plain segments only: what we put into links must not be able to carry anything else.
_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")


def _gateway_request(request: Request) -> tuple[dict[str, Any], str] | None:
    """API Gateway's requestContext and the event's path (as API Gateway passed it to the function). Mangum
    keeps the event in the scope; the Lambda Web Adapter sends the context as the `x-amzn-request-context`
    header, trusted only behind the adapter (which overwrites one a client sends), and the path as is."""
    event = request.scope.get("aws.event")
    if isinstance(event, dict):
        context, path = event.get("requestContext"), event.get("path")
    elif services(request).settings.behind_lambda_adapter:
        raw = request.headers.get("x-amzn-request-context")
        try:
            context = json.loads(raw) if raw else None
        except ValueError:
            return None
        path = (request.scope.get("raw_path") or b"").decode("latin-1").split("?", 1)[0]
    else:
        return None
    return (context, path if isinstance(path, str) else "") if isinstance(context, dict) else None


def _gateway_prefix(context: dict[str, Any], path: str) -> str:
    """The path the client used (`requestContext.path`, `/prod/api/kilo/…`) minus the path the app got; when
    they do not line up, the stage itself. A custom domain's mapping gives "" here: PUBLIC_BASE_URL then."""
    full = context.get("path")
    if isinstance(full, str) and path and full.endswith(path):
        prefix = full[: len(full) - len(path)]
    else:
        stage = context.get("stage")
        prefix = f"/{stage}" if isinstance(stage, str) and stage and stage != "$default" else ""
    return prefix if _PREFIX.fullmatch(prefix) else ""


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Field, message and type of each problem; never the input (it may hold a secret)."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_input=False, include_url=False, include_context=False)
    ]


async def _read_json_body(request: Request) -> bytes:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != JSON and not ctype.endswith("+json"):
        # Missing too: a cross-site `no-cors` fetch can send a body without a Content-Type, never with JSON's.
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON (Content-Type: application/json).")
    raw = await request.body()
    if not raw.strip():
        raise ApiError(422, "invalid_request", "A JSON body is required.", details=[])
    return raw


async def parse_body(request: Request, model: type[BaseModel]) -> BaseModel:
    raw = await _read_json_body(request)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
        details = validation_details(exc)
        raise ApiError(422, "invalid_request", "The request body is invalid.", details=details) from None


async def parse_raw_body(request: Request, model: type[BaseModel]) -> tuple[BaseModel, dict[str, Any]]:
    """The body as a JSON object (to relay, nulls and all) and validated by `model` (to admit)."""
    raw = await _read_json_body(request)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "The body must be a JSON object.", details=[])
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc)
        raise ApiError(422, "invalid_request", "The request body is invalid.", details=details) from None
    for name, spec in type(body).model_fields.items():
        wire = spec.alias or name
        if isinstance(data.get(wire), float) and type(value := getattr(body, name)) is int:
            data[wire] = value  # a whole number sent as 5.0 is relayed as the integer the model took
    return body, data


class Api:
    """A router: collects endpoints (one per route module); `include` composes them in order, and `routes()`
    turns them into Starlette routes."""

    def __init__(self, path_params: dict[str, dict[str, Any]] | None = None) -> None:
        self.endpoints: list[Endpoint] = []
        # The formats of this router's path parameters (an id's pattern), for every route that has them.
        self.path_params = path_params or {}

    @classmethod
    def include(cls, *routers: Api) -> Api:
        api = cls()
        for router in routers:
            api.endpoints.extend(router.endpoints)
        return api

    def route(
        self, method: str, path: str, *, summary: str, tags: tuple[str, ...] = (), **spec: Any
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            spec["path_params"] = {**self.path_params, **spec.get("path_params", {})}
            self.endpoints.append(Endpoint(method, path, handler, summary, tags, **spec))
            return handler

        return register

    def routes(self) -> list[Route]:
        """One Starlette route per path, for all of its methods: a 405 then lists every method the path allows in
        `Allow` (with a route per method, Starlette named only the first route's)."""
        by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
        for e in self.endpoints:
            by_path.setdefault(e.path, {})[e.method] = _endpoint_app(e)
        return [Route(path, _by_method(apps), methods=list(apps)) for path, apps in by_path.items()]


def _by_method(
    apps: dict[str, Callable[[Request], Awaitable[Response]]],
) -> Callable[[Request], Awaitable[Response]]:
    if len(apps) == 1:
        return next(iter(apps.values()))

    async def run(request: Request) -> Response:
        method = request.method
        return await apps["GET" if method == "HEAD" and "GET" in apps else method](request)

    run.__name__ = "_".join(app.__name__ for app in apps.values())
    return run


def _endpoint_app(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    handler, body_model, status, auth = endpoint.handler, endpoint.body, endpoint.status, endpoint.auth
    raw_body, audit = endpoint.raw_body, endpoint.audit

    async def run(request: Request) -> Response:
        if auth == "key":
            await require_key(request)
        elif auth == "admin":
            try:
                require_admin(request)
            except ApiError as exc:
                if audit is not None and exc.status == 401:  # an attempt with a wrong admin key is recorded too
                    from kilo_bridge.web.audit import record_change

                    await record_change(request, audit, admin=False, outcome="refused")
                raise
        elif auth == "admission":
            caller_digest(request)  # a missing key is a 401 before the body is even read
        body: BaseModel | None = None
        if body_model is not None and raw_body:
            body, data = await parse_raw_body(request, body_model)
            result = await handler(request, body, data)
        elif body_model is not None:
            body = await parse_body(request, body_model)
            result = await handler(request, body)
        else:
            result = await handler(request)
        if audit is not None:
            from kilo_bridge.web.audit import record_change

            await record_change(request, audit, admin=auth == "admin", body=body, result=result)
        return json_response(result, status) if isinstance(result, BaseModel) else result

    run.__name__ = handler.__name__
    return run
