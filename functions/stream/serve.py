"""The stream function's server (run.sh execs it under the Lambda Web Adapter): the shared ASGI app on uvicorn,
as `uvicorn --factory kilo_bridge.web.app:create_app` would serve it, but imported with the garbage collector
off, as the other handlers are (functions/api/app.py says why), and what the import built frozen."""

from __future__ import annotations

import gc

gc.disable()

import os

import uvicorn

from kilo_bridge.web.app import create_app

app = create_app()

gc.freeze()
gc.enable()


def main() -> None:
    port = int(os.getenv("PORT") or "8080")
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
