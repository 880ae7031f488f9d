"""Prompt templates over a trigger call's JSON body: `{{ body.path.to.field }}` and nothing else.

Not a template language on purpose: no expressions, filters, loops or attribute access, so a template can
read the body and only the body. A path walks object keys (and list indexes); a missing field renders
empty; an object or list renders as compact JSON; `{{ body }}` is the whole body. Substitution is one pass:
a value that itself looks like `{{ … }}` stays text. The output is capped.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from kilo_bridge.errors import invalid

# Anything between double braces; the grammar below decides whether it is a placeholder we know.
_ANY = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PLACEHOLDER = re.compile(r"\s*body((?:\.[A-Za-z0-9_-]{1,100}){0,16})\s*")
MAX_TEMPLATE = 10_000
MAX_RENDERED = 20_000  # RunAgentRequest's prompt cap


def check(template: str) -> None:
    """Refuse a template with a `{{ … }}` that is not a body path (at creation, not at the first call)."""
    if len(template) > MAX_TEMPLATE:
        raise invalid("promptTemplate", f"at most {MAX_TEMPLATE} characters")
    for match in _ANY.finditer(template):
        if not _PLACEHOLDER.fullmatch(match.group(1)):
            raise invalid("promptTemplate", f"{match.group(0)[:60]!r}: only {{{{ body.field.path }}}} is allowed")


def _lookup(body: Any, path: str) -> Any:
    node = body
    for part in path.split(".")[1:]:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def render(template: str, body: Any) -> str:
    def place(match: re.Match[str]) -> str:
        found = _PLACEHOLDER.fullmatch(match.group(1))
        if found is None:  # checked at creation; kept as text should one slip through
            return match.group(0)
        return _text(_lookup(body, found.group(1)))

    return _ANY.sub(place, template)[:MAX_RENDERED]
