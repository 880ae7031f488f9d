"""A fake Kilo Gateway speaking the OpenAI wire format, on 127.0.0.1 (aiohttp.web).

Used by the tests (`FakeGatewayThread`), by `make demo` and as the benchmarks' upstream:

    python tests/fakes/fake_gateway.py --port 8931 [--latency-ms 0] [--chunks 5] [--always-usage]

Serves `/chat/completions` and `/models` at the root and under `/api/gateway`, and
`/api/profile/balance`. Misbehaviour is chosen per request, either from a queue
(`POST /_fake/script {"scenarios": [...]}`) or by the model name `fake/<kind>`. Kinds:
`ok` (text, chunks, chunk_delay_ms, latency_ms, cost), `status` (status, retry_after, message),
`slow` (latency_ms), `cut`/`stall`/`malformed`/`error_event` (streams; after, silence_ms).
`GET /_fake/requests` lists what was received; `POST /_fake/reset` clears everything.

As the model behind an agent (the Kilo CLI sends `tools`): `POST /_fake/agent {"plan": [{"tool": "write",
"args": {"filePath": "HELLO.md", "content": "hi"}}], "text": "Done."}` makes the request that carries tools
answer with the plan's next tool call (one per tool result already in the conversation), then with text.
Requests without tools (the CLI's title request) get a short title. `agent_plans` ({marker: plan}) gives a
conversation whose first user message contains the marker a plan of its own (a subagent's, started by `task`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import deque
from typing import Any

from aiohttp import web

try:
    from tests.fakes.threaded import AiohttpApp, ServerThread
except ModuleNotFoundError:  # run as a script (make demo, benchmarks)
    from threaded import AiohttpApp, ServerThread  # type: ignore[no-redef]

MODELS = {
    "data": [
        {
            "id": "anthropic/claude-sonnet-4.5",
            "object": "model",
            "name": "Claude Sonnet 4.5",
            "pricing": {"prompt": "0.000003", "completion": "0.000015"},
        },
        {
            "id": "kilo-auto/balanced",
            "object": "model",
            "name": "Auto (balanced)",
            "pricing": {"prompt": "0.000003", "completion": "0.000015"},
        },
        {
            "id": "kilo-auto/free",
            "object": "model",
            "name": "Auto (free)",
            "pricing": {"prompt": "0", "completion": "0"},
        },
        {
            "id": "fake/model-a",
            "object": "model",
            "name": "Fake A",
            "pricing": {"prompt": "0.000001", "completion": "0.000002"},
        },
    ]
}
KINDS = {"ok", "status", "slow", "cut", "stall", "malformed", "error_event"}
DEFAULT_BALANCE = 12.5


def _words(messages: Any) -> int:
    n = 0
    for m in messages if isinstance(messages, list) else ():
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            n += len(m["content"].split())
    return max(n, 1)


def _split(text: str, n: int) -> list[str]:
    n = max(1, min(n, len(text) or 1))
    size, extra = divmod(len(text), n)
    out, i = [], 0
    for k in range(n):
        step = size + (1 if k < extra else 0)
        out.append(text[i : i + step])
        i += step
    return out


class FakeGateway(AiohttpApp):
    backlog = 512  # a benchmark upstream

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
        chunks: int = 5,
        chunk_delay_ms: float = 0,
        always_usage: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.latency_ms, self.chunks, self.chunk_delay_ms = latency_ms, chunks, chunk_delay_ms
        self.always_usage = always_usage
        # Bounded: as a benchmark upstream it serves millions of requests.
        self.requests: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.queue: deque[dict[str, Any]] = deque()
        self.balance: float = DEFAULT_BALANCE
        self.balance_status: int | None = None
        self.disconnects = 0
        self.agent_plan: list[dict[str, Any]] = []
        self.agent_text = "Done."
        self.agent_plans: dict[str, list[dict[str, Any]]] = {}
        self._runner: web.AppRunner | None = None
        self._seq = 0

    # -- control -----------------------------------------------------------------------------------
    def reset(self) -> None:
        self.requests.clear()
        self.queue.clear()
        self.balance, self.balance_status, self.disconnects = DEFAULT_BALANCE, None, 0
        self.agent_plan, self.agent_text, self.agent_plans = [], "Done.", {}

    def script(self, scenarios: list[Any]) -> None:
        self.queue.extend({"kind": s} if isinstance(s, str) else dict(s) for s in scenarios)

    def _scenario(self, model: str) -> dict[str, Any]:
        if self.queue:
            return self.queue.popleft()
        if model.startswith("fake/") and model[5:] in KINDS:
            return {"kind": model[5:]}
        return {"kind": "ok"}

    def _record(self, request: web.Request, body: Any) -> None:
        self.requests.append(
            {
                "path": request.path,
                "method": request.method,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "json": body,
            }
        )

    # -- handlers ----------------------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self._record(request, body)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth == "Bearer bad-key":
            return web.json_response({"error": {"message": "Missing or invalid API key", "code": 401}}, status=401)
        if not isinstance(body, dict):
            return web.json_response({"error": {"message": "Invalid JSON body", "code": 400}}, status=400)
        model = str(body.get("model") or "")
        sc = self._scenario(model)
        kind = sc.get("kind", "ok")
        latency = sc.get("latency_ms", 2000 if kind == "slow" else self.latency_ms)
        if latency:
            await asyncio.sleep(latency / 1000)
        if kind == "status":
            return self._status(sc)
        if body.get("tools") and body.get("stream") and kind == "ok":
            return await self._agent_turn(request, body, sc)
        last = next(
            (
                m.get("content")
                for m in reversed(body.get("messages") or [])
                if isinstance(m, dict) and m.get("role") == "user"
            ),
            "",
        )
        text = sc.get("text") or ("Echo: " + (last if isinstance(last, str) else ""))[:200]
        prompt_tokens = _words(body.get("messages"))
        self._seq += 1
        base = {"id": f"chatcmpl-fake-{self._seq}", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split())}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            if "cost" in sc:
                usage["cost"] = sc["cost"]
            return web.json_response(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": sc.get("usage", usage),
                }
            )
        return await self._stream(request, body, sc, base, text, prompt_tokens)

    def _status(self, sc: dict[str, Any]) -> web.Response:
        status = int(sc.get("status", 500))
        error: dict[str, Any] = {"message": sc.get("message", f"fake error {status}"), "code": status}
        headers = {}
        if status == 402:
            error["message"] = sc.get("message", "Insufficient balance")
            error["metadata"] = {"buyCreditsUrl": "https://app.kilo.ai/profile"}
        if status == 429:
            headers["Retry-After"] = str(sc.get("retry_after", "1"))
        return web.json_response({"error": error}, status=status, headers=headers)

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        sc: dict[str, Any],
        base: dict[str, Any],
        text: str,
        prompt_tokens: int,
    ) -> web.StreamResponse:
        kind = sc.get("kind", "ok")
        pieces = _split(text, int(sc.get("chunks", self.chunks)))
        delay = sc.get("chunk_delay_ms", self.chunk_delay_ms) / 1000
        after = int(sc.get("after", 2))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        try:
            await resp.write(chunk({"role": "assistant", "content": ""}))
            for i, piece in enumerate(pieces):
                if i == after and kind != "ok":
                    if kind == "cut":
                        request.transport.close()  # abrupt: no terminating chunk, no [DONE]
                        return resp
                    if kind == "error_event":
                        await resp.write(b'data: {"error": {"message": "upstream exploded", "code": 502}}\n\n')
                        return resp
                    if kind == "malformed":
                        await resp.write(b"data: {not json\n\n")
                    if kind == "stall":
                        await asyncio.sleep(sc.get("silence_ms", 3000) / 1000)
                if delay:
                    await asyncio.sleep(delay)
                await resp.write(chunk({"content": piece}))
            await resp.write(chunk({}, "stop"))
            wants = self.always_usage or (body.get("stream_options") or {}).get("include_usage")
            if wants:
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces)}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                if "cost" in sc:
                    usage["cost"] = sc["cost"]
                data = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                await resp.write(b"data: " + json.dumps(data).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1  # the client went away mid-stream
            raise
        return resp

    async def _agent_turn(self, request: web.Request, body: dict[str, Any], sc: dict[str, Any]) -> web.StreamResponse:
        """One turn of a scripted agent: the plan's next tool call, or the closing text once it is done."""
        messages = body.get("messages") or []
        done = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "tool")
        first = json.dumps(next((m for m in messages if isinstance(m, dict) and m.get("role") == "user"), ""))
        plan = next((p for marker, p in self.agent_plans.items() if marker in first), self.agent_plan)
        self._seq += 1
        base = {"id": f"chatcmpl-fake-{self._seq}", "created": int(time.time()), "model": body.get("model")}
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            data = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await resp.write(b"data: " + json.dumps(data).encode() + b"\n\n")

        await send({"role": "assistant", "content": ""})
        if done < len(plan):
            step = plan[done]
            call = {
                "index": 0,
                "id": f"call_{self._seq}",
                "type": "function",
                "function": {"name": step["tool"], "arguments": json.dumps(step.get("args", {}))},
            }
            await send({"tool_calls": [call]})
            await send({}, "tool_calls")
        else:
            await send({"content": self.agent_text})
            await send({}, "stop")
        usage = {"prompt_tokens": 1000 + 100 * done, "completion_tokens": 50}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if "cost" in sc:  # OpenRouter's usage.cost, which the real gateway passes through for most models
            usage["cost"] = sc["cost"]
        await resp.write(
            b"data: "
            + json.dumps({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}).encode()
            + b"\n\n"
        )
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def models(self, request: web.Request) -> web.Response:
        self._record(request, None)
        return web.json_response(MODELS)

    async def balance_handler(self, request: web.Request) -> web.Response:
        self._record(request, None)
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"error": {"message": "unauthorized", "code": 401}}, status=401)
        if self.balance_status:
            return web.json_response({"error": {"message": "fake failure"}}, status=self.balance_status)
        return web.json_response({"balance": self.balance})

    async def control(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        body = await request.json() if request.can_read_body else {}
        if action == "script":
            self.script(body.get("scenarios", []))
        elif action == "reset":
            self.reset()
        elif action == "balance":
            if "status" in body:
                self.balance_status = int(body["status"])
            if "balance" in body:
                self.balance, self.balance_status = float(body["balance"]), None
        elif action == "agent":
            self.agent_plan = list(body.get("plan", []))
            self.agent_text = str(body.get("text", "Done."))
        elif action == "requests":
            return web.json_response(list(self.requests))
        return web.json_response({"ok": True})

    # -- lifecycle ---------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        for prefix in ("", "/api/gateway"):
            app.router.add_post(prefix + "/chat/completions", self.chat)
            app.router.add_get(prefix + "/models", self.models)
        app.router.add_get("/api/profile/balance", self.balance_handler)
        app.router.add_route("*", "/_fake/{action}", self.control)
        return app

    @property
    def chats(self) -> list[dict[str, Any]]:
        """The chat completion requests received, oldest first."""
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def set_balance(self, value: float) -> None:
        self.balance, self.balance_status = value, None


class FakeGatewayThread(FakeGateway, ServerThread):
    """The fake in its own event loop thread, for synchronous tests."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8931)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--chunk-delay-ms", type=float, default=0)
    parser.add_argument("--always-usage", action="store_true", help="add usage to every stream, as the real gateway")
    args = parser.parse_args()
    fake = FakeGateway(args.host, args.port, args.latency_ms, args.chunks, args.chunk_delay_ms, args.always_usage)

    async def serve() -> None:
        url = await fake.start()
        print(f"fake-gateway listening on {url}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
