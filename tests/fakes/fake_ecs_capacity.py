"""An ECS endpoint in front of moto that answers the first `short` RunTask calls as Fargate does when it has no
capacity (HTTP 200, no task, a `failures` entry), or the first `server_errors` ones as ECS's own fault does
(HTTP 500, `ServerException`: the call may or may not have acted), and passes everything else to moto
unchanged; it records each RunTask's `clientToken`. moto itself never runs out of capacity.

Shapes: the ECS API reference, RunTask ("Errors": ServerException, "These errors are usually caused by a server
issue", HTTP 500) and the AWS JSON 1.1 protocol's error body `{"__type", "message"}`."""

from __future__ import annotations

import json
from typing import Any

import httpx
from aiohttp import web

from tests.fakes.threaded import AiohttpApp, ServerThread

CAPACITY = "Capacity is unavailable at this time. Please try again later or in a different availability zone"


class FakeEcsCapacity(AiohttpApp, ServerThread):
    def __init__(self, moto_url: str, short: int, server_errors: int = 0) -> None:
        self.moto_url = moto_url
        self.short = short
        self.server_errors = server_errors
        self.run_task_calls = 0
        self.tokens: list[str | None] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("X-Amz-Target", "").endswith(".RunTask"):
            self.run_task_calls += 1
            self.tokens.append(json.loads(body).get("clientToken"))
            if self.run_task_calls <= self.server_errors:
                fault = {"__type": "ServerException", "message": "Service unavailable. Try again later."}
                return web.json_response(fault, status=500, content_type="application/x-amz-json-1.1")
            if self.run_task_calls <= self.short:
                failure: dict[str, Any] = {"arn": "arn:aws:ecs:us-east-1:123456789012:cluster/any", "reason": CAPACITY}
                return web.json_response(
                    {"tasks": [], "failures": [failure]}, content_type="application/x-amz-json-1.1"
                )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with httpx.AsyncClient() as client:
            upstream = await client.request(
                request.method, self.moto_url + request.path_qs, content=body, headers=headers
            )
        return web.Response(
            body=upstream.content,
            status=upstream.status_code,
            content_type=upstream.headers.get("content-type", "application/x-amz-json-1.1").split(";")[0],
        )
