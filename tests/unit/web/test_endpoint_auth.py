"""An endpoint's `auth` is one of the four kinds: a misspelt one fails where the route is declared, instead of
serving the route to anybody (no branch of the endpoint app would check it)."""

from __future__ import annotations

from typing import get_args

import pytest
from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.web.routing import Api, Auth


async def _handler(_request: Request) -> Response:
    return Response()


def test_a_misspelt_auth_is_refused_when_the_route_is_declared() -> None:
    router = Api()
    with pytest.raises(ValueError, match="auth must be one of"):
        router.route("GET", "/x", summary="x", auth="keys")(_handler)
    assert not router.endpoints


@pytest.mark.parametrize("auth", get_args(Auth))
def test_each_kind_is_accepted(auth: str) -> None:
    router = Api()
    router.route("GET", "/x", summary="x", auth=auth)(_handler)
    assert router.endpoints[0].auth == auth
