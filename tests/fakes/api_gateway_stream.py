"""A stand-in for the AWS path of the streaming routes: API Gateway (REST, one stage) → the Lambda Web Adapter →
the stream function's app on uvicorn. It serves only the routes template.yaml gives the StreamFunction, under the
stage, and forwards each request as the adapter does: the path without the stage, the client's headers (Host
included) plus `x-amzn-request-context` (the API Gateway request context, JSON; the adapter sets it, a client's
own is dropped), and the answer streamed back as it is written (`RESPONSE_STREAM`).

Sources: API Gateway answers a request for a route it does not define with 403 `{"message": "Missing
Authentication Token"}` (API Gateway developer guide, "Troubleshooting", and the REST `MISSING_AUTHENTICATION_TOKEN`
gateway response); a REST event's `path` is the resource path without the stage (developer guide, "Lambda proxy
integration input format"); awslabs/aws-lambda-web-adapter forwards that path and the request context header.
A route whose template says `ApiKeyRequired` (on the API's `Auth` or the event's own) is answered as API Gateway
answers a request without a usage-plan key: 403 `{"message": "Forbidden"}` (the `API_KEY` gateway response);
this stand-in holds no usage-plan keys.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.threaded import AiohttpApp, ServerThread

_HOP = {"host", "content-length", "transfer-encoding", "connection", "x-amzn-request-context"}


def stream_function_routes(template: Path) -> list[tuple[str, str, bool]]:
    """(METHOD, path, needs a usage-plan key) of every Api event of the StreamFunction in `template`
    (CloudFormation tags ignored)."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    tpl = yaml.load(template.read_text(), Loader=Loader)  # noqa: S506  (a SafeLoader subclass)
    events = tpl["Resources"]["StreamFunction"]["Properties"]["Events"]
    api_wide = bool((tpl["Resources"]["KiloApi"]["Properties"].get("Auth") or {}).get("ApiKeyRequired"))
    return [
        (
            str(e["Properties"]["Method"]).upper(),
            str(e["Properties"]["Path"]),
            bool((e["Properties"].get("Auth") or {}).get("ApiKeyRequired", api_wide)),
        )
        for e in events.values()
        if e["Type"] == "Api"
    ]


class ApiGatewayStreamPath(AiohttpApp, ServerThread):
    def __init__(self, app_url: str, routes: list[tuple[str, str, bool]], stage: str = "prod") -> None:
        self.app_url, self.stage = app_url, stage
        self.routes = [(m, p, k, re.compile("^" + re.sub(r"\{[^/}]+\+?\}", "[^/]+", p) + "$")) for m, p, k in routes]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def _route(self, method: str, path: str) -> tuple[str, bool] | None:
        return next(((p, k) for m, p, k, rx in self.routes if m == method and rx.match(path)), None)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        prefix = f"/{self.stage}"
        inner = request.path[len(prefix) :] if request.path.startswith(prefix + "/") else None
        route = self._route(request.method, inner) if inner is not None else None
        if inner is None or route is None:
            return web.json_response({"message": "Missing Authentication Token"}, status=403)
        resource, key_required = route
        if key_required:
            return web.json_response({"message": "Forbidden"}, status=403)
        context: dict[str, Any] = {
            "requestId": str(uuid.uuid4()),
            "stage": self.stage,
            "resourcePath": resource,
            "httpMethod": request.method,
            "path": request.path,
            "identity": {"sourceIp": request.remote or "127.0.0.1"},
        }
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
        headers += [("host", request.host), ("x-amzn-request-context", json.dumps(context))]
        body = await request.read()
        async with (
            httpx.AsyncClient(base_url=self.app_url, timeout=httpx.Timeout(None)) as client,
            client.stream(
                request.method, inner, params=request.query_string or None, headers=headers, content=body
            ) as upstream,
        ):
            answer = web.StreamResponse(
                status=upstream.status_code,
                headers=CIMultiDict((k, v) for k, v in upstream.headers.multi_items() if k.lower() not in _HOP),
            )
            await answer.prepare(request)
            async for piece in upstream.aiter_raw():
                await answer.write(piece)
            await answer.write_eof()
            return answer
