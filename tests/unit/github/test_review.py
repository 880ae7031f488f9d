"""The review's structured output, the lines of a diff GitHub takes a comment on, and the review composed."""

from __future__ import annotations

import json

import pytest

from kilo_bridge.github.review import (
    Finding,
    Parsed,
    commentable,
    compose,
    conclusion,
    fail_on,
    parse,
    review_repos,
    review_section,
)
from kilo_bridge.platform.security import REDACTED

PATCH = "@@ -1,3 +1,4 @@\n a\n-b\n+B\n+C\n d\n@@ -10,2 +11,3 @@\n x\n+y\n z"


def finding(**over: object) -> dict[str, object]:
    return {"path": "a.py", "line": 2, "severity": "high", "title": "t", "body": "b", **over}


def test_the_last_json_block_is_the_findings() -> None:
    text = (
        'Prose.\n```json\n{"summary": "old", "findings": []}\n```\nMore.\n```json\n'
        + json.dumps({"summary": "Overall fine.", "findings": [finding(endLine=3)]})
        + "\n```"
    )
    parsed = parse(text)
    assert parsed.problem is None and parsed.summary == "Overall fine."
    assert parsed.findings[0].end_line == 3 and parsed.findings[0].severity == "high"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("Just prose, no block.", "no ```json block"),
        ('Summary here.\n```json\n{"summary": 1, "findings": [\n```', "malformed"),
        (
            "Summary here.\n```json\n"
            + json.dumps({"summary": "s", "findings": [finding(severity="urgent")]})
            + "\n```",
            "malformed",
        ),
    ],
)
def test_a_missing_or_malformed_block_still_yields_the_summary_and_says_so(text: str, said: str) -> None:
    parsed = parse(text)
    assert parsed.findings == [] and parsed.problem and said in parsed.problem
    assert parsed.summary.startswith(text.split("\n")[0])
    composed = compose(parsed, {}, "header")
    assert "No inline findings" in composed.body and parsed.summary.split("\n")[0] in composed.body


def test_commentable_lines_are_the_head_side_lines_of_each_hunk() -> None:
    assert commentable(PATCH) == [{1, 2, 3, 4}, {11, 12, 13}]


def test_findings_in_the_diff_are_inline_the_rest_in_the_summary() -> None:
    lines = {"a.py": commentable(PATCH)}
    parsed = Parsed(
        "Summary by @someone",
        [
            Finding.model_validate(finding(line=2)),
            Finding.model_validate(finding(line=11, endLine=13, severity="low")),
            Finding.model_validate(finding(line=3, endLine=12)),  # spans two hunks: not one comment
            Finding.model_validate(finding(path="b.py", line=1, title="elsewhere")),
            Finding.model_validate(finding(body=f"token {REDACTED}")),
        ],
    )
    out = compose(parsed, lines, "HEADER")
    assert [{k: c.get(k) for k in ("path", "start_line", "line", "side")} for c in out.comments] == [
        {"path": "a.py", "start_line": None, "line": 2, "side": "RIGHT"},
        {"path": "a.py", "start_line": 11, "line": 13, "side": "RIGHT"},
    ]
    assert [f.line for f in out.outside] == [3, 1] and "`b.py:1`" in out.body and out.withheld == 1
    assert out.body.startswith("HEADER") and "@\u200bsomeone" in out.body and REDACTED not in out.body


def test_the_check_fails_only_at_or_above_the_setting() -> None:
    low, high = Finding.model_validate(finding(severity="low")), Finding.model_validate(finding(severity="high"))
    assert conclusion([], fail_on("high")) == "success"
    assert conclusion([low], fail_on("high")) == "neutral"
    assert conclusion([low, high], fail_on("high")) == "failure"
    assert conclusion([high], fail_on("critical")) == "neutral"
    assert conclusion([high], fail_on("never")) == "neutral"


def test_review_repos_options() -> None:
    repos = review_repos("Acme/Widgets:drafts:model=kilo/fast:max-cost=0.5, acme/gadgets")
    assert repos["acme/widgets"].drafts and not repos["acme/widgets"].bots
    assert repos["acme/widgets"].model == "kilo/fast" and repos["acme/widgets"].max_cost_usd == 0.5
    assert repos["acme/gadgets"].drafts is False
    with pytest.raises(ValueError, match="unknown option"):
        review_repos("acme/widgets:draft")


def test_the_review_section_of_agents_md() -> None:
    text = "# Agents\nintro\n## Code review\nBe strict.\n### Details\nmore\n## Build\nmake\n"
    assert review_section(text) == "## Code review\nBe strict.\n### Details\nmore"
    assert review_section("# Agents\nnothing") is None
