"""Scheduled agent runs: create, list, show, pause, resume and delete an API key's schedules."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from kilo_bridge.platform.clock import iso
from kilo_bridge.schedules.cron import next_run
from kilo_bridge.schedules.models import SCHEDULE_ID, ScheduleCreate, ScheduledRun, ScheduleList, ScheduleView
from kilo_bridge.schedules.service import ScheduleNotFound, ScheduleService
from kilo_bridge.schedules.store import StoredSchedule
from kilo_bridge.web.routes.jobs import caller
from kilo_bridge.web.routing import Api, services

router = Api(path_params={"id": {"type": "string", "pattern": SCHEDULE_ID}})
SCHEDULE_PATH = "/api/kilo/schedules/{id}"
_ID = re.compile(SCHEDULE_ID)


def schedules(request: Request) -> ScheduleService:
    return services(request).schedules


def _id(request: Request) -> str:
    schedule_id: str = request.path_params["id"]
    if not _ID.fullmatch(schedule_id):
        raise ScheduleNotFound()
    return schedule_id


def _view(s: StoredSchedule) -> ScheduleView:
    enabled = s.state == "enabled"
    return ScheduleView(
        id=s.id,
        name=s.name,
        cron=s.cron,
        timezone=s.tz,
        state="enabled" if enabled else "paused",
        run=ScheduledRun.model_validate(s.run),
        next_run_at=next_run(s.cron, s.tz).isoformat() if enabled else None,
        created_at=iso(s.created_ms) or "",
    )


@router.route(
    "POST",
    "/api/kilo/schedules",
    summary="Schedule an agent run (cron and time zone, at most every 10 minutes)",
    tags=("schedules",),
    body=ScheduleCreate,
    response=ScheduleView,
    status=201,
    errors=(401, 409, 422, 503),
    description="Each firing starts the run as this key (its budget and maxJobs apply). The run takes no "
    "`profileEnv`: name a saved `profile` for its secrets.",
    audit="schedule.create",
)
async def create_schedule(request: Request, body: ScheduleCreate) -> ScheduleView:
    return _view(await schedules(request).create(caller(request), body))


@router.route(
    "GET",
    "/api/kilo/schedules",
    summary="This key's schedules",
    tags=("schedules",),
    response=ScheduleList,
    errors=(503,),
)
async def list_schedules(request: Request) -> ScheduleList:
    return ScheduleList(schedules=[_view(s) for s in await schedules(request).all(caller(request))])


@router.route("GET", SCHEDULE_PATH, summary="A schedule", tags=("schedules",), response=ScheduleView, errors=(404, 503))
async def get_schedule(request: Request) -> ScheduleView:
    return _view(await schedules(request).get(caller(request), _id(request)))


@router.route(
    "POST",
    SCHEDULE_PATH + "/pause",
    summary="Pause a schedule (it fires no more until resumed)",
    tags=("schedules",),
    response=ScheduleView,
    errors=(404, 503),
    audit="schedule.pause",
)
async def pause_schedule(request: Request) -> ScheduleView:
    return _view(await schedules(request).set_state(caller(request), _id(request), "paused"))


@router.route(
    "POST",
    SCHEDULE_PATH + "/resume",
    summary="Resume a paused schedule",
    tags=("schedules",),
    response=ScheduleView,
    errors=(404, 503),
    audit="schedule.resume",
)
async def resume_schedule(request: Request) -> ScheduleView:
    return _view(await schedules(request).set_state(caller(request), _id(request), "enabled"))


@router.route(
    "DELETE",
    SCHEDULE_PATH,
    summary="Delete a schedule",
    tags=("schedules",),
    status=204,
    errors=(404, 503),
    audit="schedule.delete",
)
async def delete_schedule(request: Request) -> Response:
    await schedules(request).delete(caller(request), _id(request))
    return Response(status_code=204)
