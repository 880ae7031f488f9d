"""Trigger prompt templates read the call's body and nothing else: paths only, missing is empty, one pass."""

from __future__ import annotations

import pytest

from kilo_bridge.errors import InvalidInput
from kilo_bridge.triggers.template import MAX_RENDERED, check, render

BODY = {"alert": {"title": "Disk full", "tags": ["prod", "db"]}, "n": 3, "ok": True, "nil": None}


def test_paths_walk_objects_and_lists_and_missing_fields_render_empty() -> None:
    out = render("{{ body.alert.title }}|{{body.alert.tags.1}}|{{ body.n }}|{{ body.ok }}|{{ body.nil }}|", BODY)
    assert out == "Disk full|db|3|true||"
    assert render("[{{ body.nope.deeper }}][{{ body.alert.tags.9 }}][{{ body.n.x }}]", BODY) == "[][][]"
    assert render("{{ body.alert }}", BODY) == '{"title":"Disk full","tags":["prod","db"]}'
    assert render("{{ body }}", [1, 2]) == "[1,2]"
    assert render("{{ body.x }}", None) == ""


def test_nothing_beyond_the_body_is_reachable() -> None:
    # Attribute-looking paths are keys of the JSON object: absent, so empty; a Python object is never touched.
    assert render("{{ body.__class__ }}{{ body.alert.__class__.__mro__ }}{{ body.keys }}", BODY) == ""
    for bad in ("{{ 7*7 }}", "{{ config }}", "{{ body['a'] }}", "{{ body.a | upper }}", "{{ body.a() }}", "{{}}"):
        with pytest.raises(InvalidInput):
            check(bad)
    check("Plain text, {{ body.a.b }} and { single } braces.")


def test_one_pass_a_value_that_looks_like_a_placeholder_stays_text() -> None:
    body = {"a": "{{ body.b }}", "b": "secret-ish"}
    assert render("{{ body.a }}", body) == "{{ body.b }}"


def test_the_output_is_capped() -> None:
    assert len(render("{{ body.x }}{{ body.x }}", {"x": "y" * MAX_RENDERED})) == MAX_RENDERED
