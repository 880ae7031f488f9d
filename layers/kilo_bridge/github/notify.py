"""Where a job started from GitHub says its outcome: its record's `notify`, written by the webhook and read back by
the runner (a module of its own: the runner needs the format, not the webhook's service)."""

from __future__ import annotations


def notify_for(number: int, reply_to: int | None) -> str:
    """`comment:<n>` (the issue's or pull request's comments) or `review-comment:<n>:<id>` (a reply in that review
    comment's thread)."""
    return f"comment:{number}" if reply_to is None else f"review-comment:{number}:{reply_to}"


def reply_target(notify: str | None) -> tuple[int, int | None] | None:
    """Where a job reports its outcome on GitHub, from its `notify`: (issue or pull request, None) for
    `comment:<n>`, (pull request, the thread's comment id) for `review-comment:<n>:<id>`; None otherwise."""
    kind, _, rest = (notify or "").partition(":")
    number, _, comment_id = rest.partition(":")
    if kind == "comment" and number.isdigit() and not comment_id:
        return int(number), None
    if kind == "review-comment" and number.isdigit() and comment_id.isdigit():
        return int(number), int(comment_id)
    return None
