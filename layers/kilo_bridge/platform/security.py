"""Secret hygiene: scrub known secret values from text in every form they take there — as written, URL-encoded,
JSON-escaped (a value with a newline, `"` or `\\` inside a JSON log line), base64-encoded (standard and URL-safe,
at any alignment, so a secret inside a longer base64 blob, such as a Basic auth header, is found too), and for a
multi-line value (a private key) each of its lines of 8 characters or more in each of those forms, since a diff
or a log splits the value into lines with prefixes between them."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
_MIN_SECRET_LEN = 6  # shorter values would redact ordinary words
_MIN_LINE_LEN = 8  # a line of a multi-line secret is searched alone from this length
# PEM armor ("-----BEGIN PRIVATE KEY-----") is the same in every key: not a secret, and a push of any other key's
# armor is not a leak of this one.
_ARMOR = re.compile(r"^-----[A-Z0-9 ]+-----$")
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


def _json_forms(value: str) -> set[str]:
    """A value inside a JSON string: escaped as our encoders write it (orjson keeps non-ASCII, json.dumps
    escapes it), and escaped twice (a JSON document logged as a JSON string)."""
    once = {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return once | {json.dumps(v)[1:-1] for v in once}


def _forms(value: str) -> set[str]:
    out = {value, quote(value, safe=""), quote_plus(value)} | _json_forms(value)
    return out | _b64_forms(value.encode())


def secret_forms(secret: str) -> set[str]:
    """The ways a secret shows up in text: as is, URL-encoded, JSON-escaped and base64 at any alignment; for a
    multi-line value, each line of 8+ characters (without its line break and surrounding blanks) as well."""
    out = _forms(secret)
    lines = [line.strip() for line in secret.splitlines()]
    if len(lines) > 1:
        for line in lines:
            if len(line) >= _MIN_LINE_LEN and not _ARMOR.match(line):
                out |= _forms(line)
    return {v for v in out if len(v) >= _MIN_SECRET_LEN}


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex for many literals, shaped as their trie: an alternation of hundreds of forms (a private key's
    lines in each encoding) is tried one by one at every position (measured: 1.5 s per MB for a 50-line key);
    the trie branches on each character instead. At each branch the longer match is preferred, as the
    longest-first alternation did."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def pattern(node: dict[str, Any]) -> str:
        out = []
        # A chain of single children is one literal (no nesting per character: a 3 KB key stays shallow).
        while len(node) == 1 and "" not in node:
            ((ch, node),) = node.items()
            out.append(re.escape(ch))
        ends = "" in node
        alternatives = [re.escape(ch) + pattern(child) for ch, child in sorted(node.items()) if ch]
        if alternatives:
            body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
            out.append(f"(?:{body})?" if ends else body)
        return "".join(out)

    return pattern(root)


class Redactor:
    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = [s for s in secrets if s]
        forms: set[str] = set()
        for s in self._secrets:
            if s and len(s) >= _MIN_SECRET_LEN:
                forms |= secret_forms(s)
        self._re = re.compile(_trie_pattern(forms)) if forms else None

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
