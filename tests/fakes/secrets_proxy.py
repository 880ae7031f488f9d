"""A Secrets Manager endpoint in front of moto that counts each GetSecretValue by secret, tracks how many are
in flight at once, and can hold them (as a slow NAT path would) until released; everything is passed to moto
unchanged. Secrets Manager is an AWS JSON 1.1 service: the operation is the `X-Amz-Target` header
(`secretsmanager.GetSecretValue`), the secret the body's `SecretId` (the Secrets Manager API reference)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter

import httpx
from aiohttp import web

from tests.fakes.threaded import AiohttpApp, ServerThread


class SecretsProxy(AiohttpApp, ServerThread):
    def __init__(self, moto_url: str, *, gather: int = 0) -> None:
        """`gather`: hold reads until this many are in flight together (or 5 s pass), so a test can tell reads
        made at the same time from reads made one after another."""
        self.moto_url = moto_url
        self.gather = gather
        self.reads: Counter[str] = Counter()
        self.in_flight = 0
        self.most_in_flight = 0
        self.held = threading.Event()  # set while a read is held by `hold`
        self.hold = False
        self._release = threading.Event()
        self._gathered: asyncio.Event | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def release(self) -> None:
        self._release.set()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("X-Amz-Target", "").endswith(".GetSecretValue"):
            self.reads[json.loads(body)["SecretId"]] += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                if self.gather:
                    self._gathered = self._gathered or asyncio.Event()
                    if self.in_flight >= self.gather:
                        self._gathered.set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._gathered.wait(), 5)
                if self.hold:
                    self.held.set()
                    await asyncio.to_thread(self._release.wait, 30)
                return await self._forward(request, body)
            finally:
                self.in_flight -= 1
        return await self._forward(request, body)

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
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
