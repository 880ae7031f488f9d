"""What a job may ask for: the repository, its environment, branch names and timeouts.

Checked at the API before anything is stored or queued, so bad input is refused naming the field and nothing
starts.
The runner checks the repository's resolved addresses once more right before cloning (DNS can change).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kilo_bridge.config import Settings
from kilo_bridge.errors import invalid

# The names under which a job hands the runner its repository token (never given to the agent itself).
REPO_TOKEN_NAMES = ("REPO_TOKEN", "GITHUB_TOKEN")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# git ref names: no `..`, no leading `-` or `/`, none of git's forbidden characters.
BRANCH_PATTERN = r"^(?!-)(?!/)(?!.*\.\.)(?!.*//)(?!.*@\{)(?!.*\.lock$)(?!.*/$)(?!.*\.$)[A-Za-z0-9._/-]{1,200}$"
_BRANCH_RE = re.compile(BRANCH_PATTERN)


@dataclass(frozen=True, slots=True)
class RepoRef:
    url: str  # what git is given: never with credentials
    host: str  # lower-case host, "" for a local path
    owner: str | None  # for GitHub pull requests
    name: str | None
    local: bool


def check_repo_url(url: str, settings: Settings) -> RepoRef:  # noqa: C901 - one refusal per rule of a hostile URL, read top to bottom
    """A repository URL a job may clone, or InvalidInput saying what is wrong with it."""
    field = "repoUrl"
    if url.startswith("-"):
        raise invalid(field, "must not look like an option.")
    if "::" in url.split("/", 1)[0]:  # git's transport syntax: ext::, fd::
        raise invalid(field, "git transport syntax (ext::, fd::) is not allowed.")
    if any(ord(c) < 0x21 or c in "\\\x7f" for c in url):
        raise invalid(field, "must not contain spaces, control characters or backslashes.")
    if url.startswith("/"):
        if not settings.repo_allow_local:
            raise invalid(field, "local paths are not allowed (REPO_ALLOW_LOCAL is off).")
        path = Path(url)
        if ".." in path.parts or not path.is_dir():
            raise invalid(field, "the local path is not an existing directory.")
        return RepoRef(str(path), "", None, path.name.removesuffix(".git"), True)
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    local = settings.repo_allow_local and scheme == "http" and host in LOOPBACK_HOSTS
    if scheme != "https" and not local:
        raise invalid(field, "must be an https:// URL.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise invalid(field, "must not carry credentials; pass a token in profileEnv (GITHUB_TOKEN).")
    if parts.query or parts.fragment:
        raise invalid(field, "must not have a query or a fragment.")
    if not host:
        raise invalid(field, "has no host.")
    try:
        port = parts.port
    except ValueError:
        raise invalid(field, "has an invalid port.") from None
    if not local:
        if _is_ip(host):
            raise invalid(field, "IP addresses are not allowed; use the repository's host name.")
        if host not in settings.repo_hosts:
            allowed = ", ".join(sorted(settings.repo_hosts))
            raise invalid(field, f"host {host!r} is not in the allowlist ({allowed}).")
        if port not in (None, 443):
            raise invalid(field, "only the default https port is allowed.")
    segments = [s for s in parts.path.split("/") if s]
    if not segments or any(s in (".", "..") or s.startswith("-") for s in segments):
        raise invalid(field, "must name a repository path, e.g. https://github.com/owner/repo.git.")
    owner = segments[-2] if len(segments) >= 2 else None
    name = segments[-1].removesuffix(".git")
    return RepoRef(url, host, owner, name, local)


def repo_url_pattern(hosts: frozenset[str]) -> str:
    """The https URLs `check_repo_url` takes from these hosts, as a JSON Schema pattern (for the OpenAPI
    document; a little narrower than the check: lower-case hosts, plain path segments)."""
    names = "|".join(re.escape(h) for h in sorted(hosts)) or "(?!)"
    return rf"^https://(?:{names})(?::443)?(?:/[A-Za-z0-9_~][A-Za-z0-9._~-]*)+/?$"


def field_rules(settings: Settings) -> dict[str, dict[str, object]]:
    """What this server's settings add to the job fields' schemas: its repository hosts and longest timeout."""
    return {
        "repoUrl": {"pattern": repo_url_pattern(settings.repo_hosts)},
        "timeoutMs": {"maximum": settings.job_timeout_max_ms},
    }


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        # Forms like 2130706433 or 0x7f.1 are IPs to some resolvers.
        return bool(re.fullmatch(r"[0-9.x]+", host))


def blocked_address(host: str, settings: Settings) -> str | None:
    """Right before cloning: a reason to refuse if the host resolves to a private address, else None."""
    if not host or (settings.repo_allow_local and host in LOOPBACK_HOSTS):
        return None
    try:
        infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except OSError:
        return f"cannot resolve {host}"
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_global:
            return f"{host} resolves to a non-public address"
    return None


def check_branch(name: str | None, field: str = "baseBranch") -> None:
    if name is not None and not _BRANCH_RE.fullmatch(name):
        raise invalid(field, "is not a valid branch name.")


def check_timeout(timeout_ms: int | None, settings: Settings) -> int:
    value = settings.job_timeout_default_ms if timeout_ms is None else timeout_ms
    if not 1_000 <= value <= settings.job_timeout_max_ms:
        raise invalid("timeoutMs", f"must be between 1000 and {settings.job_timeout_max_ms}.")
    return value


def repo_token(env: dict[str, str]) -> str | None:
    return next((env[n] for n in REPO_TOKEN_NAMES if env.get(n)), None)
