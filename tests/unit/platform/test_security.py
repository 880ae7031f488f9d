"""platform/security.py: redaction of secrets in every form they travel in, and request ids echoed only when plain."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import pytest

from kilo_bridge.platform.security import REDACTED, Redactor, clean_request_id, redact

SECRET = "ghp_FAKEfakeFAKEfake/+=token"
ODD_SECRET = "ghp_Canary/Token+With=Odd~Chars_42"


def test_redacts_plain_urlencoded_and_base64_forms() -> None:
    b64 = base64.b64encode(f"x-access-token:{SECRET}".encode()).decode()
    text = f"plain {SECRET} url {quote(SECRET, safe='')} header Authorization: Basic {b64}"
    out = redact(text, [SECRET])
    assert SECRET not in out
    assert quote(SECRET, safe="") not in out
    assert b64.rstrip("=") not in out
    assert out.count(REDACTED) == 3


def test_short_values_are_not_redacted() -> None:
    assert redact("a b c", ["b"]) == "a b c"


def test_request_id_is_echoed_only_when_plain() -> None:
    assert clean_request_id("abc-123") == "abc-123"
    assert clean_request_id("a\r\nSet-Cookie: x") is None
    assert clean_request_id("x" * 500) is None


@pytest.mark.parametrize(
    "form",
    [
        ODD_SECRET,
        quote(ODD_SECRET, safe=""),
        quote_plus(ODD_SECRET),
        base64.b64encode(ODD_SECRET.encode()).decode(),
        base64.urlsafe_b64encode(ODD_SECRET.encode()).decode(),
        base64.b64encode(b"x-access-token:" + ODD_SECRET.encode()).decode(),  # a Basic auth header
        base64.b64encode(b"ab" + ODD_SECRET.encode() + b"tail").decode(),
    ],
)
def test_redaction_finds_every_encoding(form: str) -> None:
    redactor = Redactor([ODD_SECRET, None, "short"])
    text = f"before {form} after"
    assert redactor.found_in(text)
    assert REDACTED in redactor(text) and "before" in redactor(text) and "after" in redactor(text)


def test_short_values_are_not_masked_everywhere() -> None:
    assert Redactor(["1", "true"])("true story 1") == "true story 1"
