"""A fake GitHub on 127.0.0.1: git smart HTTP for bare repositories under a directory (real
`git http-backend`, Basic auth with the token as password) and the REST call that opens a pull request.

    url = fake.repo_url("acme", "widgets")       # http://127.0.0.1:PORT/acme/widgets.git
    fake.api_url                                  # for GITHUB_API_URL
    fake.pulls                                    # the pull requests opened
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.threaded import AiohttpApp, ServerThread


def make_repo(root: Path, owner: str, name: str, files: dict[str, str] | None = None) -> Path:
    """A bare repository with one commit on main."""
    bare = root / owner / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = root / f".work-{owner}-{name}"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    for path, text in (files or {"README.md": "# demo\n"}).items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", "init"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(bare), "HEAD:main"], check=True, env=env)
    return bare


class FakeGitHub(AiohttpApp, ServerThread):
    def __init__(self, root: Path, token: str) -> None:
        self.root, self.token = root, token
        self.pulls: list[dict[str, Any]] = []
        self.git_requests: list[dict[str, Any]] = []
        self.pr_status: int | None = None  # answer pull requests with this status instead

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v3"

    def repo_url(self, owner: str, name: str) -> str:
        return f"{self.url}/{owner}/{name}.git"

    def _authorized(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return user if password == self.token else None
        return None

    async def git(self, request: web.Request) -> web.StreamResponse:
        self.git_requests.append({"path": request.path_qs, "auth": "Authorization" in request.headers})
        user = self._authorized(request)
        if user is None:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
        body = await request.read()
        env = {
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": request.path,
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": "127.0.0.1",
            "PATH": "/usr/bin:/bin",
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
            "GIT_CONFIG_PARAMETERS": "'http.receivepack'='true'",
        }
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        if not payload and b"\n\n" in out:
            head, _, payload = out.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        return web.Response(status=status, body=payload, headers=headers)

    async def create_pull(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"message": "Bad credentials"}, status=401)
        if self.pr_status:
            return web.json_response({"message": "Validation Failed"}, status=self.pr_status)
        body = await request.json()
        owner, repo = request.match_info["owner"], request.match_info["repo"]
        number = len(self.pulls) + 1
        pull = {
            "owner": owner,
            "repo": repo,
            "number": number,
            **body,
            "html_url": f"{self.url}/{owner}/{repo}/pull/{number}",
        }
        self.pulls.append(pull)
        return web.json_response(pull, status=201)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_post("/api/v3/repos/{owner}/{repo}/pulls", self.create_pull)
        app.router.add_route("*", "/{owner}/{repo}.git/{tail:.*}", self.git)
        return app
