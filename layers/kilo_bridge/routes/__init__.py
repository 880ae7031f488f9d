"""All HTTP routes, registered on one route table (`api`) that also feeds the OpenAPI document."""

from kilo_bridge.routing import Api

api = Api()

# Registration happens on import; the order is the order of the OpenAPI document.
from kilo_bridge.routes import generation, openai_compat, jobs, stats, admin, meta  # noqa: E402, F401, I001
