"""Saved profiles: create, list, show, rotate and delete an API key's named job variables (names only out)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.profiles.models import PROFILE_NAME, ProfileCreate, ProfileList, ProfileRotate, ProfileView
from kilo_bridge.profiles.service import ProfileNotFound, ProfileService
from kilo_bridge.web.routes.jobs import caller
from kilo_bridge.web.routing import Api, services

router = Api(path_params={"name": {"type": "string", "pattern": PROFILE_NAME}})
PROFILE_PATH = "/api/kilo/profiles/{name}"
_NAME = re.compile(PROFILE_NAME)


def profiles(request: Request) -> ProfileService:
    return services(request).profiles


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not _NAME.fullmatch(name):
        raise ProfileNotFound()  # no profile could have this name
    return name


@router.route(
    "POST",
    "/api/kilo/profiles",
    summary="Save a profile (named job variables, sealed at rest)",
    tags=("profiles",),
    body=ProfileCreate,
    response=ProfileView,
    status=201,
    errors=(401, 409, 422, 503),
    description="A run names it as `profile`; its own `profileEnv` wins over the profile's values. The values "
    "are never returned: the API shows the variable names only.",
    audit="profile.create",
)
async def create_profile(request: Request, body: ProfileCreate) -> ProfileView:
    return await profiles(request).create(caller(request), body.name, body.env, body.setup)


@router.route(
    "GET", "/api/kilo/profiles", summary="This key's profiles", tags=("profiles",), response=ProfileList, errors=(503,)
)
async def list_profiles(request: Request) -> ProfileList:
    return ProfileList(profiles=await profiles(request).list(caller(request)))


@router.route(
    "GET",
    PROFILE_PATH,
    summary="A profile (its variable names)",
    tags=("profiles",),
    response=ProfileView,
    errors=(404, 503),
)
async def get_profile(request: Request) -> ProfileView:
    return await profiles(request).get(caller(request), _name(request))


@router.route(
    "PUT",
    PROFILE_PATH,
    summary="Rotate a profile: replace all its values",
    tags=("profiles",),
    body=ProfileRotate,
    response=ProfileView,
    errors=(404, 422, 503),
    description="A variable left out is removed. Jobs already queued keep the values they were given.",
    audit="profile.rotate",
)
async def rotate_profile(request: Request, body: ProfileRotate) -> ProfileView:
    return await profiles(request).rotate(caller(request), _name(request), body.env, body.setup)


@router.route(
    "DELETE",
    PROFILE_PATH,
    summary="Delete a profile",
    tags=("profiles",),
    status=204,
    errors=(404, 503),
    audit="profile.delete",
)
async def delete_profile(request: Request) -> Response:
    await profiles(request).delete(caller(request), _name(request))
    return Response(status_code=204)
