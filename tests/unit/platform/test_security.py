import base64
from urllib.parse import quote

from kilo_bridge.platform.security import REDACTED, clean_request_id, redact

SECRET = "ghp_FAKEfakeFAKEfake/+=token"


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
