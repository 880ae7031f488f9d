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
import errno
import io
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from kilo_bridge import __version__
from kilo_bridge.config import Settings
from kilo_bridge.errors import Overloaded
from kilo_bridge.gateway.apis import CHAT, InferenceApi
from kilo_bridge.gateway.error_map import forwarded_headers, parse_retry_after, timeout_error, upstream_error
from kilo_bridge.gateway.errors import GatewayError, GatewayNotConfigured
from kilo_bridge.gateway.stream import Chunk, StreamState, chunks
from kilo_bridge.platform.lazy import lazy_module

if TYPE_CHECKING:
    import aiohttp
    from tenacity import AsyncRetrying, RetryCallState
else:  # ~90 ms of a cold start, paid by the first gateway call: a job or key route never makes one
    aiohttp = lazy_module("aiohttp")

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# Request headers a caller may pass on to the gateway (besides ours): Kilo keys its prompt cache by task.
FORWARDED_REQUEST_HEADERS = ("x-kilocode-taskid",)
# On the Messages API also Anthropic's version and beta flags, which body fields depend on (Claude Code's
# `context_management`, interleaved thinking, ...), and its `?beta=true`.
ANTHROPIC_REQUEST_HEADERS = ("anthropic-version", "anthropic-beta")
Headers = dict[str, str] | None
_NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
log = logging.getLogger(__name__)


class RetryableUpstream(Exception):
    """A failure that happened before any byte was relayed and may be retried."""

    def __init__(self, error: GatewayError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


# aiohttp writes a bytes body in one piece; above this (its own 1 MiB mark) it is written from a buffer in chunks,
# the event loop served between them.
_LARGE_BODY_BYTES = 1 << 20


def _request_body(body: dict[str, Any]) -> bytes | io.BytesIO:
    raw = orjson.dumps(body)
    return io.BytesIO(raw) if len(raw) > _LARGE_BODY_BYTES else raw


@dataclass(slots=True)
class Answer:
    """A non-streamed answer: parsed (for accounting), as sent (relayed byte for byte), and the headers to relay."""

    payload: dict[str, Any]
    raw: bytes
    headers: dict[str, str]


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

    @staticmethod
    def preload() -> None:
        """Import now what a failed attempt needs (a long-running server's start): an import on the retry path
        opens files, and failed with EMFILE exactly when the process was out of descriptors. (A Lambda function
        serves one request at a time and keeps its cold start: it imports on first use.)"""
        import tenacity  # noqa: F401

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
            resp = await self.session().post(self.base + path, data=_request_body(body), headers=headers)
        except aiohttp.ClientConnectorError as exc:
            if getattr(exc.os_error, "errno", None) in _NO_DESCRIPTORS:  # ours ran out, not the gateway
                raise Overloaded("The server has no file descriptors left for the call; retry shortly.") from exc
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
            raise RetryableUpstream(error, parse_retry_after(resp.headers.get("Retry-After")))
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
            yield state, chunks(resp, state, self._secrets)
        finally:
            # Closing (not releasing) drops the connection: an abandoned stream stops upstream work.
            if not state.done:
                resp.close()
            else:
                resp.release()

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
