"""The agent's one door out, served by its runner for the length of the agent's run.

- Its model endpoint: the bridge's own `/v1` inference routes (web.app `create_door_app`: the same admission,
  job key, cost cap and metering as the server's `/v1`, one implementation) on uvicorn in this process, open to
  the job's key alone. The Kilo key stays here; the agent holds only its job key. No per-call limit below the
  job's own timeout: the upstream waits as long as the job may run; a call the job's end cuts is charged.
- For agents whose network is `allowlist`: the egress proxy (agent_task/proxy.py).
- A deploy's command (agent_task/stages/deploy.py) gets a door of its own: no model endpoint (no job key), and
  a proxy whose allow-list is the deploy's hosts alone.

Under bubblewrap (no network of its own: `--unshare-net`) both listen on unix sockets in a private directory
of the runner's, each bound alone into the sandbox, where socat forwarders put them on the sandbox's own
loopback (the CLI's provider and HTTP_PROXY need TCP URLs). As its own user (Fargate) or unsandboxed they
listen on 127.0.0.1 directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import shutil
import socket
import tempfile
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from agent_task.context import JobContext
from agent_task.proxy import EgressProxy
from kilo_bridge.config import Settings
from kilo_bridge.jobs.egress import EgressRules
from kilo_bridge.observability import get_logger

if TYPE_CHECKING:
    from kilo_bridge.services import Services

logger = get_logger()
# Inside the sandbox (its own network namespace: fixed ports cannot clash with anything).
MODEL_PORT = 4000
PROXY_PORT = 3128
INSIDE = "/run/kilo-door"
# A settled job must not wait long for a connection the agent's end left open.
SHUTDOWN_GRACE_S = 5


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        yield  # the runner's signals stay the runner's (uvicorn would take SIGTERM for itself)


@dataclass(slots=True)
class Opened:
    """Where the agent finds the door: URLs as the agent sees them; sockets to bind into its sandbox."""

    model_url: str
    proxy_url: str | None
    binds: dict[str, str] = field(default_factory=dict)  # host path → path inside the sandbox
    forwards: list[tuple[int, str]] = field(default_factory=list)  # (loopback port, socket inside)

    def env(self) -> dict[str, str]:
        if self.proxy_url is None:
            return {}
        return {
            name: self.proxy_url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")
        } | {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}  # the model endpoint, not through the proxy

    def launch(self, argv: list[str]) -> list[str]:
        """argv started behind the socat forwarders, once they listen (the sandbox's /proc/net/tcp says so)."""
        if not self.forwards:
            return argv
        lines = []
        for port, sock in self.forwards:
            lines.append(
                f"socat TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,nodelay UNIX-CONNECT:{shlex.quote(sock)} "
                "</dev/null >/dev/null 2>&1 &"
            )
        for port, _ in self.forwards:
            hexport = f":{port:04X} 00000000:0000 0A"
            lines.append(f"n=0; until grep -q '{hexport}' /proc/net/tcp; do n=$((n+1)); [ $n -gt 500 ] && exit 97;")
            lines.append("sleep 0.01; done")
        lines.append('exec "$@"')
        return ["/bin/sh", "-c", "\n".join(lines), "kb-door", *argv]


class Door:
    def __init__(
        self, ctx: JobContext, job_key: str, network: str, tcp: bool, rules: EgressRules | None = None
    ) -> None:
        """`job_key` "": no model endpoint; `rules`: the proxy's allow-list (else AGENT_EGRESS_ALLOW's)."""
        self.ctx, self.job_key, self.network, self.tcp = ctx, job_key, network, tcp
        self.rules = rules
        self.proxy: EgressProxy | None = None
        self._dir: Path | None = None
        self._server: _Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._proxy_server: asyncio.Server | None = None
        self._services: Services | None = None

    @property
    def denied(self) -> int:
        return self.proxy.denied if self.proxy else 0

    def _listener(self, name: str) -> socket.socket:
        if self.tcp:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
        else:
            assert self._dir is not None
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(self._dir / name))
        sock.listen(128)
        sock.setblocking(False)
        return sock

    def _where(self, sock: socket.socket, name: str, port: int, opened: Opened) -> str:
        if self.tcp:
            return f"http://127.0.0.1:{sock.getsockname()[1]}"
        inside = f"{INSIDE}/{name}"
        opened.binds[str(sock.getsockname())] = inside
        opened.forwards.append((port, inside))
        return f"http://127.0.0.1:{port}"

    async def open(self) -> Opened:
        from kilo_bridge.web.app import create_door_app

        if not self.tcp:
            # Short (a unix socket's path has 108 bytes), 0700 and the runner's: nothing else on the host sees it.
            self._dir = Path(tempfile.mkdtemp(prefix="kb-door-"))
        opened = Opened("", None)
        if self.job_key:
            model_sock = self._listener("model.sock")
            app = create_door_app(self._settings(), self.job_key)
            self._services = app.state.services
            config = uvicorn.Config(
                app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=SHUTDOWN_GRACE_S
            )
            self._server = _Server(config)
            self._serving = asyncio.create_task(self._server.serve(sockets=[model_sock]))
            opened.model_url = self._where(model_sock, "model.sock", MODEL_PORT, opened) + "/v1"
        if self.network == "allowlist":
            self.proxy = EgressProxy(self.rules or EgressRules.of(self.ctx.settings), self._refused)
            proxy_sock = self._listener("proxy.sock")
            if self.tcp:
                self._proxy_server = await asyncio.start_server(self.proxy.handle, sock=proxy_sock)
            else:
                self._proxy_server = await asyncio.start_unix_server(self.proxy.handle, sock=proxy_sock)
            opened.proxy_url = self._where(proxy_sock, "proxy.sock", PROXY_PORT, opened)
        while self._server is not None and not self._server.started:  # listening already; the app loads
            assert self._serving is not None
            if self._serving.done():
                self._serving.result()
                raise RuntimeError("the model endpoint did not start")
            await asyncio.sleep(0.005)
        return opened

    def _settings(self) -> Settings:
        """The job's timeout is the only limit on a model call (past it, the job's end cuts the call)."""
        st, ctx = self.ctx.settings, self.ctx
        left_s = max(1.0, ctx.deadline - asyncio.get_running_loop().time()) + 30
        return st.replace(
            kilo_timeout_ms=int(max(st.kilo_timeout_ms, min(left_s * 1000, 3_700_000))),
            kilo_stream_max_s=int(max(st.kilo_stream_max_s, min(left_s, 3600))),
        )

    async def _refused(self, host: str, port: int, why: str) -> None:
        await self.ctx.log.line("egress", f"refused {host}:{port}: {why}", level="warn")

    async def close(self) -> None:
        """Stop serving; the calls still open (the agent is gone) are settled before this returns."""
        if self._proxy_server is not None:
            self._proxy_server.close()
            if self.proxy is not None:
                await self.proxy.close()
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            try:
                await self._serving
            except Exception as exc:  # the job ends all the same
                logger.warning("model endpoint stop failed", extra={"job_id": self.ctx.job_id, "error": str(exc)})
        if self._services is not None:
            await self._services.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
