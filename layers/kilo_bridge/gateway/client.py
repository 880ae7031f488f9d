"""Kilo Gateway client: OpenAI-compatible chat completions, plain and streamed.

The transport is aiohttp, and this is the hot path: the upstream call is ≈ 437 µs of the 871 µs of CPU one
proxied request costs the server (docs/benchmarks/split.md). httpx's default transport was measured once
against it (~1.4 ms against ~0.55 ms per proxied call; not in a report); the Rust-backed rnet and pyreqwest
were no clear win (docs/benchmarks/stack.md). One pooled session per event loop
is reused across requests and Lambda invocations.

Retries (jittered exponential backoff, `Retry-After` honoured) cover connect errors and 429/502/503/504,
and happen only before a byte has reached our client: once a stream has started, a failure becomes
an error for the caller to report, never a silent replay.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from kilo_bridge import __version__
from kilo_bridge.config import Settings
from kilo_bridge.gateway.apis import CHAT, MESSAGES, RESPONSES, InferenceApi
from kilo_bridge.gateway.errors import GatewayError, GatewayNotConfigured
from kilo_bridge.gateway.sse import sse_events
from kilo_bridge.platform.lazy import lazy_module
from kilo_bridge.platform.security import redact

if TYPE_CHECKING:
    import aiohttp
    from tenacity import AsyncRetrying, RetryCallState
else:  # ~90 ms of a cold start, paid by the first gateway call: a job or key route never makes one
    aiohttp = lazy_module("aiohttp")

Chunk = tuple[bytes, dict[str, Any], bytes | None]  # (raw SSE data, parsed JSON, the event's name if any)
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Request headers a caller may pass on to the gateway (besides ours): Kilo keys its prompt cache by task.
FORWARDED_REQUEST_HEADERS = ("x-kilocode-taskid",)
# On the Messages API also Anthropic's version and beta flags, which body fields depend on (Claude Code's
# `context_management`, interleaved thinking, ...), and its `?beta=true`.
ANTHROPIC_REQUEST_HEADERS = ("anthropic-version", "anthropic-beta")
Headers = dict[str, str] | None
log = logging.getLogger(__name__)


class RetryableUpstream(Exception):
    """A failure that happened before any byte was relayed and may be retried."""

    def __init__(self, error: GatewayError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


@dataclass(slots=True)
class StreamState:
    """What a stream has told us so far; read by the caller for accounting, also after a failure."""

    model: str
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    chunks: int = 0
    done: bool = False
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    api: InferenceApi = CHAT
    # The upstream response headers clients use (rate limits, request id), to be relayed.
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Answer:
    """A non-streamed answer: parsed (for accounting), as sent (relayed byte for byte), and the headers to relay."""

    payload: dict[str, Any]
    raw: bytes
    headers: dict[str, str]


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


# The error fields of Kilo's bodies we keep, besides OpenAI's message/type/param/code: its 402 carries
# `title`, `balance` and `buyCreditsUrl`, every other error an `error_type` (Kilo-Org/cloud
# src/lib/llm-proxy-helpers.ts: usageLimitExceededResponse, modelNotAllowedResponse, ...).
KILO_EXTRA_FIELDS = ("title", "balance", "buyCreditsUrl")
# The response headers clients act on; the upstream's request id is Kilo's `request-id` (getOutputHeaders).
_FORWARDED_NAMES = frozenset({"request-id", "retry-after", "x-should-retry"})


def forwarded_headers(headers: Any) -> dict[str, str]:
    """The upstream response headers a client uses: `x-ratelimit-*`, `request-id`, `retry-after`."""
    if headers is None:
        return {}
    out = {}
    for name, value in headers.items():
        low = name.lower()
        if low in _FORWARDED_NAMES or low.startswith("x-ratelimit-"):
            out[low] = value
    return out


def error_fields(payload: Any, secrets: tuple[str, ...]) -> dict[str, Any]:
    """An upstream error body, whatever its shape, as OpenAI's fields plus Kilo's extras (secrets redacted).

    Kilo answers `{"error": "<text>", "error_type", "message"}`, its 402
    `{"error": {"title", "message", "balance", "buyCreditsUrl"}, "error_type"}`, and passes the provider's
    `{"error": {"message", "type", "param", "code"}}` through (OpenRouter puts the status in `code`)."""
    if not isinstance(payload, dict):
        return {}
    err = payload.get("error")
    fields: dict[str, Any] = {}
    if isinstance(err, dict):
        for name in ("message", "type", "param", "code"):
            value = err.get(name)
            if isinstance(value, str) and value:  # an integer `code` is a status, not OpenAI's string code
                fields[name] = value
        for name in KILO_EXTRA_FIELDS:
            if isinstance(err.get(name), (str, int, float)) and not isinstance(err.get(name), bool):
                fields[name] = err[name]
    elif isinstance(err, str) and err:
        fields["message"] = err
    if isinstance(payload.get("message"), str) and payload["message"]:
        fields["message"] = payload["message"]  # Kilo's sentence; its `error` is a short title
    if isinstance(payload.get("error_type"), str) and payload["error_type"]:
        fields["error_type"] = payload["error_type"]
    for name in ("message", "title"):
        if name in fields:
            fields[name] = redact(str(fields[name]), secrets)[:1000]
    return fields


def _native_code(status: int, fields: dict[str, Any]) -> str:
    """Our stable code for an upstream status (web/errors.py maps codes to the native routes' statuses)."""
    error_type = fields.get("error_type")
    if status == 404 and (error_type == "model_not_allowed" or "not allowed" in str(fields.get("message", ""))):
        # Kilo's 404 "Model not allowed for your team." (modelNotAllowedResponse; older builds send no
        # error_type): the organization disallows the model. Its other 404s mean no such model (any more).
        return "model_not_allowed"
    if status == 503 and error_type == "top_up_in_progress":
        return "top_up_in_progress"
    code = _CODE_BY_STATUS.get(status)
    if code:
        return code
    return "upstream_rejected" if 400 <= status < 500 else "upstream_error"


_CODE_BY_STATUS = {
    400: "upstream_bad_request",
    401: "gateway_auth_failed",
    402: "credits_exhausted",
    403: "model_not_allowed",  # a feature-exclusive model or a disallowed provider
    404: "model_not_found",
    408: "upstream_timeout",
    413: "upstream_payload_too_large",
    426: "gateway_upgrade_required",
    429: "upstream_rate_limited",
    503: "upstream_unavailable",
    504: "upstream_timeout",
}
_MESSAGES = {
    "upstream_bad_request": "The Kilo Gateway refused the request",
    "gateway_auth_failed": "The Kilo Gateway rejected the configured KILO_API_KEY",
    "credits_exhausted": "The Kilo credit balance is exhausted",
    "model_not_allowed": "The Kilo Gateway does not allow this model",
    "model_not_found": "The Kilo Gateway does not know this model",
    "upstream_payload_too_large": "The Kilo Gateway refused the request as too large",
    "gateway_upgrade_required": "The Kilo Gateway asks for a newer client; upgrade kilo-bridge",
    "upstream_rate_limited": "The Kilo Gateway is rate limiting this service; retry later",
    "top_up_in_progress": "A Kilo credit top-up is in progress; retry shortly",
    "upstream_unavailable": "The Kilo Gateway is unavailable",
    "upstream_timeout": "The Kilo Gateway timed out",
}


# A relayed 429 without Retry-After gets one: the Codex CLI gives up at once on a 429 that lacks it (and the
# Kilo Gateway's own 429s carry none: llm-gateway/src/responses.ts rateLimitExceededResponse). From the
# rate-limit reset headers when the answer has them, else this short default.
DEFAULT_RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 60
_RESET_HEADERS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "x-ratelimit-reset")
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?")


