"""Secret hygiene: redact known secret values (also URL-encoded and base64 forms) from text."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
_MIN_SECRET_LEN = 6  # shorter values would redact ordinary words
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def secret_forms(secret: str) -> set[str]:
    """The ways a secret shows up in text: as is, URL-encoded, and base64 (also inside `user:secret`)."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    raw = secret.encode()
    for blob in (raw, b"x-access-token:" + raw, b"oauth2:" + raw):
        b64 = base64.b64encode(blob).decode()
        # Inside a longer base64 string only the aligned middle is stable: drop the padded edges.
        forms.add(b64.rstrip("="))
    return {f for f in forms if len(f) >= _MIN_SECRET_LEN}


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if not secret or len(secret) < _MIN_SECRET_LEN:
            continue
        for form in sorted(secret_forms(secret), key=len, reverse=True):
            if form in text:
                text = text.replace(form, REDACTED)
    return text


def clean_request_id(value: str | None) -> str | None:
    """A client-supplied request id is echoed back only when it is short and plain."""
    return value if value and _REQUEST_ID.match(value) else None
