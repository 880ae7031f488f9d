"""A GitHub App's side of the REST API: the App's JWT (PyJWT, RS256), an installation token minted for one
repository with named permissions, a user's permission on a repository, issue comments and replies in a pull
request review comment's thread.

Tokens are returned to the caller and kept by nobody else: the runner mints its job's token and revokes it
when the job ends (they expire within the hour anyway).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kilo_bridge.config import Settings
from kilo_bridge.errors import BridgeError

TIMEOUT_S, CONNECT_TIMEOUT_S = 20.0, 5.0
# What a job may do with the repository: push a branch and open a pull request, or (report agents) read.
WRITE = {"contents": "write", "pull_requests": "write"}
READ = {"contents": "read", "pull_requests": "read"}
COMMENT = {"issues": "write", "pull_requests": "write"}  # the job's comments on its issue or pull request


class GitHubAppError(BridgeError, code="bad_gateway"):
    """GitHub refused or failed a call the App made."""


@dataclass(frozen=True, slots=True)
class Installation:
    token: str
    expires_at: str


def configured(settings: Settings) -> bool:
    return bool(settings.github_app_id and (settings.github_app_private_key or settings.github_app_private_key_file))


def _private_key(settings: Settings) -> str:
    if settings.github_app_private_key is not None:
        return settings.github_app_private_key.get_secret_value()
    return Path(settings.github_app_private_key_file or "").read_text()


def _headers(auth: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {auth}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "kilo-bridge",
    }


class GitHubApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api = settings.github_api_url.rstrip("/")

    def jwt(self) -> str:
        """The App's own token: 9 minutes (GitHub allows 10), issued a minute back for clock drift."""
        import jwt  # PyJWT, imported when the App is used

        now = int(time.time())
        claims = {"iat": now - 60, "exp": now + 540, "iss": str(self.settings.github_app_id)}
        return jwt.encode(claims, _private_key(self.settings), algorithm="RS256")

    async def _call(self, method: str, path: str, auth: str, body: Any = None, missing_ok: bool = False) -> Any:
        import httpx  # ~40 ms of a cold start (its CLI pulls rich): only the GitHub App's calls need it

        timeout = httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        async with httpx.AsyncClient(base_url=self.api, headers=_headers(auth), timeout=timeout) as client:
            try:
                response = await client.request(method, path, json=body)
            except httpx.TransportError as exc:
                raise GitHubAppError(f"GitHub unreachable: {type(exc).__name__}") from None
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise GitHubAppError(f"GitHub answered {response.status_code} to {method} {path.split('?')[0]}")
        return response.json() if response.content else None

    async def installation_token(self, owner: str, repo: str, permissions: dict[str, str]) -> Installation:
        """A token for this one repository with only these permissions (the App must be installed on it)."""
        app = self.jwt()
        installation = await self._call("GET", f"/repos/{owner}/{repo}/installation", app)
        minted = await self._call(
            "POST",
            f"/app/installations/{int(installation['id'])}/access_tokens",
            app,
            {"repositories": [repo], "permissions": permissions},
        )
        return Installation(str(minted["token"]), str(minted.get("expires_at", "")))

    async def revoke(self, token: str) -> None:
        await self._call("DELETE", "/installation/token", token)

    async def permission(self, token: str, owner: str, repo: str, user: str) -> str:
        """admin | maintain | write | triage | read | none."""
        found = await self._call("GET", f"/repos/{owner}/{repo}/collaborators/{user}/permission", token)
        return str(found.get("permission", "none"))

    async def comment(self, token: str, owner: str, repo: str, number: int, body: str) -> None:
        await self._call("POST", f"/repos/{owner}/{repo}/issues/{number}/comments", token, {"body": body})

    async def reply(self, token: str, owner: str, repo: str, number: int, comment_id: int, body: str) -> None:
        """A reply in a pull request review comment's thread (docs.github.com/en/rest/pulls/comments#create-a-
        reply-for-a-review-comment: `comment_id` is the thread's top-level comment; replies to replies are not
        supported)."""
        path = f"/repos/{owner}/{repo}/pulls/{number}/comments/{comment_id}/replies"
        await self._call("POST", path, token, {"body": body})

    # -- pull request reviews and check runs (docs.github.com/en/rest: pulls/pulls, commits/commits#compare-two-
    # commits, repos/contents, pulls/reviews#create-a-review-for-a-pull-request, checks/runs) ---------------------

    async def pull(self, token: str, owner: str, repo: str, number: int) -> dict[str, Any]:
        return dict(await self._call("GET", f"/repos/{owner}/{repo}/pulls/{number}", token))

    async def compare(self, token: str, owner: str, repo: str, base: str, head: str) -> dict[str, Any]:
        """`status` (ahead | behind | diverged | identical), `commits`, `files[]` with each file's `patch`."""
        return dict(await self._call("GET", f"/repos/{owner}/{repo}/compare/{base}...{head}", token))

    async def file_at(self, token: str, owner: str, repo: str, path: str, ref: str) -> str | None:
        """A file's text at a commit, or None when it is not there."""
        import base64

        found = await self._call("GET", f"/repos/{owner}/{repo}/contents/{path}?ref={ref}", token, missing_ok=True)
        if not isinstance(found, dict) or found.get("type") != "file" or found.get("encoding") != "base64":
            return None
        return base64.b64decode(str(found.get("content", ""))).decode(errors="replace")

    async def create_review(
        self, token: str, owner: str, repo: str, number: int, commit: str, body: str, comments: list[dict[str, Any]]
    ) -> None:
        review = {"commit_id": commit, "body": body, "event": "COMMENT", "comments": comments}
        await self._call("POST", f"/repos/{owner}/{repo}/pulls/{number}/reviews", token, review)

    async def create_check(self, token: str, owner: str, repo: str, fields: dict[str, Any]) -> int:
        return int((await self._call("POST", f"/repos/{owner}/{repo}/check-runs", token, fields))["id"])

    async def update_check(self, token: str, owner: str, repo: str, check_id: int, fields: dict[str, Any]) -> None:
        await self._call("PATCH", f"/repos/{owner}/{repo}/check-runs/{check_id}", token, fields)
