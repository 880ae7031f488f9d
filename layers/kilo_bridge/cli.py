"""`kilo-bridge` command: `serve` runs the local server (the embedded default, port 5000)."""

from __future__ import annotations

import argparse
import os
import sys

from kilo_bridge.config import ConfigError, load_settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from kilo_bridge.app import create_app

    try:
        settings = load_settings(**({"port": args.port} if args.port else {}))
    except ConfigError as exc:
        print(f"kilo-bridge: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings)
    key = "configured" if settings.api_key else "NOT SET (generation answers 503 until KILO_API_KEY is set)"
    print(
        f"kilo-bridge: listening on http://{args.host}:{settings.port}  "
        f"gateway={settings.kilo_gateway_base}  KILO_API_KEY {key}  redis={_safe_url(settings.resolved_redis_url)}",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=settings.port, access_log=args.access_log, log_level="warning",
                timeout_graceful_shutdown=5)
    return 0


def _safe_url(url: str) -> str:
    """A Redis URL without its password, for display."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kilo-bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server (uvicorn)")
    serve.add_argument("--host", default=os.getenv("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=None, help="default: $PORT or 5000")
    serve.add_argument("--access-log", action="store_true", help="log every request (uvicorn access log)")
    serve.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
