"""Generation: one gateway call between an admission and an accounting round trip to Redis.

Streams come out as typed events (`Chunks`, then `Done` or `Failed`); how they are framed on the wire
(our `delta`/`done` events, or OpenAI's `data:` chunks) is the web layer's business.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import anyio

from kilo_bridge import metrics
from kilo_bridge.config import Settings
from kilo_bridge.errors import BridgeError, InvalidInput
from kilo_bridge.gateway.apis import CHAT, InferenceApi, chat_usage, token_cap
from kilo_bridge.gateway.client import Answer, GatewayClient
from kilo_bridge.gateway.errors import GatewayError, GatewayNotConfigured
from kilo_bridge.gateway.pricing import PriceBook
from kilo_bridge.gateway.stream import Chunk, StreamState
from kilo_bridge.generation.models import GenerateRequest, GenerateResponse, StreamDone, Usage
from kilo_bridge.money import usd
from kilo_bridge.usage.ledger import Admission, Ledger, Outcome

log = logging.getLogger("kilo_bridge.generation")


def _usage(usage: dict[str, Any] | None, cost_nusd: int | None) -> Usage:
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(usage.get("total_tokens") or prompt + completion),
        cost_usd=None if cost_nusd is None else usd(cost_nusd),
    )


@dataclass(slots=True)
class UsageRecord:
    """One call's usage, to be written to Redis. Never raised: the caller already holds an answer the gateway has
    charged for; what Redis refuses goes to the ledger's spool and is written when Redis answers."""

    ledger: Ledger
    outcome: Outcome
    cost_nusd: int | None
    admission: Admission
    written: bool = False
    # The usage came but no price list (its fetch failed): priced again when the record is written, from that usage.
    reprice: Callable[[], Awaitable[int | None]] | None = None

    async def __call__(self) -> None:
        if self.written:  # once: the ledger counts an admission once anyway, this saves the round trip
            return
        self.written = True
        with anyio.CancelScope(shield=True):  # a client hanging up must not lose the record
            if self.cost_nusd is None and self.reprice is not None:
                self.cost_nusd = await self.reprice()
                if self.cost_nusd is not None:
                    self.outcome = replace(self.outcome, charge_reservation=False)
            await self.ledger.settle(self.outcome, self.cost_nusd, self.admission)


@dataclass(slots=True)
class OpenStream:
    """An upstream stream whose headers have arrived; iterate `chunks`, then `close()`."""

    state: StreamState
    chunks: AsyncIterator[list[Chunk]]  # batches: the chunks of one network read
    requested_model: str
    exits: AsyncExitStack
    admission: Admission
    # The usage record, once the stream has ended (`relay`); written by `write_usage` after the last event left,
    # as a plain answer's record is written after the answer: no client waits for that round trip.
    record: UsageRecord | None = None

    # Set by `open_stream`: settles the stream when its relay never ran (the client left before the first event).
    generation: Generation | None = None

    async def write_usage(self) -> None:
        if self.record is None and self.generation is not None:
            gone = ClientGone("The client disconnected before the stream began.")
            _cost, self.record = await self.generation.settle_stream(self, gone)
        if self.record is not None:
            await self.record()


class PromptTooLong(InvalidInput, code="prompt_too_long"):
    """The prompt and system message pass MAX_PROMPT_CHARS."""


def prompt_rules(settings: Settings) -> dict[str, dict[str, object]]:
    """MAX_PROMPT_CHARS for the OpenAPI document: each of the two at most that (their sum is in words)."""
    most: dict[str, object] = {"maxLength": settings.max_prompt_chars}
    return {"GenerateRequest.prompt": most, "GenerateRequest.system": most}


class StreamTooLong(BridgeError, code="stream_too_long"):
    """A stream ran past KILO_STREAM_MAX_S and was stopped."""


class ClientGone(BridgeError, code="client_disconnected"):
    """The client hung up mid-stream (only recorded: nobody is left to tell)."""


@dataclass(slots=True)
class Chunks:
    """The chunks one upstream read brought, each as (raw SSE data, parsed JSON)."""

    items: list[Chunk]


@dataclass(slots=True)
class Deltas:
    """The text deltas one upstream read brought (empty deltas left out)."""

    texts: list[str]


@dataclass(slots=True)
class Done:
    state: StreamState
    cost_nusd: int | None


@dataclass(slots=True)
class Failed:
    error: BridgeError


