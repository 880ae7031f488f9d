"""The base of the API's wire models: camelCase on the wire, snake_case in Python. Each feature package's
`models.py` holds its request and response models; together they are the single source of the API's shape
and of its OpenAPI document (web/openapi.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$"


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are refused, not ignored.

    defer_build: a model's validator and serializer are built on its first use, not at import, so a cold start
    pays only for the models of the route it answers (all of them together cost ~45 ms at import)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", defer_build=True)
