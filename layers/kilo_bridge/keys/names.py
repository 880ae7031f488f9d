"""What a key's fields may hold, as plain constants: the store's checks and the API models' schemas read the
same ones, so the OpenAPI document states the rules the store enforces."""

from __future__ import annotations

NAME = r"^[A-Za-z0-9_-]{1,64}$"  # a key's name and a team's
# A model id, or `provider/*` (every model of a provider): a `*` only as the whole last segment.
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]*(/[A-Za-z0-9._:@+-]+)*(/\*)?$"
MODEL_PATTERN_MAX = 200
MAX_MODELS = 100
# Budgets are kept in nano-USD, where 0 means "none": the smallest budget is one nano-USD.
MIN_BUDGET_USD = 1e-9
