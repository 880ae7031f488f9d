"""Generation: one gateway call between an admission and an accounting round trip to Redis."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import orjson

from kilo_bridge.config import Settings
from kilo_bridge.errors import ApiError, not_configured
from kilo_bridge.gateway import GatewayClient, StreamState
from kilo_bridge.models import GenerateRequest, GenerateResponse, StreamDone, Usage
from kilo_bridge.pricing import NANO, PriceBook
from kilo_bridge.store import Admission, Outcome, Store

log = logging.getLogger("kilo_bridge.generation")


def _usage(usage: dict[str, Any] | None, cost_nusd: int | None) -> Usage:
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(usage.get("total_tokens") or prompt + completion),
        cost_usd=None if cost_nusd is None else float(cost_nusd / NANO),
    )


@dataclass(slots=True)
class UsageRecord:
    """One call's usage, to be written to Redis. A lost record is logged with its numbers, never
    raised: the caller already holds an answer the gateway has charged for."""

    store: Store
    outcome: Outcome
    cost_nusd: int | None
    admission: Admission

    async def __call__(self) -> None:
        try:
            with anyio.CancelScope(shield=True):  # a client hanging up must not lose the record
                await self.store.record(self.outcome, self.cost_nusd, self.admission)
        except ApiError:
            log.error("accounting lost", extra={"outcome": asdict(self.outcome), "cost_nusd": self.cost_nusd})


@dataclass(slots=True)
class OpenStream:
    """An upstream stream whose headers have arrived; iterate `chunks`, then `close()`."""

    state: StreamState
    chunks: AsyncIterator[list[tuple[bytes, dict[str, Any]]]]  # batches: the chunks of one network read
    requested_model: str
    exits: AsyncExitStack
    admission: Admission


class Generation:
    def __init__(self, settings: Settings, gateway: GatewayClient, store: Store, prices: PriceBook) -> None:
        self.settings = settings
        self.gateway = gateway
        self.store = store
        self.prices = prices

    # -- request shaping ---------------------------------------------------------------------------
    def body_for(self, req: GenerateRequest) -> dict[str, Any]:
        if len(req.prompt) + len(req.system or "") > self.settings.max_prompt_chars:
            raise ApiError(
                413, "prompt_too_long", f"prompt and system exceed {self.settings.max_prompt_chars} characters."
            )
        messages = [{"role": "system", "content": req.system}] if req.system else []
        messages.append({"role": "user", "content": req.prompt})
        body: dict[str, Any] = {"model": req.model or self.settings.kilo_default_model, "messages": messages}
        if req.max_tokens is not None:
            body["max_tokens"] = req.max_tokens
        if req.temperature is not None:
            body["temperature"] = req.temperature
        return body

    # -- accounting --------------------------------------------------------------------------------
    async def _admit(self, key_digest: str | None, body: dict[str, Any]) -> Admission:
        if not self.gateway.configured:
            raise not_configured()
        if key_digest and not (body.get("max_tokens") or body.get("max_completion_tokens")):
            # The reservation covers this many output tokens: the upstream must not write more.
            body["max_tokens"] = self.settings.budget_default_max_tokens
        estimate = await self.prices.estimate_nusd(body, self.settings) if key_digest else 0
        return await self.store.admit(key_digest, estimate)

    async def _settle(
        self, admission: Admission, requested: str, model: str, usage: dict[str, Any] | None, *, ok: bool,
        stream: bool, error: ApiError | None = None, produced: bool | None = None,
    ) -> tuple[int | None, UsageRecord]:
        """Price the call; returns (cost, the record still to write). `produced`: the upstream answered
        something (it may have charged), even if the call then failed; defaults to `ok`."""
        cost = await self.prices.cost_nusd((model, requested), usage) if usage else None
        outcome = Outcome(
            model=model or requested,
            ok=ok,
            stream=stream,
            prompt_tokens=int((usage or {}).get("prompt_tokens") or 0),
            completion_tokens=int((usage or {}).get("completion_tokens") or 0),
            credits_exhausted=error is not None and error.code == "credits_exhausted",
            # No price or no usage, but an answer came: the key pays its reservation, never nothing.
            charge_reservation=cost is None and (ok if produced is None else produced),
        )
        return cost, UsageRecord(self.store, outcome, cost, admission)

    async def _account(
        self, admission: Admission, requested: str, model: str, usage: dict[str, Any] | None, *, ok: bool,
        stream: bool, error: ApiError | None = None, produced: bool | None = None,
    ) -> int | None:
        """Price and record the call now; returns its cost."""
        cost, record = await self._settle(admission, requested, model, usage, ok=ok, stream=stream, error=error,
                                          produced=produced)
        await record()
        return cost

    # -- plain -------------------------------------------------------------------------------------
    async def complete(
        self, body: dict[str, Any], key_digest: str | None = None
    ) -> tuple[dict[str, Any], int | None, UsageRecord]:
        """A chat completion after admission: (upstream JSON, cost in nano-USD, the usage record).

        The caller writes the record once the answer is on its way (a Starlette background task): the
        client does not wait for that Redis round trip. Failures are recorded before raising.
        """
        admission = await self._admit(key_digest, body)
        requested = str(body.get("model") or "")
        try:
            payload, _attempts = await self.gateway.complete(body)
        except ApiError as exc:
            await self._account(admission, requested, requested, None, ok=False, stream=False, error=exc)
            raise
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else None
        model = payload.get("model") if isinstance(payload.get("model"), str) else requested
        cost, record = await self._settle(admission, requested, model, usage, ok=True, stream=False)
        return payload, cost, record

    async def generate(
        self, req: GenerateRequest, request_id: str, key_digest: str | None = None
    ) -> tuple[GenerateResponse, UsageRecord]:
        body = self.body_for(req)
        payload, cost, record = await self.complete(body, key_digest)
        choice = payload["choices"][0] if payload["choices"] else {}
        message = choice.get("message") or {}
        content = message.get("content")
        answer = GenerateResponse(
            text=content if isinstance(content, str) else "",
            model=payload.get("model") or body["model"],
            finish_reason=choice.get("finish_reason"),
            usage=_usage(payload.get("usage"), cost),
            request_id=request_id,
        )
        return answer, record

    # -- streamed ----------------------------------------------------------------------------------
    async def open_stream(self, body: dict[str, Any], key_digest: str | None = None) -> OpenStream:
        """Admit and open the upstream stream. Errors here still get a proper HTTP status."""
        admission = await self._admit(key_digest, body)
        requested = str(body.get("model") or "")
        exits = AsyncExitStack()
        try:
            state, chunks = await exits.enter_async_context(self.gateway.stream(body))
        except ApiError as exc:
            await exits.aclose()
            await self._account(admission, requested, requested, None, ok=False, stream=True, error=exc)
            raise
        return OpenStream(state=state, chunks=chunks, requested_model=requested, exits=exits, admission=admission)

    async def finish_stream(self, stream: OpenStream, error: ApiError | None) -> int | None:
        """Close the upstream (dropping it if unfinished) and record what was used, even on failure."""
        with anyio.CancelScope(shield=True):
            await stream.exits.aclose()
            state = stream.state
            return await self._account(
                stream.admission, stream.requested_model, state.model, state.usage,
                ok=error is None and state.done, stream=True, error=error, produced=state.chunks > 0,
            )

    async def stream_events(
        self, req: GenerateRequest, request_id: str, key_digest: str | None = None
    ) -> AsyncIterator[dict[str, str] | list[dict[str, str]]]:
        """Open the stream (errors so far are plain HTTP errors), then relay it as our SSE events."""
        stream = await self.open_stream(self.body_for(req), key_digest)

        def delta(_raw: bytes, chunk: dict[str, Any]) -> dict[str, str] | None:
            texts = [(c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()]
            text = "".join(t for t in texts if isinstance(t, str))
            return {"event": "delta", "data": orjson.dumps({"text": text}).decode()} if text else None

        def done(state: StreamState, cost: int | None) -> dict[str, str]:
            final = StreamDone(
                model=state.model or stream.requested_model,
                finish_reason=state.finish_reason,
                usage=_usage(state.usage, cost),
                request_id=request_id,
            )
            return {"event": "done", "data": final.model_dump_json(by_alias=True)}

        def failed(error: ApiError) -> dict[str, str]:
            return {"event": "error", "data": error.json_bytes(request_id).decode()}

        return self.relay(stream, request_id, delta, done, failed)

    async def relay(
        self,
        stream: OpenStream,
        request_id: str,
        render: Callable[[bytes, dict[str, Any]], dict[str, str] | None],
        done: Callable[[StreamState, int | None], dict[str, str]],
        failed: Callable[[ApiError], dict[str, str]],
    ) -> AsyncIterator[dict[str, str] | list[dict[str, str]]]:
        """Relay each upstream chunk as it arrives; end with `done` or, if the upstream fails, `failed`.

        Usage is recorded whatever happens: success, upstream failure, or the client hanging up
        (the generator is then closed and the upstream connection dropped).
        """
        error: ApiError | None = None
        finished = False
        try:
            try:
                with anyio.fail_after(self.settings.kilo_stream_max_s):
                    async for batch in stream.chunks:
                        events = [e for raw, chunk in batch if (e := render(raw, chunk)) is not None]
                        if events:
                            yield events  # what arrived together leaves together: one write
            except ApiError as exc:
                error = exc
            except TimeoutError:
                error = stream_too_long()
            cost = await self.finish_stream(stream, error)
            finished = True
            if error is not None:
                log.warning("stream failed", extra={"code": error.code, "request_id": request_id})
                yield failed(error)
            else:
                yield done(stream.state, cost)
        finally:
            if not finished:  # the client went away: drop the upstream, still count what it used
                await self.finish_stream(stream, client_gone())


def stream_too_long() -> ApiError:
    return ApiError(504, "stream_too_long", "The stream passed KILO_STREAM_MAX_S and was stopped.")


def client_gone() -> ApiError:
    return ApiError(499, "client_disconnected", "The client disconnected before the stream ended.")