class Generation:
    def __init__(self, settings: Settings, gateway: GatewayClient, ledger: Ledger, prices: PriceBook) -> None:
        self.settings = settings
        self.gateway = gateway
        self.ledger = ledger
        self.prices = prices

    # -- request shaping ---------------------------------------------------------------------------
    def body_for(self, req: GenerateRequest) -> dict[str, Any]:
        if len(req.prompt) + len(req.system or "") > self.settings.max_prompt_chars:
            limit = f"together at most {self.settings.max_prompt_chars} characters"
            raise PromptTooLong(f"prompt and system: {limit}.", details=[{"field": "prompt", "message": limit}])
        messages = [{"role": "system", "content": req.system}] if req.system else []
        messages.append({"role": "user", "content": req.prompt})
        body: dict[str, Any] = {"model": req.model or self.settings.kilo_default_model, "messages": messages}
        if req.max_tokens is not None:
            body["max_tokens"] = req.max_tokens
        if req.temperature is not None:
            body["temperature"] = req.temperature
        return body

    # -- accounting --------------------------------------------------------------------------------
    async def _admit(self, key_digest: str | None, body: dict[str, Any], api: InferenceApi = CHAT) -> Admission:
        if not self.gateway.configured:
            raise GatewayNotConfigured()
        if key_digest and api.token_cap and not token_cap(api, body):
            # The reservation covers this many output tokens: the upstream must not write more.
            body[api.token_cap] = self.settings.budget_default_max_tokens
        estimate = await self.prices.estimate_nusd(body, self.settings, api) if key_digest else 0
        return await self.ledger.admit(key_digest, estimate, str(body.get("model") or ""))

    async def _settle(
        self,
        admission: Admission,
        requested: str,
        model: str,
        usage: dict[str, Any] | None,
        *,
        ok: bool,
        stream: bool,
        error: BridgeError | None = None,
        produced: bool | None = None,
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
            error_code=error.code if error is not None else "",
            # No price or no usage, but an answer came: the key pays its reservation, never nothing.
            charge_reservation=cost is None and (ok if produced is None else produced),
        )
        reprice = None
        if cost is None and usage:
            models = (model, requested)
            reprice = partial(self.prices.cost_when_priced, models, usage)
        return cost, UsageRecord(self.ledger, outcome, cost, admission, reprice=reprice)

    async def _account(self, *args: Any, **kwargs: Any) -> int | None:
        """Price and record the call now (`_settle`'s arguments); returns its cost."""
        cost, record = await self._settle(*args, **kwargs)
        await record()
        return cost

    # -- plain -------------------------------------------------------------------------------------
    async def complete(
        self,
        body: dict[str, Any],
        key_digest: str | None = None,
        retries: bool = True,
        api: InferenceApi = CHAT,
        headers: dict[str, str] | None = None,
        query: str = "",
    ) -> tuple[Answer, int | None, UsageRecord]:
        """One call of `api` after admission: (the upstream's answer, cost in nano-USD, the usage record).

        The caller writes the record once the answer is on its way (a Starlette background task): the
        client does not wait for that Redis round trip. Failures are recorded before raising.
        """
        admission = await self._admit(key_digest, body, api)
        requested = str(body.get("model") or "")
        answered = False
        started = time.perf_counter()
        try:
            answer = await self.gateway.complete(body, retries, api, headers, query)
            metrics.upstream_s(time.perf_counter() - started)
            answered = True
            payload = answer.payload
            usage = chat_usage(api, payload.get("usage"))
            model = payload["model"] if isinstance(payload.get("model"), str) else requested
            cost, record = await self._settle(admission, requested, model, usage, ok=True, stream=False)
        except BaseException as exc:  # every admitted call is settled, whatever failed (a cancel included)
            failure = _as_error(exc)
            # An answer that came (and was billed) but could not be read is charged its reservation.
            await self._account(
                admission, requested, requested, None, ok=False, stream=False, error=failure, produced=answered
            )
            raise
        return answer, cost, record

    async def generate(
        self, req: GenerateRequest, request_id: str, key_digest: str | None = None
    ) -> tuple[GenerateResponse, UsageRecord]:
        body = self.body_for(req)
        upstream, cost, record = await self.complete(body, key_digest)
        try:
            payload = upstream.payload
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
        except BaseException:
            await record()  # the upstream answered (and billed): counted even if we cannot pass it on
            raise
        return answer, record

    # -- streamed ----------------------------------------------------------------------------------
    async def open_stream(
        self,
        body: dict[str, Any],
        key_digest: str | None = None,
        retries: bool = True,
        api: InferenceApi = CHAT,
        headers: dict[str, str] | None = None,
        query: str = "",
    ) -> OpenStream:
        """Admit and open the upstream stream. Errors here still get a proper HTTP status."""
        admission = await self._admit(key_digest, body, api)
        requested = str(body.get("model") or "")
        exits = AsyncExitStack()
        try:
            state, chunks = await exits.enter_async_context(self.gateway.stream(body, retries, api, headers, query))
        except BaseException as exc:  # every admitted call is settled, whatever failed (a cancel included)
            with anyio.CancelScope(shield=True):
                await exits.aclose()
            await self._account(admission, requested, requested, None, ok=False, stream=True, error=_as_error(exc))
            raise
        return OpenStream(
            state=state, chunks=chunks, requested_model=requested, exits=exits, admission=admission, generation=self
        )

    async def settle_stream(self, stream: OpenStream, error: BridgeError | None) -> tuple[int | None, UsageRecord]:
        """Close the upstream (dropping it if unfinished) and price what was used, even on failure: (cost, the
        record still to write)."""
        with anyio.CancelScope(shield=True):
            await stream.exits.aclose()
            state = stream.state
            settled = await self._settle(
                stream.admission,
                stream.requested_model,
                state.model,
                chat_usage(state.api, state.usage),
                ok=error is None and state.done,
                stream=True,
                error=error,
                produced=state.chunks > 0,
            )
        return settled

    async def _drain(self, stream: OpenStream) -> None:
        """Read what is left of an upstream stream nobody will see, for at most STREAM_DRAIN_S: its final chunk has
        the usage the gateway bills, so the key, the stats and the credits are charged what it really cost rather
        than an estimate (or nothing)."""
        if stream.state.done:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.settings.stream_drain_s):
            try:
                async for _batch in stream.chunks:
                    pass
            except (GatewayError, StopAsyncIteration, RuntimeError):
                pass  # the stream broke, or its reader had already ended: what was read is what we know

    async def stream_events(
        self, req: GenerateRequest, key_digest: str | None = None
    ) -> tuple[OpenStream, AsyncGenerator[Deltas | Done | Failed]]:
        """Open the stream (errors so far are raised), then its text deltas as they arrive."""
        stream = await self.open_stream(self.body_for(req), key_digest)

        async def deltas() -> AsyncGenerator[Deltas | Done | Failed]:
            events = self.relay(stream)
            try:
                async for event in events:
                    if isinstance(event, Chunks):
                        texts = [t for _raw, chunk, _name in event.items if (t := _text(chunk))]
                        if texts:
                            yield Deltas(texts)
                    else:
                        yield event
            finally:
                await events.aclose()  # closing this closes the relay: its cleanup records the usage

        return stream, deltas()

    async def relay(self, stream: OpenStream) -> AsyncGenerator[Chunks | Done | Failed]:
        """Each upstream read's chunks as they arrive; then `Done` or, if the upstream fails, `Failed`.

        Usage is recorded whatever happens: on success or upstream failure by `stream.write_usage()`, which the
        consumer calls once the last event is out; if the client hangs up first (the generator is then closed and
        the upstream connection dropped), here.
        """
        error: BridgeError | None = None
        handed_on = False
        try:
            try:
                with anyio.fail_after(self.settings.kilo_stream_max_s):
                    async for batch in stream.chunks:
                        if batch:
                            yield Chunks(batch)  # what arrived together leaves together: one write
                        if stream.state.failure is not None:
                            raise stream.state.failure
            except GatewayError as exc:
                error = exc
                await self._drain(stream)  # the usage billed after a chunk we refused is still counted
            except TimeoutError:
                error = StreamTooLong("The stream passed KILO_STREAM_MAX_S and was stopped.")
            cost, stream.record = await self.settle_stream(stream, error)
            handed_on = True
            if error is not None:
                log.warning("stream failed", extra={"code": error.code})
                yield Failed(error)
            else:
                yield Done(stream.state, cost)
        finally:
            if not handed_on:  # the client went away: read on to the upstream's usage (bounded), then drop it
                await self._drain(stream)
                gone = ClientGone("The client disconnected before the stream ended.")
                _cost, stream.record = await self.settle_stream(stream, gone)
                await stream.record()


def stream_done(stream: OpenStream, done: Done, request_id: str) -> StreamDone:
    """The final event of `/api/kilo/generate-stream`."""
    return StreamDone(
        model=done.state.model or stream.requested_model,
        finish_reason=done.state.finish_reason,
        usage=_usage(done.state.usage, done.cost_nusd),
        request_id=request_id,
    )


def _as_error(exc: BaseException) -> BridgeError:
    """What a settlement records as the reason a call failed."""
    if isinstance(exc, BridgeError):
        return exc
    if isinstance(exc, (anyio.get_cancelled_exc_class(), GeneratorExit)):
        return ClientGone("The request was abandoned before the call ended.")
    return BridgeError("The call failed inside the server.", code="internal_error")


def _text(chunk: dict[str, Any]) -> str:
    texts = [(c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()]
    return "".join(t for t in texts if isinstance(t, str))
