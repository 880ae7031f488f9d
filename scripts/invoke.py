"""`make invoke FN=<function> EVENT=<file>`: run a Lambda handler on an event on this machine, without
Docker, against the Redis and AWS endpoints the environment names (the same event files work with
`sam local invoke <Function> -e <file>` where Docker exists).

FN is a folder under functions/ (api, dispatcher, finalizer, scheduled, stream) or a template logical id
(ApiFunction, DispatcherFunction, FinalizerFunction, ScheduledFunction, StreamFunction).

`stream` has no Python handler: on Lambda the Web Adapter turns each event into an HTTP request to the app
under uvicorn (functions/stream/run.sh) and streams the answer back. Here the same: the app on a loopback
uvicorn, the event sent to it as the adapter sends it, and the answer printed as it arrives (the SSE).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ALIASES = {
    "ApiFunction": "api",
    "DispatcherFunction": "dispatcher",
    "FinalizerFunction": "finalizer",
    "ScheduledFunction": "scheduled",
    "StreamFunction": "stream",
}
# The stream function's own timeout (template.yaml): a stream never outlives it.
STREAM_TIMEOUT_S = 900.0


@dataclass
class Context:
    """The parts of Lambda's context object our handlers (and Powertools) read."""

    function_name: str = "local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local"
    aws_request_id: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def load_function(function: str) -> ModuleType:
    """functions/<name>/app.py imported fresh from this environment, as at a Lambda cold start."""
    name = ALIASES.get(function, function)
    path = ROOT / "functions" / name / "app.py"
    if not path.is_file():
        raise SystemExit(f"no handler at {path} (FN is one of: {', '.join(sorted(ALIASES.values()))})")
    spec = importlib.util.spec_from_file_location(f"{name}_function_{uuid.uuid4().hex[:8]}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def invoke(function: str, event: dict[str, Any]) -> object:
    if ALIASES.get(function, function) == "stream":
        return invoke_stream(event)
    module = load_function(function)
    return module.handler(event, Context(function_name=function, aws_request_id=str(uuid.uuid4())))


@contextmanager
def _adapter_env() -> Iterator[None]:
    """The environment the Lambda Web Adapter runs the app in (template.yaml, StreamFunction)."""
    saved = os.environ.get("AWS_LAMBDA_EXEC_WRAPPER")
    os.environ["AWS_LAMBDA_EXEC_WRAPPER"] = "/opt/bootstrap"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("AWS_LAMBDA_EXEC_WRAPPER", None)
        else:
            os.environ["AWS_LAMBDA_EXEC_WRAPPER"] = saved


@contextmanager
def _serve_stream_app() -> Iterator[str]:
    """The app as functions/stream/run.sh starts it (a fresh cold start), on a free loopback port."""
    import uvicorn

    from kilo_bridge.web.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(), log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("the stream app did not start (see the log above)")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def adapter_request(event: dict[str, Any]) -> dict[str, Any]:
    """An API Gateway REST event as the adapter forwards it: the event's path and query, its headers (Host
    included) plus `x-amzn-request-context`, the body decoded."""
    headers = [(k, v) for k, vs in (event.get("multiValueHeaders") or {}).items() for v in vs] or list(
        (event.get("headers") or {}).items()
    )
    headers = [(k, v) for k, v in headers if k.lower() not in ("x-amzn-request-context", "content-length")]
    headers.append(("x-amzn-request-context", json.dumps(event.get("requestContext") or {})))
    query = [(k, v) for k, vs in (event.get("multiValueQueryStringParameters") or {}).items() for v in vs]
    body = event.get("body") or ""
    content = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    return {
        "method": event["httpMethod"],
        "url": event["path"],
        "params": query,
        "headers": headers,
        "content": content,
    }


def invoke_stream(event: dict[str, Any], emit: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the stream app on one event; `emit` gets each piece of the body as it arrives."""
    import httpx

    with _adapter_env(), _serve_stream_app() as url, httpx.Client(base_url=url, timeout=STREAM_TIMEOUT_S) as client:
        chunks: list[str] = []
        with client.stream(**adapter_request(event)) as response:
            if emit:
                emit(
                    f"HTTP {response.status_code}\n"
                    + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
                    + "\n"
                )
            for text in response.iter_text():
                chunks.append(text)
                if emit:
                    emit(text)
        return {"statusCode": response.status_code, "headers": dict(response.headers), "body": "".join(chunks)}


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    event = json.loads(Path(argv[1]).read_text())
    if ALIASES.get(argv[0], argv[0]) == "stream":
        invoke_stream(event, _write)
        return 0
    print(json.dumps(invoke(argv[0], event), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