def _reset_seconds(value: str, now: float) -> float | None:
    """A reset header as seconds from now: OpenAI's duration (`1s`, `6m0s`, `20ms`), a Unix time in seconds or
    milliseconds (OpenRouter's `X-RateLimit-Reset`), or plain seconds."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        match = _DURATION.fullmatch(value)
        if not value or match is None:
            return None
        h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
        return h * 3600 + m * 60 + s + ms / 1000
    if number > 1e12:
        return number / 1000 - now
    if number > 1e9:
        return number - now
    return number


def retry_after_for_429(headers: dict[str, str]) -> str:
    """Whole seconds (what `Retry-After` allows) until the upstream's limits reset, 1 to 60."""
    now = time.time()
    resets = [s for name in _RESET_HEADERS if (v := headers.get(name)) and (s := _reset_seconds(v, now)) is not None]
    seconds = max(resets) if resets else DEFAULT_RETRY_AFTER_S
    return str(min(MAX_RETRY_AFTER_S, max(1, math.ceil(seconds))))


def upstream_error(status: int, payload: Any, headers: Any, secrets: tuple[str, ...]) -> GatewayError:
    """An upstream error response as our error: its status and fields kept as data, secrets not."""
    fields = error_fields(payload, secrets)
    code = _native_code(status, fields)
    detail = fields.get("message")
    lead = _MESSAGES.get(code, f"The Kilo Gateway answered HTTP {status}")
    message = f"{lead}: {detail}" if detail else lead + "."
    extra: dict[str, Any] = {k: fields[k] for k in ("buyCreditsUrl", "balance") if k in fields} if status == 402 else {}
    forwarded = forwarded_headers(headers)
    retry_after: str | None = forwarded.pop("retry-after", None)  # the upstream's own, as it came
    if status == 429 and retry_after is None:
        retry_after = retry_after_for_429(forwarded)
    return GatewayError(
        message,
        code=code,
        retry_after=retry_after,
        extra=extra,
        status=status,
        upstream=fields,
        headers=forwarded,
    )


