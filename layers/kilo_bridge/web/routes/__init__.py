"""Every HTTP route: one router per module, included here in the order of the OpenAPI document."""

from kilo_bridge.web.routes import (
    admin,
    console,
    generation,
    github,
    jobs,
    me,
    meta,
    metrics,
    openai_compat,
    profiles,
    schedules,
    stats,
    triggers,
)
from kilo_bridge.web.routing import Api

api = Api.include(
    generation.router,
    openai_compat.router,
    jobs.router,
    profiles.router,
    github.router,
    triggers.router,
    schedules.router,
    stats.router,
    me.router,
    admin.router,
    meta.router,
    metrics.router,
    console.router,
)
