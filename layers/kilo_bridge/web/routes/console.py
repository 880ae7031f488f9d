"""The web console: one static page (plain HTML, CSS and JavaScript shipped in the package, no build step)
served at `/` by the app itself, locally and from the API function. The files hold no data: the page calls
the API like any client, with the caller's key in a header, so the shell is public."""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.web.errors import ApiError
from kilo_bridge.web.routing import Api, api_base

router = Api()
STATIC = Path(__file__).resolve().parent.parent / "static"
FILES = {"console.js": "text/javascript", "console.css": "text/css"}
# Only our own files; no inline script or style, no frames, no plugins, nothing posted elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'self'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _file(name: str, media_type: str) -> Response:
    # no-cache (revalidate), not no-store: a new release is seen at once, yet the page loads from cache.
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
    return Response(_read(name), media_type=media_type, headers=headers)


@router.route("GET", "/", summary="The web console", tags=("meta",), auth="public")
async def console(request: Request) -> Response:
    # The page's links and API calls are relative to a <base> at this API's public root: behind API Gateway
    # that carries the stage (`/prod/`), which the browser's own URL may lack (`…/prod` without a slash).
    base = f'<head>\n<base href="{html.escape(api_base(request))}/">'.encode()
    page = _read("index.html").replace(b"<head>", base, 1)
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
    return Response(page, media_type="text/html; charset=utf-8", headers=headers)


@router.route("GET", "/console/{name}", summary="The console's files", tags=("meta",), auth="public", errors=(404,))
async def console_file(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in FILES:
        raise ApiError(404, "not_found", "No such file.")
    return _file(name, FILES[name] + "; charset=utf-8")
