"""A fake Kilo Gateway on 127.0.0.1 (aiohttp.web), behaving as the real one does.

Used by the tests (`FakeGatewayThread`), by `make demo` and as the benchmarks' upstream:

    python tests/fakes/fake_gateway.py --port 8931 [--latency-ms 0] [--chunks 5]

Where each behaviour comes from (Kilo's source, Kilo-Org/cloud, is what runs; its docs are Kilo-Org/kilocode
`packages/kilo-docs/pages/gateway/`; /work/shared/DESIGN.md "Kilo Gateway" sums both up):
- Routes `POST /chat/completions`, `/responses`, `/messages` (Anthropic format), `/embeddings`, each also under
  `/v1/`, and `GET /models` (no key needed), at the root and under `/api/gateway` (docs: gateway/api-reference).
  `/api/profile/balance` → `{"balance", "isDepleted"}` (the Kilo CLI's balance read).
- `/models` prices per token as strings: `prompt`, `completion`, `input_cache_read`, `input_cache_write`.
- Streams: the gateway injects `stream_options.include_usage`, so usage comes in a final chunk with `choices: []`
  whether asked or not; upstream SSE comments become `: KILO PROCESSING` (cloud `rewriteModelResponse_*`:
  `onComment() → ': KILO PROCESSING\\n\\n'`); a failure mid-stream is a data event `{"error": {"message",
  "code": 502}}` (cloud `serializeError`).
- `usage.cost` (OpenRouter's, USD) is passed through for most models (a scenario's `cost`).
- Response headers: only `date`, `content-type` and `request-id` of the provider's survive (cloud
  `getOutputHeaders`); a scenario's `headers` adds others (e.g. `x-ratelimit-*`) to test relaying them.
- Error bodies (cloud src/lib/llm-proxy-helpers.ts): most are `{"error": "<text>", "error_type", "message"}`;
  402 is `{"error": {"title", "message", "balance", "buyCreditsUrl"}, "error_type": "usage_limit_exceeded"}`
  (usageLimitExceededResponse, no `metadata`); 404 "Model not allowed for your team." (modelNotAllowedResponse;
  `reason: "not_found"` gives modelDoesNotExistResponse); 403 a feature-exclusive model
  (featureExclusiveModelResponse); 426 upgradeRequiredResponse; 503 temporarilyUnavailableResponse, or with
  `reason: "top_up_in_progress"` that error type and `Retry-After: 5` (DESIGN.md); 429 carries **no**
  `Retry-After` (free models: 200/hour per IP); a provider's own error passes through as the provider sent it
  (a scenario's `body`, e.g. OpenAI's `{"error": {"message", "type", "param", "code"}}`).
- Where Kilo says no (each cited where the fake does it): `previous_response_id` or `store: true` on
  `/responses` and `providerOptions` anywhere are 400s before any routing; the 429 is `rate_limit_exceeded`;
  a refused key on a paid model is a 401 with a nested `{"error": {"code", "message"}}`.

Misbehaviour is chosen per request, from a queue (`POST /_fake/script {"scenarios": [...]}`) or by the model
name `fake/<kind>`. Kinds: `ok` (text, chunks, chunk_delay_ms, latency_ms, cost, usage, headers, processing),
`status` (status, reason, body, retry_after, headers, message), `slow` (latency_ms), and for streams
`cut`/`stall`/`malformed`/`error_event`/`huge_line` (after, silence_ms, size). `GET /_fake/requests` lists what was
received (path, query string, headers, JSON exactly as sent); `POST /_fake/reset` clears everything.

As the model behind an agent (the Kilo CLI sends `tools`): `POST /_fake/agent {"plan": [{"tool": "write",
"args": {"filePath": "HELLO.md", "content": "hi"}}], "text": "Done."}` makes the request that carries tools
answer with the plan's next tool call (one per tool result already in the conversation), then with text: on
`/chat/completions` a `tool_calls` delta, on `/messages` a `tool_use` block (Claude Code), on `/responses` a
`function_call` item (Codex).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import struct
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import web

if __name__ == "__main__":  # run as a script (make demo, benchmarks): the repository onto the import path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fakes.threaded import AiohttpApp, ServerThread


def _price(prompt: str, completion: str, cache_read: str, cache_write: str) -> dict[str, str]:
    return {
        "prompt": prompt,
        "completion": completion,
        "input_cache_read": cache_read,
        "input_cache_write": cache_write,
    }


MODELS = {
    "data": [
        {
            "id": "anthropic/claude-sonnet-4.5",
            "object": "model",
            "name": "Claude Sonnet 4.5",
            "created": 1759104000,
            "pricing": _price("0.000003", "0.000015", "0.0000003", "0.00000375"),
        },
        {
            "id": "kilo-auto/balanced",
            "object": "model",
            "name": "Auto (balanced)",
            "created": 1767225600,
            "pricing": _price("0.000003", "0.000015", "0.0000003", "0.00000375"),
        },
        {
            "id": "kilo-auto/free",
            "object": "model",
            "name": "Auto (free)",
            "created": 1767225600,
            "pricing": _price("0", "0", "0", "0"),
        },
        {
            "id": "fake/model-a",
            "object": "model",
            "name": "Fake A",
            "created": 1767225600,
            "pricing": _price("0.000001", "0.000002", "0.0000001", "0.00000125"),
        },
        {
            "id": "fake/embed",
            "object": "model",
            "name": "Fake embeddings",
            "created": 1767225600,
            "pricing": _price("0.0000001", "0", "0", "0"),
        },
    ]
}
KINDS = {"ok", "status", "slow", "cut", "stall", "malformed", "error_event", "huge_line"}
DEFAULT_BALANCE = 12.5
BUY_CREDITS_URL = "https://app.kilo.ai/profile"  # APP_URL + '/profile' (usageLimitExceededResponse)


def _kilo_error(error: str, error_type: str, message: str) -> dict[str, Any]:
    return {"error": error, "error_type": error_type, "message": message}


def error_body(status: int, reason: str | None, balance: float) -> dict[str, Any]:  # noqa: C901 - one branch per error shape the real gateway sends
    """Kilo's own error body for a status (cloud src/lib/llm-proxy-helpers.ts)."""
    if status == 402:
        return {
            "error": {
                "title": "Low Credit Warning!",
                "message": "Add credits to continue, or switch to a free model",
                "balance": balance,
                "buyCreditsUrl": BUY_CREDITS_URL,
            },
            "error_type": "usage_limit_exceeded",
        }
    if status == 404 and reason == "not_found":
        return _kilo_error("Model not found", "model_not_found", "The requested model could not be found.")
    if status == 404:
        return _kilo_error(
            "Model not allowed for your team.", "model_not_allowed", "The requested model is not allowed for your team."
        )
    if status == 403:
        return _kilo_error(
            "fake/exclusive is only available for Kilo Pass. Use kilo-auto/free as a free alternative.",
            "feature_exclusive_model",
            "fake/exclusive is only available for Kilo Pass. Use kilo-auto/free as a free alternative.",
        )
    if status == 426:
        return _kilo_error(
            "upgrade_required", "upgrade_required", "Please upgrade your Kilo extension to the latest version."
        )
    if status == 401 and reason == "invalid_token":  # older builds' flat shape
        return _kilo_error("Invalid token", "invalid_token", "Invalid or expired token.")
    if status == 401 and reason == "promotion_limit":
        # Kilo-Org/cloud llm-gateway/src/responses.ts promotionLimitReachedResponse (anonymous free-model cap)
        return {"error": {"code": "PROMOTION_MODEL_LIMIT_REACHED", "message": "Sign up for free to continue."}}
    if status == 401:
        # A key the gateway does not accept, on a paid model: Kilo-Org/cloud llm-gateway/src/responses.ts
        # paidModelAuthRequiredResponse (route handler: llm-gateway/src/routes/chat-completions.ts, "Auth").
        return {"error": {"code": "PAID_MODEL_AUTH_REQUIRED", "message": "You need to sign in to use this model."}}
    if status == 429:
        # Kilo-Org/cloud llm-gateway/src/responses.ts rateLimitExceededResponse: no Retry-After, no reset headers.
        return _kilo_error(
            "Rate limit exceeded",
            "rate_limit_exceeded",
            "Free model usage limit reached. Please try again later or upgrade to a paid model.",
        )
    if status == 503 and reason == "top_up_in_progress":
        return _kilo_error("Top-up in progress", "top_up_in_progress", "A credit top-up is in progress; retry shortly.")
    if status == 503:
        return _kilo_error(
            "Service Unavailable",
            "temporarily_unavailable",
            "The service is temporarily unavailable. Please try again later.",
        )
    if status == 400:
        return _kilo_error(
            "Invalid request", "invalid_request", "Could not parse request body. Please ensure it is valid JSON."
        )
    # What a provider answered, passed through in OpenRouter's shape (status in `code`).
    return {"error": {"message": f"fake error {status}", "code": status}}


