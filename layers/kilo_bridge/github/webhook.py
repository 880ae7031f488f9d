"""GitHub webhook deliveries: verified (`X-Hub-Signature-256`, HMAC-SHA256 of the raw body, compared in
constant time), each delivery id handled once, then:

- an issue or pull-request comment `/kilo <task>` by someone with write access → an `apply-patch-and-pr` job
  on that repository (the task and the issue as context), a comment linking the job; the runner reports the
  pull request or the failure on the same thread when the job ends;
- a pull request opened, reopened or pushed to, on a repository opted in (GITHUB_REVIEW_REPOS) → a `review`
  job whose findings become the pull request's one review comment (updated on the next push);
- anything else → ignored.

Key family spelled here: `github:delivery:<id>` (a delivery seen, kept DELIVERY_TTL_S).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from kilo_bridge.errors import BridgeError, NotFound, Unauthorized
from kilo_bridge.github.app import COMMENT, GitHubApp, GitHubAppError, configured
from kilo_bridge.jobs.models import RunAgentRequest
from kilo_bridge.jobs.service import JobService
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.redis import Store

log = get_logger()
DELIVERY_TTL_S = 7 * 86_400  # GitHub redelivers on request for days
WRITERS = frozenset({"admin", "maintain", "write"})
COMMAND = "/kilo"
CONTEXT_MAX = 8_000


class BadSignature(Unauthorized):
    def __init__(self) -> None:
        super().__init__("The delivery's X-Hub-Signature-256 does not match its body.")


@dataclass(frozen=True, slots=True)
class Handled:
    outcome: str  # started | duplicate | ignored | refused
    detail: str = ""
    job_id: str | None = None


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode())


def _task(body: str) -> str | None:
    text = body.strip()
    if not text.startswith(COMMAND):
        return None
    rest = text[len(COMMAND) :]
    if rest and not rest[0].isspace():
        return None  # `/kilobytes` is not the command
    return rest.strip() or None


def _review_repos(value: str) -> frozenset[str]:
    return frozenset(r.strip().lower() for r in value.split(",") if r.strip())


class AppNotConfigured(NotFound):
    """No GitHub App is configured on this server: its webhook route does not exist here."""


NOT_CONFIGURED = (
    "Kilo Bridge is not configured to start jobs from GitHub: no API key owns them (an operator sets "
    "GITHUB_APP_KEY_ID to an active key; see docs/github.md). Nothing was started."
)


class WebhookService:
    def __init__(self, store: Store, jobs: JobService) -> None:
        self.store, self.jobs, self.settings = store, jobs, store.settings

    async def job_owner(self) -> tuple[bool, str | None]:
        """Who owns the jobs the App starts, as (may start, owner digest): the key GITHUB_APP_KEY_ID names, so
        its budget, maxJobs and job list apply as for the jobs of a trigger it made. With auth required and
        no such active key, nothing may start (an ownerless job would escape every budget); an open server
        runs them as open jobs."""
        key_id = self.settings.github_app_key_id
        if key_id is None:
            if self.settings.auth_is_required:
                log.warning("github job refused: GITHUB_APP_KEY_ID is not set")
                return False, None
            return True, None
        digest = await self.jobs.keys.active_digest(key_id)
        if digest is None:
            log.warning("github job refused: GITHUB_APP_KEY_ID names no active key", extra={"key_id": key_id})
            return False, None
        return True, digest

    def verify(self, body: bytes, signature: str | None) -> None:
        secret = self.settings.github_webhook_secret
        if secret is None or not configured(self.settings):
            # A feature turned off is not an outage: the route is as good as absent.
            raise AppNotConfigured("No GitHub App is configured here (GITHUB_APP_ID, its key, GITHUB_WEBHOOK_SECRET).")
        if not signature_ok(secret.get_secret_value(), body, signature):
            raise BadSignature()

    async def handle(
        self, event: str, delivery: str, body: bytes, request_id: str, job_link: Callable[[str], str]
    ) -> Handled:
        """A verified delivery. Seen before → duplicate; nothing to do → ignored."""
        if not delivery or len(delivery) > 100 or not delivery.isprintable():
            return Handled("ignored", "no delivery id")
        key = self.store.key("github", "delivery", delivery)
        async with self.store.guard():
            first = await self.store.call("SET", key, "1", "EX", DELIVERY_TTL_S, "NX")
        if not first:
            return Handled("duplicate")
        try:
            payload = orjson.loads(body)
            if not isinstance(payload, dict) or not isinstance(payload.get("repository"), dict):
                return Handled("ignored", "no repository")
            if event == "issue_comment" and isinstance(payload, dict):
                return await self._comment(payload, delivery, request_id, job_link)
            if event == "pull_request" and isinstance(payload, dict):
                return await self._pull_request(payload, delivery, request_id)
            return Handled("ignored", f"event {event[:40]!r}")
        except (ValueError, TypeError, AttributeError):
            return Handled("ignored", "a payload of another shape")  # kept as seen: it will not parse next time
        except Exception:
            # Not handled after all: a redelivery may try again.
            async with self.store.guard():
                await self.store.call("DEL", key)
            raise

    async def _comment(
        self, p: dict[str, Any], delivery: str, request_id: str, job_link: Callable[[str], str]
    ) -> Handled:
        comment, issue, repo = p.get("comment") or {}, p.get("issue") or {}, p.get("repository") or {}
        if p.get("action") != "created" or (task := _task(str(comment.get("body", "")))) is None:
            return Handled("ignored", "not a /kilo comment")
        owner, name = str(repo.get("owner", {}).get("login", "")), str(repo.get("name", ""))
        user, number = str(comment.get("user", {}).get("login", "")), int(issue.get("number") or 0)
        if comment.get("user", {}).get("type") == "Bot":
            return Handled("ignored", "a bot's comment")
        app = GitHubApp(self.settings)
        token = (await app.installation_token(owner, name, COMMENT)).token
        try:
            if await app.permission(token, owner, name, user) not in WRITERS:
                log.info("github /kilo ignored: no write access", extra={"repo": f"{owner}/{name}"})
                return Handled("ignored", "the commenter has no write access")
            may_start, job_owner = await self.job_owner()
            if not may_start:
                await app.comment(token, owner, name, number, NOT_CONFIGURED)
                return Handled("refused", "not_configured")
            context = f"{issue.get('title', '')}\n\n{issue.get('body') or ''}"[:CONTEXT_MAX]
            prompt = f"{task[:10_000]}\n\nContext: GitHub issue #{number} in {owner}/{name}:\n{context}"
            run = RunAgentRequest.model_validate(
                {"repoUrl": str(repo.get("clone_url", "")), "agent": "apply-patch-and-pr", "prompt": prompt}
            )
            try:
                submitted = await self.jobs.submit(
                    run, job_owner, f"github-{delivery}", request_id, notify=f"comment:{number}"
                )
            except BridgeError as exc:
                await app.comment(token, owner, name, number, f"Kilo Bridge could not start the job: {exc.message}")
                return Handled("refused", exc.code)
            link = job_link(submitted.job_id)
            await app.comment(token, owner, name, number, f"Kilo Bridge started job [`{submitted.job_id}`]({link}).")
            log.info("github /kilo job", extra={"job_id": submitted.job_id, "repo": f"{owner}/{name}"})
            return Handled("started", job_id=submitted.job_id)
        finally:
            with contextlib.suppress(GitHubAppError):
                await app.revoke(token)

    async def _pull_request(self, p: dict[str, Any], delivery: str, request_id: str) -> Handled:
        pr, repo = p.get("pull_request") or {}, p.get("repository") or {}
        if p.get("action") not in ("opened", "reopened", "synchronize"):
            return Handled("ignored", "not a push to a pull request")
        if str(repo.get("full_name", "")).lower() not in _review_repos(self.settings.github_review_repos):
            return Handled("ignored", "the repository is not opted in to reviews")
        head = pr.get("head") or {}
        if (head.get("repo") or {}).get("full_name") != repo.get("full_name"):
            return Handled("ignored", "a pull request from a fork")  # its branch is not in this repository
        may_start, job_owner = await self.job_owner()
        if not may_start:
            # No comment here: a refusal on every push would bury the pull request; the issue path says it.
            return Handled("refused", "not_configured")
        run = RunAgentRequest.model_validate(
            {
                "repoUrl": str(repo.get("clone_url", "")),
                "agent": "review",
                "baseBranch": str(head.get("ref", "")) or None,
            }
        )
        submitted = await self.jobs.submit(
            run, job_owner, f"github-{delivery}", request_id, notify=f"review:{int(pr.get('number') or 0)}"
        )
        log.info("github review job", extra={"job_id": submitted.job_id, "repo": repo.get("full_name")})
        return Handled("started", job_id=submitted.job_id)
