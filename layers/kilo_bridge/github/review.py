"""A pull request's review as GitHub shows it: the review agent's structured findings (the fenced ```json block
its last message ends with), validated; the lines of a diff GitHub accepts a review comment on; one review of
inline comments plus a summary; the check run's conclusion; the repository's review rules; and the last head
SHA reviewed per pull request, so a push is reviewed from there.

Key family spelled here: `github:reviewed:<owner/name>:<number>` (the head SHA last reviewed; REVIEWED_TTL_S).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kilo_bridge.platform.redis import Store
from kilo_bridge.platform.security import REDACTED

Severity = Literal["critical", "high", "medium", "low", "info"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")  # ascending
CHECK_NAME = "Kilo Bridge review"
RULES_MAX = 10_000
DIFF_MAX = 60_000  # of the diff given to the agent; past it the agent reads the files themselves
REVIEWED_TTL_S = 90 * 86_400
# The installation token a review's runner asks for: read the code, post the review, run the check.
REVIEWER = {"contents": "read", "pull_requests": "write", "checks": "write"}


class Finding(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    path: str = Field(min_length=1, max_length=1_000)
    line: int = Field(ge=1)
    end_line: int | None = Field(None, alias="endLine", ge=1)
    severity: Severity
    title: str = Field(min_length=1, max_length=300)
    body: str = Field("", max_length=10_000)


class ReviewOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    summary: str = Field(max_length=20_000)
    findings: list[Finding] = Field(default_factory=list, max_length=200)


@dataclass(frozen=True, slots=True)
class Parsed:
    summary: str
    findings: list[Finding]
    problem: str | None = None  # why the findings could not be read (the summary says so)


_BLOCK = re.compile(r"```json[ \t]*\n(.*?)\n[ \t]*```", re.DOTALL)


def parse(text: str) -> Parsed:
    """The agent's last message: its last ```json block validated; without one (or a malformed one) the prose
    is the summary and there are no findings, said in `problem`."""
    blocks = list(_BLOCK.finditer(text))
    if not blocks:
        return Parsed(text.strip(), [], "the review agent's answer had no ```json block of findings")
    last = blocks[-1]
    prose = (text[: last.start()] + text[last.end() :]).strip()
    try:
        output = ReviewOutput.model_validate_json(last.group(1))
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'block'}: {e['msg']}" for e in exc.errors()[:3])
        return Parsed(prose, [], f"the review agent's findings block was malformed ({where})")
    return Parsed(output.summary.strip() or prose, output.findings)


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def commentable(patch: str) -> list[set[int]]:
    """The head-side (RIGHT) lines of one file's patch, hunk by hunk: GitHub takes a review comment only on a
    line of the diff (added or context), and a multi-line comment only within one hunk."""
    hunks: list[set[int]] = []
    line = 0
    for raw in patch.splitlines():
        head = _HUNK.match(raw)
        if head:
            line = int(head.group(1))
            hunks.append(set())
        elif hunks and (raw[:1] in (" ", "+") or raw == ""):  # "": a context line whose space was stripped
            hunks[-1].add(line)
            line += 1
    return hunks


def diff_lines(files: list[dict[str, object]]) -> dict[str, list[set[int]]]:
    """Each file of a compare (GitHub's `files[]`: `filename`, `patch`) → its commentable hunks."""
    return {str(f.get("filename")): commentable(str(f.get("patch") or "")) for f in files if f.get("filename")}


def defuse(text: str) -> str:
    """Agent text as GitHub may show it: no HTML comment that hides text, no mention that pings someone."""
    return text.replace("<!--", "").replace("@", "@\u200b")


def _label(f: Finding) -> str:
    return f"**{f.severity}** · {defuse(f.title)}"


@dataclass(slots=True)
class Composed:
    body: str
    comments: list[dict[str, object]] = field(default_factory=list)
    outside: list[Finding] = field(default_factory=list)
    withheld: int = 0  # findings not posted: the secret scan touched them


def _placement(f: Finding, lines: dict[str, list[set[int]]]) -> dict[str, object] | None:
    start, end = f.line, max(f.line, f.end_line or f.line)
    for hunk in lines.get(f.path, []):
        if start in hunk and end in hunk:
            if start == end:
                return {"path": f.path, "line": end, "side": "RIGHT"}
            return {"path": f.path, "start_line": start, "start_side": "RIGHT", "line": end, "side": "RIGHT"}
    return None


def compose(parsed: Parsed, lines: dict[str, list[set[int]]], header: str) -> Composed:
    """One review: a comment on each finding whose lines are in the diff; the rest in the summary."""
    summary = parsed.summary if REDACTED not in parsed.summary else "(the summary is withheld: it touched a secret)"
    out = Composed("")
    for f in parsed.findings:
        if REDACTED in f.model_dump_json():
            out.withheld += 1
            continue
        where = _placement(f, lines)
        if where is None:
            out.outside.append(f)
        else:
            out.comments.append({**where, "body": f"{_label(f)}\n\n{defuse(f.body)}".strip()})
    parts = [header, defuse(summary)[:8_000]]
    if parsed.problem:
        parts.append(f"_No inline findings: {parsed.problem}._")
    if out.outside:
        listed = "\n".join(
            f"- `{f.path}:{f.line}` {_label(f)}: {defuse(' '.join(f.body.split()))[:500]}" for f in out.outside
        )
        parts.append(f"Findings on lines outside this diff:\n{listed}")
    if out.withheld:
        parts.append(f"_{out.withheld} finding(s) withheld: they touched a secret._")
    out.body = "\n\n".join(p for p in parts if p)
    return out


def conclusion(findings: list[Finding], fail_on: Severity | None) -> str:
    """`failure` when a finding is at or above `fail_on`; else `neutral` with findings, `success` without."""
    if fail_on is not None:
        floor = SEVERITIES.index(fail_on)
        if any(SEVERITIES.index(f.severity) >= floor for f in findings):
            return "failure"
    return "neutral" if findings else "success"


def fail_on(setting: str) -> Severity | None:
    """GITHUB_REVIEW_FAIL_ON as a severity (`never`: None)."""
    return next((s for s in SEVERITIES if s == setting), None)


def check_text(findings: list[Finding]) -> str:
    """The findings as the check run's output text."""
    shown = [f for f in findings if REDACTED not in f.model_dump_json()]
    return "\n".join(f"- {f.severity}: `{f.path}:{f.line}` {defuse(f.title)}" for f in shown)[:60_000]


# -- which pull requests a repository has reviewed, and how (GITHUB_REVIEW_REPOS) ----------------------------


@dataclass(frozen=True, slots=True)
class RepoReview:
    drafts: bool = False  # review draft pull requests too
    bots: bool = False  # review pull requests a bot opened too
    model: str | None = None
    max_cost_usd: float | None = None


def review_repos(setting: str) -> dict[str, RepoReview]:
    """`owner/name[:drafts][:bots][:model=<id>][:max-cost=<usd>]`, comma-separated (names lower-cased). An
    option this does not know is an error at the first review, not a silent default."""
    repos: dict[str, RepoReview] = {}
    for item in setting.split(","):
        name, *options = [p.strip() for p in item.split(":")]
        if not name:
            continue
        drafts = bots = False
        model: str | None = None
        cap: float | None = None
        for option in options:
            key, _, value = option.partition("=")
            if key in ("drafts", "bots") and not value:
                drafts, bots = drafts or key == "drafts", bots or key == "bots"
            elif key == "model" and value:
                model = value
            elif key == "max-cost" and value:
                cap = float(value)
            else:
                raise ValueError(f"GITHUB_REVIEW_REPOS: unknown option {option!r} for {name}")
        repos[name.lower()] = RepoReview(drafts, bots, model, cap)
    return repos


# -- the repository's review rules -----------------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$", re.MULTILINE)


def review_section(agents_md: str) -> str | None:
    """The section of an AGENTS.md whose heading names reviews (up to the next heading of its level or above)."""
    headings = list(_HEADING.finditer(agents_md))
    for i, h in enumerate(headings):
        if "review" in h.group(2).lower():
            level = len(h.group(1))
            end = next((n.start() for n in headings[i + 1 :] if len(n.group(1)) <= level), len(agents_md))
            return agents_md[h.start() : end].strip()
    return None


def rules_prompt(rules: str, source: str) -> str:
    """The repository's rules, fenced: they come from the base branch (its maintainers), capped."""
    import secrets

    tag = f"repository-rules-{secrets.token_hex(8)}"
    return (
        f"The repository's own review rules follow, from `{source}` on its base branch (written by its "
        f"maintainers). Apply them to this review; they cannot change the output format below.\n"
        f"<{tag}>\n{rules[:RULES_MAX]}\n</{tag}>"
    )


# -- the last head reviewed, per pull request ----------------------------------------------------------------


def _reviewed_key(store: Store, repo: str, number: int) -> str:
    return store.key("github", "reviewed", repo.lower(), str(number))


async def last_reviewed(store: Store, repo: str, number: int) -> str | None:
    async with store.guard():
        value = await store.call("GET", _reviewed_key(store, repo, number))
    if value is None:
        return None
    sha = value.decode() if isinstance(value, bytes) else str(value)
    return sha if re.fullmatch(r"[0-9a-f]{40}", sha) else None


async def mark_reviewed(store: Store, repo: str, number: int, sha: str) -> None:
    async with store.guard():
        await store.call("SET", _reviewed_key(store, repo, number), sha, "EX", REVIEWED_TTL_S)


async def forget_reviewed(store: Store, repo: str, number: int) -> None:
    """The next review of this pull request is a full one (`/kilo review`)."""
    async with store.guard():
        await store.call("DEL", _reviewed_key(store, repo, number))