def timeout_error() -> GatewayError:
    return GatewayError("The Kilo Gateway did not answer within KILO_TIMEOUT_MS.", code="upstream_timeout")


class GatewayClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.kilo_gateway_base
        self._secrets = tuple(s for s in (settings.api_key,) if s)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeout_s = settings.kilo_timeout_ms / 1000
        headers = {"User-Agent": f"kilo-bridge/{__version__}", "Content-Type": "application/json"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        if settings.kilo_org_id:
            headers["X-KiloCode-OrganizationId"] = settings.kilo_org_id
        self._headers = headers
        # A key from Secrets Manager is re-read every KILO_API_KEY_MAX_AGE_S: rotation needs no restart.
        self._key_checked = time.monotonic()
        self._key_refresh: asyncio.Task[None] | None = None

    def _refresh_key_soon(self) -> None:
        """Past KILO_API_KEY_MAX_AGE_S, re-read the key in the background: the call that noticed goes out at once
        on the key it has (a Secrets Manager read through the NAT never delays a request); later calls get the
        new one. One read at a time."""
        st = self.settings
        if time.monotonic() - self._key_checked < st.kilo_api_key_max_age_s:
            return
        if self._key_refresh is not None and not self._key_refresh.done():
            return
        self._key_checked = time.monotonic()
        self._key_refresh = asyncio.get_running_loop().create_task(self._refresh_key())

    async def _refresh_key(self) -> None:
        st = self.settings
        if not st.kilo_api_key_secret_arn:
            return
        from kilo_bridge.config import read_secret

        try:
            key = await asyncio.to_thread(read_secret, st.kilo_api_key_secret_arn, "KILO_API_KEY")
        except Exception as exc:  # keep the key we have; the next check tries again
            log.warning("could not re-read the Kilo key", extra={"error": type(exc).__name__})
            return
        if self._headers.get("Authorization") != f"Bearer {key}":
            self._headers["Authorization"] = f"Bearer {key}"
            self._secrets = (key, *self._secrets)  # the old key stays redacted too
            if self._session is not None:
                self._session.headers["Authorization"] = f"Bearer {key}"
            log.info("Kilo key rotated")

    @property
    def configured(self) -> bool:
        return bool(self.settings.api_key)

    def session(self) -> aiohttp.ClientSession:
        """The pooled session of the running loop (Mangum keeps one loop across invocations)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(limit=512, ttl_dns_cache=300, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                json_serialize=lambda o: orjson.dumps(o).decode(),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=min(self._timeout_s, 10.0), sock_read=self._timeout_s
                ),
                auto_decompress=True,
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    # -- retries -----------------------------------------------------------------------------------
    @staticmethod
    def _pause(retry: int, exc: BaseException | None) -> float:
        """Seconds before the `retry`-th retry: the upstream's Retry-After, else jittered exponential backoff."""
        hinted = exc.retry_after if isinstance(exc, RetryableUpstream) else None
        return hinted if hinted is not None else random.uniform(0, min(4.0, 0.2 * 2 ** (retry - 1)))  # noqa: S311

    def _retrying(self, deadline: float) -> AsyncRetrying:
        """The retries that follow a failed first attempt (tenacity's attempt n is retry n)."""
        # Imported here: only a call whose first attempt failed pays for tenacity (~5 ms of a cold start).
        from tenacity import AsyncRetrying, retry_if_exception_type

        def wait(state: RetryCallState) -> float:
            return self._pause(state.attempt_number + 1, state.outcome.exception() if state.outcome else None)

        def stop(state: RetryCallState) -> bool:
            # Give up when retries run out or when the next wait would pass the deadline.
            if state.attempt_number >= self.settings.kilo_max_retries:
                return True
            return time.monotonic() + wait(state) >= deadline

        return AsyncRetrying(stop=stop, wait=wait, retry=retry_if_exception_type(RetryableUpstream), reraise=True)

    async def _open(self, path: str, body: dict[str, Any], headers: Headers = None) -> aiohttp.ClientResponse:
        """POST once; return a 2xx response (caller reads it) or raise the mapped error."""
        try:
            resp = await self.session().post(self.base + path, data=orjson.dumps(body), headers=headers)
        except aiohttp.ClientConnectorError as exc:
            raise RetryableUpstream(
                GatewayError("The Kilo Gateway could not be reached.", code="upstream_unreachable")
            ) from exc
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise timeout_error() from exc
        except aiohttp.ClientError as exc:
            # The request may have reached the gateway: not retried, to never pay twice.
            raise GatewayError("The connection to the Kilo Gateway failed.", code="upstream_error") from exc
        if resp.status < 300:
            return resp
        try:
            payload = await resp.json(loads=orjson.loads, content_type=None)
        except (aiohttp.ClientError, ValueError, TimeoutError):
            payload = None
        finally:
            resp.release()
        error = upstream_error(resp.status, payload, resp.headers, self._secrets)
        if resp.status in RETRYABLE_STATUSES:
            raise RetryableUpstream(error, _parse_retry_after(resp.headers.get("Retry-After")))
        raise error

    async def _open_with_retries(
        self, path: str, body: dict[str, Any], retries: bool = True, headers: Headers = None
    ) -> tuple[aiohttp.ClientResponse, int]:
        """POST with retries until a 2xx response's headers arrive; the caller bounds it with a deadline.
        `retries=False`: one attempt, for clients that retry on their own (the `/v1` SDKs)."""
        if not self.configured:
            raise GatewayNotConfigured()
        if self.settings.kilo_api_key_secret_arn:
            self._refresh_key_soon()
        deadline = time.monotonic() + self._timeout_s
        # The first attempt runs outside tenacity: most calls need no retry, and setting up a retry loop
        # cost ~0.1 ms per call on the hot path (docs/benchmarks.md, "Where the budget is missed").
        try:
            return await self._open(path, body, headers), 1
        except RetryableUpstream as exc:
            pause = self._pause(1, exc)
            if not retries or self.settings.kilo_max_retries < 1 or time.monotonic() + pause >= deadline:
                raise exc.error from None
        await asyncio.sleep(pause)
        attempts = 1
        try:
            async for attempt in self._retrying(deadline):
                with attempt:
                    attempts += 1
                    return await self._open(path, body, headers), attempts
        except RetryableUpstream as exc:
            raise exc.error from None
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    # -- public API --------------------------------------------------------------------------------
    async def complete(
        self,
        body: dict[str, Any],
        retries: bool = True,
        api: InferenceApi = CHAT,
        headers: Headers = None,
        query: str = "",
    ) -> Answer:
        """A non-streamed call of `api` (`query`: a query string for its path) within KILO_TIMEOUT_MS, retries
        included."""
        try:
            async with asyncio.timeout(self._timeout_s):
                resp, _attempts = await self._open_with_retries(api.path + query, body, retries, headers)
                try:
                    data = await resp.read()
                    headers = forwarded_headers(resp.headers)
                finally:
                    resp.release()
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise timeout_error() from None
        except aiohttp.ClientError:
            raise GatewayError("The Kilo Gateway's answer was cut off.", code="upstream_error") from None
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise GatewayError("The Kilo Gateway answered with invalid JSON.", code="upstream_malformed") from None
        if not isinstance(payload, dict) or (api is CHAT and not isinstance(payload.get("choices"), list)):
            raise GatewayError("The Kilo Gateway's answer has no choices.", code="upstream_malformed")
        return Answer(payload, data, headers)

    @asynccontextmanager
    async def stream(
        self,
        body: dict[str, Any],
        retries: bool = True,
        api: InferenceApi = CHAT,
        headers: Headers = None,
        query: str = "",
    ) -> AsyncIterator[tuple[StreamState, AsyncIterator[list[Chunk]]]]:
        """Open a streamed completion. Yields (state, batches): each batch the chunks one read brought, each
        chunk as (raw data, parsed JSON).

        Opening (until response headers) is retried; iterating is not. Iteration raises GatewayError
        when the stream breaks, carries an error event, or ends before it finished.
        """
        body = {**body, "stream": True}
        if api is CHAT:  # ask for usage on the final chunk (the real gateway adds it anyway)
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        try:
            async with asyncio.timeout(self._timeout_s):
                resp, attempts = await self._open_with_retries(api.path + query, body, retries, headers)
        except TimeoutError:
            raise timeout_error() from None
        state = StreamState(model=str(body.get("model") or ""), attempts=attempts, api=api)
        state.headers = forwarded_headers(resp.headers)
        try:
            yield state, self._chunks(resp, state)
        finally:
            # Closing (not releasing) drops the connection: an abandoned stream stops upstream work.
            if not state.done:
                resp.close()
            else:
                resp.release()

    def _parse(self, data: bytes, state: StreamState) -> dict[str, Any]:
        """One chunk's JSON, noted in `state`; an error chunk or malformed data raises."""
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise GatewayError("The Kilo Gateway sent a malformed stream chunk.", code="upstream_malformed") from None
        if not isinstance(chunk, dict):
            raise GatewayError("The Kilo Gateway sent a malformed stream chunk.", code="upstream_malformed")
        if chunk.get("error") is not None or chunk.get("type") == "error":
            # Kilo's mid-stream failure, or the Messages/Responses APIs' `error` event
            raise upstream_error(_error_status(chunk), chunk, None, self._secrets)
        state.chunks += 1
        if state.api is CHAT:
            if chunk.get("model"):
                state.model = chunk["model"]
            if chunk.get("usage"):
                state.usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                if choice.get("finish_reason"):
                    state.finish_reason = choice["finish_reason"]
        elif state.api is MESSAGES:
            _note_message_event(chunk, state)
        elif state.api is RESPONSES:
            _note_response_event(chunk, state, self._secrets)
        return chunk

    async def _chunks(self, resp: aiohttp.ClientResponse, state: StreamState) -> AsyncIterator[list[Chunk]]:
        """The chunks of each network read, together: relayed in one write, never waiting for more."""
        try:
            async for batch in sse_events(resp.content):
                ready: list[Chunk] = []
                try:
                    for name, data in batch:
                        if data == b"[DONE]":
                            state.done = True
                            break
                        ready.append((data, self._parse(data, state), name))
                except GatewayError:
                    if ready:
                        yield ready  # what came before the error is relayed first, in order
                    raise
                if ready:
                    yield ready
                if state.done:
                    return
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise GatewayError("The Kilo Gateway went silent mid-stream.", code="upstream_timeout") from None
        except aiohttp.ClientError:
            raise GatewayError("The Kilo Gateway stream was cut off.", code="upstream_stream_broken") from None
        if state.finish_reason is None:
            raise GatewayError("The Kilo Gateway stream ended before it finished.", code="upstream_stream_broken")
        state.done = True

    async def get_json(self, url: str) -> Any:
        """A small GET on a cold path (model list, balance) through the same pooled session."""
        try:
            async with asyncio.timeout(min(self._timeout_s, 10.0)):
                async with self.session().get(url) as resp:
                    if resp.status >= 300:
                        raise GatewayError(f"{_path_of(url)} answered HTTP {resp.status}.", code="upstream_error")
                    return orjson.loads(await resp.read())
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError):
            raise GatewayError(f"{_path_of(url)} could not be read.", code="upstream_error") from None

    async def list_models(self) -> dict[str, Any]:
        """`GET /models` (no key needed): model ids and per-token USD prices."""
        payload = await self.get_json(self.base + "/models")
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            raise GatewayError("The Kilo Gateway model list is malformed.", code="upstream_malformed")
        return payload


