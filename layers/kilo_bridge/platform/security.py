"""Secret hygiene: scrub known secret values from text — as written, URL-encoded and base64-encoded (at any
alignment, so a secret inside a longer base64 blob, such as a Basic auth header, is found too)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
_MIN_SECRET_LEN = 6  # shorter values would redact ordinary words
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _b64_forms(raw: bytes) -> set[str]:
    forms = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift in range(3):
            enc = encode(b"\0" * shift + raw).decode().rstrip("=")
            # Drop the characters the prefix and an unknown suffix could change.
            start = (shift * 8 + 5) // 6 if shift else 0
            tail = len(enc) - ((len(raw) + shift) * 8 // 6) if (len(raw) + shift) % 3 else 0
            core = enc[start : len(enc) - tail - (1 if (len(raw) + shift) % 3 else 0)]
            if len(core) >= _MIN_SECRET_LEN:
                forms.add(core)
    return forms


def secret_forms(secret: str) -> set[str]:
    """The ways a secret shows up in text: as is, URL-encoded, and base64 at any alignment."""
    out = {secret, quote(secret, safe=""), quote_plus(secret)}
    out |= _b64_forms(secret.encode())
    return {v for v in out if len(v) >= _MIN_SECRET_LEN}


class Redactor:
    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = [s for s in secrets if s]
        forms: set[str] = set()
        for s in self._secrets:
            if s and len(s) >= _MIN_SECRET_LEN:
                forms |= secret_forms(s)
        ordered = sorted(forms, key=len, reverse=True)
        self._re = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        return self._re.sub(REDACTED, text) if self._re else text

    def found_in(self, text: str) -> bool:
        return bool(self._re and self._re.search(text))

    def with_secret(self, secret: str) -> Redactor:
        """This redactor, redacting `secret` too (one learnt mid-job, such as the job's own key)."""
        return Redactor([*self._secrets, secret])


def redact(text: str, secrets: Iterable[str | None]) -> str:
    return Redactor(secrets)(text)


def clean_request_id(value: str | None) -> str | None:
    """A client-supplied request id is echoed back only when it is short and plain."""
    return value if value and _REQUEST_ID.match(value) else None


# Every object and array counts as a level. A strict JSON schema may nest 10 levels (OpenAI's limit); each
# level of an array of objects is 3 levels here (`properties`, the property, `items`), 5 inside an `anyOf`, and
# the schema itself sits 4-5 levels into the body (`tools[0].function.parameters`, `text.format.schema`):
# 10 such levels are ~35-56 deep. 64 admits them and stays far below what would cost us: the walk below is
# iterative and the body's size is bounded (V1_MAX_BODY_BYTES); orjson, which writes the body to the gateway,
# refuses more than 255 levels (a 500 if this guard let one through).
MAX_JSON_DEPTH = 64


def json_depth_exceeds(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests deeper than `limit` (iterative: no recursion for an attacker to exhaust)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[object]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
