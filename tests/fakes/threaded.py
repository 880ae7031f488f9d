"""The plumbing of our fake servers: an aiohttp app on 127.0.0.1 (`AiohttpApp`), and running a fake in
its own event-loop thread for synchronous tests (`ServerThread`: `with FakeX() as fake: ...`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web


class AiohttpApp:
    """Serves `app()` on host:port (0: a free port, known after `start()`)."""

    host = "127.0.0.1"
    port = 0
    backlog = 128
    _runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=self.backlog)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class ServerThread:
    """Mixed into a class with `start()`/`stop()` coroutines (e.g. an `AiohttpApp`)."""

    # What the class it is mixed into provides (declared only: no attribute here to shadow theirs).
    start: Callable[[], Coroutine[Any, Any, object]]
    stop: Callable[[], Coroutine[Any, Any, object]]

    def __enter__(self) -> Any:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