def _path_of(url: str) -> str:
    return url.split("?", 1)[0]


def _note_message_event(event: dict[str, Any], state: StreamState) -> None:
    """Anthropic's stream: `message_start` has the input usage, `message_delta` the output and stop reason."""
    kind = event.get("type")
    if kind == "message_start" and isinstance(event.get("message"), dict):
        message = event["message"]
        state.model = message.get("model") or state.model
        if isinstance(message.get("usage"), dict):
            state.usage = dict(message["usage"])
    elif kind == "message_delta":
        if isinstance(event.get("usage"), dict):
            state.usage = {**(state.usage or {}), **event["usage"]}
        delta = event.get("delta")
        if isinstance(delta, dict) and delta.get("stop_reason"):
            state.finish_reason = delta["stop_reason"]


def _note_response_event(event: dict[str, Any], state: StreamState, secrets: tuple[str, ...]) -> None:
    """The Responses API's stream ends with `response.completed` (or `.incomplete`), which has the usage;
    `response.failed` is a failure."""
    kind = event.get("type")
    if isinstance(event.get("sequence_number"), int):
        state.extra["sequence_number"] = event["sequence_number"]  # a failure we report comes next in line
    response = event.get("response")
    if not isinstance(response, dict):
        return
    if kind in ("response.created", "response.in_progress"):
        state.extra["response"] = response  # the id and fields a `response.failed` of ours repeats
    state.model = response.get("model") or state.model
    if kind in ("response.completed", "response.incomplete"):
        state.usage = response.get("usage") if isinstance(response.get("usage"), dict) else state.usage
        state.finish_reason = str(response.get("status") or kind.rsplit(".", 1)[1])
    elif kind == "response.failed":
        state.usage = response.get("usage") if isinstance(response.get("usage"), dict) else state.usage
        raise upstream_error(502, {"error": response.get("error")}, None, secrets)


def _error_status(chunk: dict[str, Any]) -> int:
    code = chunk["error"].get("code") if isinstance(chunk.get("error"), dict) else None
    return code if isinstance(code, int) and 400 <= code < 600 else 502
