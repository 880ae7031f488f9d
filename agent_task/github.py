"""Open the pull request through the GitHub REST API (httpx, explicit timeouts, retries with backoff on
429/5xx and connection errors; a 4xx is final). The token is sent in a header, never logged."""

from __future__ import annotations

import contextlib

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class PullRequestError(RuntimeError):
    pass


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


async def open_pull_request(
    api_url: str, token: str, owner: str, repo: str, *, head: str, base: str, title: str, body: str
) -> str:
    """The new pull request's html_url."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "kilo-bridge",
    }
    payload = {"title": title, "head": head, "base": base, "body": body, "maintainer_can_modify": True}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=TIMEOUT) as client:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(4),
                wait=wait_exponential_jitter(multiplier=0.5, max=8),
                retry=retry_if_exception(_retryable),
                reraise=True,
            ):
                with attempt:
                    response = await client.post(f"/repos/{owner}/{repo}/pulls", json=payload)
                    response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            message = ""
            with contextlib.suppress(ValueError):
                message = str(exc.response.json().get("message", ""))[:300]
            raise PullRequestError(f"GitHub answered {exc.response.status_code} {message}".strip()) from None
        except httpx.TransportError as exc:
            raise PullRequestError(f"GitHub unreachable: {type(exc).__name__}") from None
    return str(response.json().get("html_url", ""))