def refusal(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The 400 the real gateway answers, before routing, to a field it does not support; None if it takes it."""
    if "providerOptions" in body:
        # Kilo-Org/cloud pull request 5267 "reject providerOptions requests" (apps/web/src/app/api/openrouter/
        # [...path]/route.ts): an early error that names the supported `provider` field instead.
        return _kilo_error(
            "providerOptions is not supported",
            "unsupported_field",
            "providerOptions is not supported by the Kilo Gateway; use the `provider` field instead.",
        )
    if path.endswith("/responses") and (body.get("store") is True or body.get("previous_response_id")):
        # Kilo-Org/cloud pull request 1526 (src/app/api/openrouter/[...path]/route.ts): the gateway keeps no
        # responses, so `store` and `previous_response_id` are refused (previousResponseIdIsNotSupported).
        field = "previous_response_id" if body.get("previous_response_id") else "store"
        return _kilo_error(
            f"{field} is not supported",
            "unsupported_field",
            f"{field} is not supported: the Kilo Gateway stores no responses; send the whole conversation.",
        )
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts (OpenAI, Responses, Anthropic)
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _words(messages: Any) -> int:
    items = messages if isinstance(messages, list) else [messages]
    n = sum(len(_text_of(m.get("content") if isinstance(m, dict) else m).split()) for m in items)
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


def _last_user_text(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    for m in reversed(messages if isinstance(messages, list) else []):
        if isinstance(m, dict) and m.get("role") == "user":
            return _text_of(m.get("content"))
    return ""


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + (data if isinstance(data, bytes) else json.dumps(data).encode()) + b"\n\n"


class FakeGateway(AiohttpApp):
    backlog = 512  # a benchmark upstream

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
        chunks: int = 5,
        chunk_delay_ms: float = 0,
        always_usage: bool = True,
    ) -> None:
        self.host, self.port = host, port
        self.latency_ms, self.chunks, self.chunk_delay_ms = latency_ms, chunks, chunk_delay_ms
        # Kept for the command line; the real gateway adds usage to every stream.
        self.always_usage = always_usage
        # Bounded: as a benchmark upstream it serves millions of requests.
        self.requests: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.queue: deque[dict[str, Any]] = deque()
        self.balance: float = DEFAULT_BALANCE
        self.balance_status: int | None = None
        self.models_status: int | None = None  # `GET /models` fails with this status while set
        self.disconnects = 0
        # Chat streams written to their end ([DONE] sent): a test tells a relayed chunk from a buffered one by it.
        self.streams_finished = 0
        self.agent_plan: list[dict[str, Any]] = []
        self.agent_text = "Done."
        # {marker: plan}: a conversation whose first user message holds the marker gets a plan of its own (a
        # subagent's, started by the `task` tool).
        self.agent_plans: dict[str, list[dict[str, Any]]] = {}
        self._runner: web.AppRunner | None = None
        self._seq = 0

    # -- control -----------------------------------------------------------------------------------
    def reset(self) -> None:
        self.requests.clear()
        self.queue.clear()
        self.balance, self.balance_status, self.disconnects = DEFAULT_BALANCE, None, 0
        self.models_status = None
        self.streams_finished = 0
        self.agent_plan, self.agent_text, self.agent_plans = [], "Done.", {}

    def script(self, scenarios: list[Any]) -> None:
        self.queue.extend({"kind": s} if isinstance(s, str) else dict(s) for s in scenarios)

    def _scenario(self, model: str) -> dict[str, Any]:
        if self.queue:
            return self.queue.popleft()
        if model.startswith("fake/") and model[5:] in KINDS:
            return {"kind": model[5:]}
        return {"kind": "ok"}

    def _record(self, request: web.Request, body: Any, raw: bytes = b"") -> None:
        self.requests.append(
            {
                "path": request.path,
                "query": request.query_string,
                "method": request.method,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "json": body,
                "raw": raw.decode(errors="replace"),  # the body as sent, as text (records stay JSON-dumpable)
                "at": time.time(),  # when it arrived (benchmarks time the agent's first model request)
            }
        )

    def _headers(self, sc: dict[str, Any], **more: str) -> dict[str, str]:
        self._seq += 1
        return {"request-id": f"req_fake_{self._seq}", **more, **{k: str(v) for k, v in sc.get("headers", {}).items()}}

    # -- the common front: auth, body, scenario ----------------------------------------------------
    async def _front(self, request: web.Request) -> tuple[dict[str, Any] | None, dict[str, Any], web.Response | None]:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self._record(request, body, raw)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth == "Bearer bad-key":
            return None, {}, web.json_response(error_body(401, None, 0), status=401)
        if not isinstance(body, dict):
            return None, {}, web.json_response(error_body(400, None, 0), status=400)
        refused = refusal(request.path, body)
        if refused is not None:
            return None, {}, web.json_response(refused, status=400, headers=self._headers({}))
        sc = self._scenario(str(body.get("model") or ""))
        kind = sc.get("kind", "ok")
        latency = sc.get("latency_ms", 2000 if kind == "slow" else self.latency_ms)
        if latency:
            await asyncio.sleep(latency / 1000)
        if kind == "status":
            return body, sc, self._status(sc)
        return body, sc, None

    def _status(self, sc: dict[str, Any]) -> web.Response:
        status = int(sc.get("status", 500))
        body = sc.get("body") or error_body(status, sc.get("reason"), self.balance)
        if "message" in sc and "body" not in sc:
            if isinstance(body.get("error"), dict):
                body["error"]["message"] = sc["message"]
            else:
                body["message"] = sc["message"]
        headers = self._headers(sc)
        if status == 503 and sc.get("reason") == "top_up_in_progress":
            headers["Retry-After"] = "5"
        if "retry_after" in sc:  # not Kilo's own 429s; a provider's answer may carry one
            headers["Retry-After"] = str(sc["retry_after"])
        return web.json_response(body, status=status, headers=headers)

    async def _open_sse(self, request: web.Request, sc: dict[str, Any]) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **self._headers(sc)}
        )
        await resp.prepare(request)
        for _ in range(int(sc.get("processing", 1))):
            await resp.write(b": KILO PROCESSING\n\n")
        return resp

    async def _misbehave(self, request: web.Request, resp: web.StreamResponse, sc: dict[str, Any], i: int) -> bool:
        """At piece `after`, do the scenario's mischief; True: the stream is over."""
        kind = sc.get("kind", "ok")
        if i != int(sc.get("after", 2)) or kind == "ok":
            return False
        if kind == "cut":
            assert request.transport is not None
            request.transport.close()  # abrupt: no terminating chunk, no [DONE]
            return True
        if kind == "error_event":
            await resp.write(b'data: {"error": {"message": "upstream exploded", "code": 502}}\n\n')
            return True
        if kind == "malformed":
            await resp.write(b"data: {not json\n\n")
        if kind == "huge_line":  # one enormous event (`size` bytes of data), then the stream goes on to its usage
            await resp.write(b"data: " + b"x" * int(sc.get("size", 10_000_000)) + b"\n\n")
        if kind == "stall":
            await asyncio.sleep(sc.get("silence_ms", 3000) / 1000)
        return False

    # -- /chat/completions -------------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, sc, refused = await self._front(request)
        if refused is not None:
            return refused
        assert body is not None  # without a body there is a refusal
        if body.get("tools") and body.get("stream") and sc.get("kind", "ok") == "ok":
            return await self._agent_turn(request, body, sc)
        model = str(body.get("model") or "")
        text = sc.get("text") or ("Echo: " + _last_user_text(body.get("messages")))[:200]
        prompt_tokens = _words(body.get("messages"))
        base = {"id": f"chatcmpl-fake-{self._seq + 1}", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split())}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            if "cost" in sc:
                usage["cost"] = sc["cost"]
            n = int(body.get("n") or 1)
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
                for i in range(n)
            ]
            return web.json_response(
                {**base, "object": "chat.completion", "choices": choices, "usage": sc.get("usage", usage)},
                headers=self._headers(sc),
            )
        return await self._chat_stream(request, sc, base, text, prompt_tokens)

    async def _chat_stream(
        self, request: web.Request, sc: dict[str, Any], base: dict[str, Any], text: str, prompt_tokens: int
    ) -> web.StreamResponse:
        pieces = _split(text, int(sc.get("chunks", self.chunks)))
        delay = sc.get("chunk_delay_ms", self.chunk_delay_ms) / 1000
        resp = await self._open_sse(request, sc)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return sse(
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        try:
            await resp.write(chunk({"role": "assistant", "content": ""}))
            for i, piece in enumerate(pieces):
                if await self._misbehave(request, resp, sc, i):
                    return resp
                if delay:
                    await asyncio.sleep(delay)
                await resp.write(chunk({"content": piece}))
            await resp.write(chunk({}, "stop"))
            # The gateway injects include_usage: the usage chunk comes whether the client asked or not.
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            if "cost" in sc:
                usage["cost"] = sc["cost"]
            await resp.write(sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            self.streams_finished += 1
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
        # A continued session (`kilo run --session`) sends the earlier turns too: the latest user message that
        # names a plan starts that plan, counted from the tool results after it.
        for at in range(len(messages) - 1, -1, -1):
            m = messages[at]
            said = json.dumps(m) if isinstance(m, dict) and m.get("role") == "user" else ""
            latest = next((p for marker, p in self.agent_plans.items() if said and marker in said), None)
            if latest is not None:
                plan = latest
                done = sum(1 for m in messages[at:] if isinstance(m, dict) and m.get("role") == "tool")
                break
        base = {"id": f"chatcmpl-fake-{self._seq + 1}", "created": int(time.time()), "model": body.get("model")}
        resp = await self._open_sse(request, sc)

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            await resp.write(
                sse(
                    {
                        **base,
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }
                )
            )

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
        await resp.write(sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def _next_step(self, body: dict[str, Any], sc: dict[str, Any], done: int) -> dict[str, Any] | None:
        """As the model behind an agent: the plan's next tool call (`done` tool results are in the conversation
        already), or None for the closing text. Only a streamed request with tools plays the agent."""
        if not (body.get("tools") and body.get("stream") and sc.get("kind", "ok") == "ok"):
            return None
        return self.agent_plan[done] if done < len(self.agent_plan) else None

    def _agent_text(self, body: dict[str, Any], sc: dict[str, Any], echo: str) -> str:
        if body.get("tools") and body.get("stream") and not sc.get("text"):
            return self.agent_text
        return str(sc.get("text") or ("Echo: " + echo)[:200])

    # -- /responses (OpenAI Responses API) ---------------------------------------------------------
    async def responses(self, request: web.Request) -> web.StreamResponse:
        body, sc, refused = await self._front(request)
        if refused is not None:
            return refused
        assert body is not None  # without a body there is a refusal
        model = str(body.get("model") or "")
        inputs: list[Any] = body["input"] if isinstance(body.get("input"), list) else []
        outputs = sum(1 for i in inputs if isinstance(i, dict) and str(i.get("type", "")).endswith("call_output"))
        step = self._next_step(body, sc, outputs)
        text = self._agent_text(body, sc, _last_user_text(body.get("input")))
        pieces = _split(text, int(sc.get("chunks", self.chunks)))
        n = self._seq + 1
        input_tokens, output_tokens = _words(body.get("input")), len(pieces)
        usage: dict[str, Any] = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }
        if "cost" in sc:
            usage["cost"] = sc["cost"]
        message = {
            "type": "message",
            "id": f"msg_fake_{n}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }
        done = {
            "id": f"resp_fake_{n}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": model,
            "output": [message],
            "usage": usage,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "metadata": {},
            "parallel_tool_calls": True,
            "temperature": body.get("temperature", 1.0),
            "top_p": 1.0,
            "tool_choice": "auto",
            "tools": [],
            "max_output_tokens": body.get("max_output_tokens"),
            "text": {"format": {"type": "text"}},
        }
        if not body.get("stream"):
            return web.json_response(done, headers=self._headers(sc))
        resp = await self._open_sse(request, sc)
        seq = 0

        async def event(kind: str, **data: Any) -> None:
            nonlocal seq
            await resp.write(sse({"type": kind, "sequence_number": seq, **data}, kind))
            seq += 1

        started = {**done, "status": "in_progress", "output": [], "usage": None}
        if step is not None:  # a function call (the Responses API's tool call), then the response ends
            call = {
                "type": "function_call",
                "id": f"fc_fake_{n}",
                "call_id": f"call_fake_{n}",
                "name": step["tool"],
                "arguments": json.dumps(step.get("args", {})),
                "status": "completed",
            }
            await event("response.created", response=started)
            await event(
                "response.output_item.added", output_index=0, item={**call, "arguments": "", "status": "in_progress"}
            )
            await event(
                "response.function_call_arguments.delta", item_id=call["id"], output_index=0, delta=call["arguments"]
            )
            await event(
                "response.function_call_arguments.done", item_id=call["id"], output_index=0, arguments=call["arguments"]
            )
            await event("response.output_item.done", output_index=0, item=call)
            await event("response.completed", response={**done, "output": [call]})
            await resp.write_eof()
            return resp
        item = {**message, "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        await event("response.created", response=started)
        await event("response.in_progress", response=started)
        await event("response.output_item.added", output_index=0, item=item)
        await event("response.content_part.added", item_id=message["id"], output_index=0, content_index=0, part=part)
        for i, piece in enumerate(pieces):
            if await self._misbehave(request, resp, sc, i):
                return resp
            await event(
                "response.output_text.delta",
                item_id=message["id"],
                output_index=0,
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        await event(
            "response.output_text.done", item_id=message["id"], output_index=0, content_index=0, text=text, logprobs=[]
        )
        await event(
            "response.content_part.done",
            item_id=message["id"],
            output_index=0,
            content_index=0,
            part=message["content"][0],
        )
        await event("response.output_item.done", output_index=0, item=message)
        await event("response.completed", response=done)
        await resp.write_eof()  # the Responses API sends no [DONE]
        return resp

    # -- /messages (Anthropic Messages API) --------------------------------------------------------
    async def messages(self, request: web.Request) -> web.StreamResponse:
        body, sc, refused = await self._front(request)
        if refused is not None:
            return refused
        assert body is not None  # without a body there is a refusal
        model = str(body.get("model") or "")
        results = sum(
            1
            for m in body.get("messages") or ()
            if isinstance(m, dict) and isinstance(m.get("content"), list)
            for part in m["content"]
            if isinstance(part, dict) and part.get("type") == "tool_result"
        )
        step = self._next_step(body, sc, results)
        text = self._agent_text(body, sc, _last_user_text(body.get("messages")))
        pieces = _split(text, int(sc.get("chunks", self.chunks)))
        n = self._seq + 1
        usage = {
            "input_tokens": _words(body.get("messages")),
            "output_tokens": len(pieces),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        done = {
            "id": f"msg_fake_{n}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return web.json_response(done, headers=self._headers(sc))
        resp = await self._open_sse(request, sc)

        async def event(kind: str, **data: Any) -> None:
            await resp.write(sse({"type": kind, **data}, kind))

        start = {**done, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        await event("message_start", message=start)
        if step is not None:  # a `tool_use` block, its input streamed as JSON, then `stop_reason: tool_use`
            use = {"type": "tool_use", "id": f"toolu_fake_{n}", "name": step["tool"], "input": {}}
            await event("content_block_start", index=0, content_block=use)
            partial = json.dumps(step.get("args", {}))
            await event("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": partial})
            await event("content_block_stop", index=0)
            await event(
                "message_delta",
                delta={"stop_reason": "tool_use", "stop_sequence": None},
                usage={"output_tokens": len(pieces)},
            )
            await event("message_stop")
            await resp.write_eof()
            return resp
        await event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        await event("ping")
        for i, piece in enumerate(pieces):
            if await self._misbehave(request, resp, sc, i):
                return resp
            await event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
        await event("content_block_stop", index=0)
        await event(
            "message_delta",
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage={"output_tokens": len(pieces)},
        )
        await event("message_stop")
        await resp.write_eof()
        return resp

    # -- /embeddings -------------------------------------------------------------------------------
    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body, sc, refused = await self._front(request)
        if refused is not None:
            return refused
        assert body is not None  # without a body there is a refusal
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = []
        for i in range(len(items)):
            vector = [round(0.1 * (i + 1), 3), 0.25, -0.5]
            # The openai SDKs ask for base64 (packed little-endian float32) unless told otherwise.
            value: Any = (
                base64.b64encode(struct.pack("<3f", *vector)).decode()
                if body.get("encoding_format") == "base64"
                else vector
            )
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(_words(x) for x in items)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers=self._headers(sc),
        )

    async def models(self, request: web.Request) -> web.Response:
        self._record(request, None)
        if self.models_status:
            return web.json_response(error_body(self.models_status, None, 0), status=self.models_status)
        return web.json_response(MODELS)

    async def balance_handler(self, request: web.Request) -> web.Response:
        self._record(request, None)
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response(error_body(401, None, 0), status=401)
        if self.balance_status:
            return web.json_response({"error": {"message": "fake failure"}}, status=self.balance_status)
        return web.json_response({"balance": self.balance, "isDepleted": self.balance <= 0})

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
            return web.json_response([{k: v for k, v in r.items() if k != "raw"} for r in self.requests])
        return web.json_response({"ok": True})

    # -- lifecycle ---------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=40 * 1024 * 1024)
        for prefix in ("", "/v1", "/api/gateway", "/api/gateway/v1"):
            app.router.add_post(prefix + "/chat/completions", self.chat)
            app.router.add_post(prefix + "/responses", self.responses)
            app.router.add_post(prefix + "/messages", self.messages)
            app.router.add_post(prefix + "/embeddings", self.embeddings)
            app.router.add_get(prefix + "/models", self.models)
        app.router.add_get("/api/profile/balance", self.balance_handler)
        app.router.add_route("*", "/_fake/{action}", self.control)
        return app

    def calls(self, path: str) -> list[dict[str, Any]]:
        """The requests received on a route (e.g. "/responses"), oldest first."""
        return [r for r in self.requests if r["path"].endswith(path)]

    @property
    def chats(self) -> list[dict[str, Any]]:
        """The chat completion requests received, oldest first."""
        return self.calls("/chat/completions")

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
    parser.add_argument("--always-usage", action="store_true", help="kept for old scripts: usage is always sent")
    args = parser.parse_args()
    fake = FakeGateway(args.host, args.port, args.latency_ms, args.chunks, args.chunk_delay_ms)

    async def serve() -> None:
        url = await fake.start()
        print(f"fake-gateway listening on {url}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
