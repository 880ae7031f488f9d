"""A fake GitHub on 127.0.0.1: git smart HTTP for bare repositories under a directory (real
`git http-backend`, Basic auth with the token as password) and the REST call that opens a pull request.

    url = fake.repo_url("acme", "widgets")       # http://127.0.0.1:PORT/acme/widgets.git
    fake.api_url                                  # for GITHUB_API_URL
    fake.pulls                                    # the pull requests opened

As a GitHub App's API (`fake.install_app(app_id, public_key_pem, {("acme", "widgets"): 7})`): the App's JWT
checked against its public key (RS256, `iss`), installation tokens minted with the `repositories` and
`permissions` asked for (recorded in `token_requests`) and honoured only within them (git push needs
contents: write, a pull request pull_requests: write), revoked with DELETE /installation/token; collaborator
permissions from `fake.permissions`; issue comments recorded in `comments` (POST, GET, PATCH).

Pull request reviews, from GitHub's REST reference (docs.github.com/en/rest): a pull request opened with
`fake.open_pull(...)` is answered by "Get a pull request" (pulls/pulls#get-a-pull-request: `head`/`base` with
`ref` and `sha`, `draft`, `user`), its SHAs read live from the bare repository; "Compare two commits"
(commits/commits#compare-two-commits: `GET /repos/{o}/{r}/compare/{base}...{head}`, three dots = from the merge
base; `status` ahead | behind | diverged | identical; `files[]` with `filename`, `status` and the file's `patch`,
its hunks from the first `@@`) computed by real git; "Get repository content" (repos/contents: a file as
`type: file`, `encoding: base64`, `content`; 404 when absent at `ref`); "Create a review for a pull request"
(pulls/reviews#create-a-review-for-a-pull-request: `commit_id`, `body`, `event`, `comments[]` of `path`, `body`,
`line` + `side`, `start_line` + `start_side` for a range) recorded in `reviews`, answered 422 "Unprocessable
Entity" with `errors: ["Line could not be resolved"]` (what GitHub says) when a comment's line is not a
RIGHT-side line of the pull request's diff or a range spans hunks; check runs (checks/runs#create-a-check-run,
#update-a-check-run: `name`, `head_sha`, `status`, `conclusion`, `output{title, summary, text}`; a
`conclusion` makes `status` `completed`), only for an installation token with `checks: write`, recorded in
`check_runs`.

Conversations on pull requests: a pull request opened through the API is "Get a pull request"'s too (its
`html_url`, its `user` the App's bot for an installation token); `fake.open_pull(..., fork="someone/widgets")`
has its head in a fork (`head.repo.full_name`). `fake.review_comment(...)` makes a pull request review comment as
GitHub records one (pulls/comments#get-a-review-comment-for-a-pull-request: `id`, `path`, `line`, `start_line`,
`side`, `user`, `in_reply_to_id`, and `diff_hunk`: the file's hunk in the pull request's diff up to the commented
line), the `comment` of a `pull_request_review_comment` webhook delivery (webhooks/webhook-events-and-payloads#
pull_request_review_comment). "Create a reply for a review comment" (pulls/comments#create-a-reply-for-a-review-
comment: `POST /repos/{o}/{r}/pulls/{n}/comments/{comment_id}/replies` with `body`; `comment_id` must be a
top-level review comment of that pull request, as replies to replies are not supported: else 404; an
installation token needs pull_requests: write) is recorded in `review_comments` with its `in_reply_to_id`.
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
        self.app_id: str | None = None
        self.app_key: str | None = None
        self.installations: dict[tuple[str, str], int] = {}
        self.tokens: dict[str, dict[str, Any]] = {}  # minted token → {"repositories", "permissions"}
        self.token_requests: list[dict[str, Any]] = []
        self.revoked: list[str] = []
        self.permissions: dict[str, str] = {}  # user → permission on every repository
        self.comments: list[dict[str, Any]] = []
        self.pull_requests: dict[tuple[str, int], dict[str, Any]] = {}  # (repo, number) → refs, draft, user
        self.reviews: list[dict[str, Any]] = []
        self.refused_reviews: list[dict[str, Any]] = []
        self.check_runs: list[dict[str, Any]] = []
        self.contents_requests: list[dict[str, str]] = []
        self.review_comments: list[dict[str, Any]] = []

    def open_pull(
        self,
        repo: str,
        number: int,
        head: str,
        base: str = "main",
        draft: bool = False,
        user: str = "author",
        fork: str | None = None,
    ) -> None:
        self.pull_requests[(repo, number)] = {"head": head, "base": base, "draft": draft, "user": user, "fork": fork}

    def _hunk(self, owner: str, repo: str, number: int, path: str, line: int) -> str | None:
        """GitHub's `diff_hunk` of a comment on `line` (head side): the file's hunk from its `@@` header to that
        line, in the pull request's diff (base...head)."""
        pull = self.pull_requests[(repo, number)]
        compared = self._compare(owner, repo, pull["base"], pull["head"]) or {"files": []}
        for f in compared["files"]:
            if f["filename"] != path:
                continue
            hunk: list[str] = []
            at = 0
            for raw in str(f.get("patch", "")).splitlines():
                if raw.startswith("@@"):
                    hunk, at = [raw], int(raw.split("+")[1].split(",")[0].split(" ")[0])
                    continue
                hunk.append(raw)
                if raw[:1] in (" ", "+"):
                    if at == line:
                        return "\n".join(hunk)
                    at += 1
        return None

    def review_comment(
        self,
        repo: str,
        number: int,
        path: str,
        line: int,
        body: str,
        user: str = "maintainer",
        start_line: int | None = None,
        owner: str = "acme",
    ) -> dict[str, Any]:
        """A review comment on `line` (or `start_line`..`line`) of `path` in the pull request's diff, recorded as
        GitHub records it; refused (AssertionError) where GitHub refuses it, off the diff's head-side lines."""
        hunk = self._hunk(owner, repo, number, path, line)
        assert hunk is not None, "GitHub refuses a review comment outside the pull request's diff"
        comment = {
            "id": 7_000 + len(self.review_comments) + 1,
            "repo": repo,
            "number": number,
            "path": path,
            "line": line,
            "original_line": line,
            "start_line": start_line,
            "side": "RIGHT",
            "start_side": "RIGHT" if start_line else None,
            "diff_hunk": hunk,
            "body": body,
            "user": {"login": user, "type": "User"},
            "in_reply_to_id": None,
        }
        self.review_comments.append(comment)
        return comment

    def _git(self, owner: str, repo: str, *args: str) -> subprocess.CompletedProcess[str]:
        bare = self.root / owner / f"{repo}.git"
        return subprocess.run(["git", "-C", str(bare), *args], capture_output=True, text=True, timeout=30)

    def _sha(self, owner: str, repo: str, ref: str) -> str:
        return self._git(owner, repo, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}").stdout.strip()

    def _compare(self, owner: str, repo: str, base: str, head: str) -> dict[str, Any] | None:
        base_sha, head_sha = self._sha(owner, repo, base), self._sha(owner, repo, head)
        if not (base_sha and head_sha):
            return None
        counts = self._git(owner, repo, "rev-list", "--left-right", "--count", f"{base_sha}...{head_sha}").stdout
        behind, ahead = (int(n) for n in counts.split())
        status = (
            "identical" if not (ahead or behind) else "ahead" if not behind else "behind" if not ahead else "diverged"
        )
        diff = self._git(owner, repo, "diff", "--no-color", "--no-renames", f"{base_sha}...{head_sha}").stdout
        files: list[dict[str, Any]] = []
        for section in diff.split("diff --git ")[1:]:
            header, _, rest = section.partition("\n@@")
            name = next(
                (ln[6:] for ln in header.splitlines() if ln.startswith("+++ b/")),
                next((ln[6:] for ln in header.splitlines() if ln.startswith("--- a/")), ""),
            )
            kind = "added" if "new file mode" in header else "removed" if "deleted file mode" in header else "modified"
            files.append({"filename": name, "status": kind, **({"patch": "@@" + rest.rstrip("\n")} if rest else {})})
        return {"status": status, "ahead_by": ahead, "behind_by": behind, "files": files}

    def _review_lines(self, owner: str, repo: str, number: int, commit: str) -> dict[str, list[set[int]]]:
        """The RIGHT-side lines of the pull request's diff at `commit`, hunk by hunk, per file."""
        pull = self.pull_requests[(repo, number)]
        compared = self._compare(owner, repo, pull["base"], commit) or {"files": []}
        out: dict[str, list[set[int]]] = {}
        for f in compared["files"]:
            hunks: list[set[int]] = []
            line = 0
            for raw in str(f.get("patch", "")).splitlines():
                if raw.startswith("@@"):
                    line = int(raw.split("+")[1].split(",")[0].split(" ")[0])
                    hunks.append(set())
                elif hunks and raw[:1] in (" ", "+"):
                    hunks[-1].add(line)
                    line += 1
            out[f["filename"]] = hunks
        return out

    def install_app(self, app_id: str, public_key_pem: str, installations: dict[tuple[str, str], int]) -> None:
        self.app_id, self.app_key, self.installations = app_id, public_key_pem, installations

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v3"

    def repo_url(self, owner: str, name: str) -> str:
        return f"{self.url}/{owner}/{name}.git"

    def _allows(self, token: str, repo: str, permission: str) -> bool:
        """The personal token may do anything; an installation token only on its repositories, as granted."""
        if token == self.token:
            return True
        grant = self.tokens.get(token)
        return bool(grant and repo in grant["repositories"] and grant["permissions"].get(permission) == "write")

    def _authorized(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            repo = request.match_info["repo"]
            if password == self.token or (password in self.tokens and repo in self.tokens[password]["repositories"]):
                pushing = "git-receive-pack" in request.path_qs
                if pushing and not self._allows(password, repo, "contents"):
                    return None
                return user
        return None

    def _app_jwt_ok(self, request: web.Request) -> bool:
        import jwt

        header = request.headers.get("Authorization", "")
        if not (self.app_key and header.startswith("Bearer ")):
            return False
        try:
            claims = jwt.decode(
                header[7:], self.app_key, algorithms=["RS256"], options={"require": ["iat", "exp", "iss"]}
            )
        except jwt.InvalidTokenError:
            return False
        return str(claims["iss"]) == self.app_id

    def _bearer(self, request: web.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    async def installation(self, request: web.Request) -> web.Response:
        if not self._app_jwt_ok(request):
            return web.json_response({"message": "A JSON web token could not be decoded"}, status=401)
        found = self.installations.get((request.match_info["owner"], request.match_info["repo"]))
        if found is None:
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response({"id": found, "app_id": int(self.app_id or 0)})

    async def access_token(self, request: web.Request) -> web.Response:
        if not self._app_jwt_ok(request):
            return web.json_response({"message": "A JSON web token could not be decoded"}, status=401)
        body = await request.json()
        installation = int(request.match_info["id"])
        self.token_requests.append({"installation": installation, **body})
        installed = {repo for (_, repo), i in self.installations.items() if i == installation}
        if not set(body.get("repositories", [])) <= installed:
            return web.json_response({"message": "There is at least one repository that does not exist"}, status=422)
        token = f"ghs_fake_installation_{len(self.token_requests):04d}_0123456789"
        self.tokens[token] = {"repositories": list(body.get("repositories", [])), "permissions": body["permissions"]}
        return web.json_response({"token": token, "expires_at": "2099-01-01T00:00:00Z"}, status=201)

    async def revoke_token(self, request: web.Request) -> web.Response:
        token = self._bearer(request)
        if self.tokens.pop(token, None) is None:
            return web.json_response({"message": "Bad credentials"}, status=401)
        self.revoked.append(token)
        return web.Response(status=204)

    async def permission(self, request: web.Request) -> web.Response:
        if self._bearer(request) not in self.tokens:
            return web.json_response({"message": "Bad credentials"}, status=401)
        user = request.match_info["user"]
        return web.json_response({"permission": self.permissions.get(user, "read"), "user": {"login": user}})

    async def issue_comments(self, request: web.Request) -> web.Response:
        owner, repo = request.match_info["owner"], request.match_info["repo"]
        token, number = self._bearer(request), int(request.match_info["number"])
        if not (self._allows(token, repo, "issues") or self._allows(token, repo, "pull_requests")):
            return web.json_response({"message": "Resource not accessible by integration"}, status=403)
        if request.method == "GET":
            return web.json_response([c for c in self.comments if (c["repo"], c["number"]) == (repo, number)])
        comment = {"id": len(self.comments) + 1, "owner": owner, "repo": repo, "number": number}
        comment["body"] = (await request.json())["body"]
        comment["edits"] = 0
        self.comments.append(comment)
        return web.json_response(comment, status=201)

    async def edit_comment(self, request: web.Request) -> web.Response:
        repo, comment_id = request.match_info["repo"], int(request.match_info["id"])
        if not (
            self._allows(self._bearer(request), repo, "issues")
            or self._allows(self._bearer(request), repo, "pull_requests")
        ):
            return web.json_response({"message": "Resource not accessible by integration"}, status=403)
        for comment in self.comments:
            if comment["id"] == comment_id and comment["repo"] == repo:
                comment["body"] = (await request.json())["body"]
                comment["edits"] += 1
                return web.json_response(comment)
        return web.json_response({"message": "Not Found"}, status=404)

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
        if not self._allows(self._bearer(request), request.match_info["repo"], "pull_requests"):
            return web.json_response({"message": "Bad credentials"}, status=401)
        if self.pr_status:
            return web.json_response({"message": "Validation Failed"}, status=self.pr_status)
        body = await request.json()
        owner, repo = request.match_info["owner"], request.match_info["repo"]
        number = len(self.pulls) + 1
        while (repo, number) in self.pull_requests:  # pull requests and issues share one numbering
            number += 1
        # Opened with an installation token, a pull request's author is the App's bot account.
        opener = "kilo-bridge[bot]" if self._bearer(request) in self.tokens else "author"
        self.open_pull(repo, number, str(body.get("head", "")), str(body.get("base", "main")), user=opener)
        pull = {
            "owner": owner,
            "repo": repo,
            "number": number,
            **body,
            "html_url": f"{self.url}/{owner}/{repo}/pull/{number}",
        }
        self.pulls.append(pull)
        return web.json_response(pull, status=201)

    async def get_pull(self, request: web.Request) -> web.Response:
        owner, repo, number = request.match_info["owner"], request.match_info["repo"], int(request.match_info["number"])
        if self._bearer(request) not in self.tokens and self._bearer(request) != self.token:
            return web.json_response({"message": "Bad credentials"}, status=401)
        pull = self.pull_requests.get((repo, number))
        if pull is None:
            return web.json_response({"message": "Not Found"}, status=404)
        full = {"full_name": f"{owner}/{repo}"}
        head_repo = {"full_name": pull["fork"]} if pull.get("fork") else full
        return web.json_response(
            {
                "number": number,
                "html_url": f"{self.url}/{owner}/{repo}/pull/{number}",
                "draft": pull["draft"],
                "user": {"login": pull["user"], "type": "Bot" if pull["user"].endswith("[bot]") else "User"},
                "head": {"ref": pull["head"], "sha": self._sha(owner, repo, pull["head"]), "repo": head_repo},
                "base": {"ref": pull["base"], "sha": self._sha(owner, repo, pull["base"]), "repo": full},
            }
        )

    async def reply_to_review_comment(self, request: web.Request) -> web.Response:
        repo, number = request.match_info["repo"], int(request.match_info["number"])
        if not self._allows(self._bearer(request), repo, "pull_requests"):
            return web.json_response({"message": "Resource not accessible by integration"}, status=403)
        top = int(request.match_info["id"])
        found = [
            c
            for c in self.review_comments
            if (c["id"], c["repo"], c["number"]) == (top, repo, number) and c["in_reply_to_id"] is None
        ]
        if not found:
            return web.json_response({"message": "Not Found"}, status=404)
        body = (await request.json()).get("body")
        if not body:
            return web.json_response({"message": "Validation Failed"}, status=422)
        reply = {
            **{k: found[0][k] for k in ("repo", "number", "path", "line", "diff_hunk")},
            "id": 7_000 + len(self.review_comments) + 1,
            "body": body,
            "user": {"login": "kilo-bridge[bot]", "type": "Bot"},
            "in_reply_to_id": top,
        }
        self.review_comments.append(reply)
        return web.json_response(reply, status=201)

    async def compare(self, request: web.Request) -> web.Response:
        owner, repo = request.match_info["owner"], request.match_info["repo"]
        if self._bearer(request) not in self.tokens and self._bearer(request) != self.token:
            return web.json_response({"message": "Bad credentials"}, status=401)
        base, _, head = request.match_info["basehead"].partition("...")
        compared = await asyncio.to_thread(self._compare, owner, repo, base, head)
        if compared is None:
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response(compared)

    async def contents(self, request: web.Request) -> web.Response:
        owner, repo, path = request.match_info["owner"], request.match_info["repo"], request.match_info["path"]
        if self._bearer(request) not in self.tokens and self._bearer(request) != self.token:
            return web.json_response({"message": "Bad credentials"}, status=401)
        ref = request.query.get("ref", "HEAD")
        self.contents_requests.append({"path": path, "ref": ref})
        shown = await asyncio.to_thread(self._git, owner, repo, "show", f"{ref}:{path}")
        if shown.returncode != 0:
            return web.json_response({"message": "Not Found"}, status=404)
        content = base64.b64encode(shown.stdout.encode()).decode()
        return web.json_response({"type": "file", "encoding": "base64", "path": path, "content": content})

    async def create_review(self, request: web.Request) -> web.Response:
        owner, repo, number = request.match_info["owner"], request.match_info["repo"], int(request.match_info["number"])
        if not self._allows(self._bearer(request), repo, "pull_requests"):
            return web.json_response({"message": "Resource not accessible by integration"}, status=403)
        body = await request.json()
        lines = await asyncio.to_thread(self._review_lines, owner, repo, number, body.get("commit_id") or "HEAD")
        for comment in body.get("comments", []):
            end, start = int(comment.get("line") or 0), int(comment.get("start_line") or comment.get("line") or 0)
            in_hunk = any(start in hunk and end in hunk for hunk in lines.get(comment.get("path"), []))
            if not in_hunk or comment.get("side", "RIGHT") != "RIGHT" or start > end:
                self.refused_reviews.append(body)
                return web.json_response(
                    {"message": "Unprocessable Entity", "errors": ["Line could not be resolved"]}, status=422
                )
        review = {"id": len(self.reviews) + 1, "repo": repo, "number": number, **body, "state": "COMMENTED"}
        self.reviews.append(review)
        return web.json_response(review)

    async def check_run(self, request: web.Request) -> web.Response:
        repo = request.match_info["repo"]
        if not self._allows(self._bearer(request), repo, "checks") or self._bearer(request) == self.token:
            # Only a GitHub App's installation token may write check runs.
            return web.json_response({"message": "Resource not accessible by integration"}, status=403)
        body = await request.json()
        if "id" in request.match_info:
            found = [c for c in self.check_runs if c["id"] == int(request.match_info["id"]) and c["repo"] == repo]
            if not found:
                return web.json_response({"message": "Not Found"}, status=404)
            run = found[0]
            run.update(body)
            run["updates"] += 1
        else:
            if not (body.get("name") and body.get("head_sha")):
                return web.json_response({"message": "Invalid request."}, status=422)
            run = {"id": len(self.check_runs) + 1, "repo": repo, "updates": 0, "status": "queued", **body}
            self.check_runs.append(run)
        if run.get("conclusion"):
            run["status"] = "completed"
        return web.json_response(run, status=200 if "id" in request.match_info else 201)

    async def list_pulls(self, request: web.Request) -> web.Response:
        """GET /repos/{owner}/{repo}/pulls: the repository's pull requests, newest first (GitHub's default sort is
        `created`, direction `desc`: https://docs.github.com/en/rest/pulls/pulls#list-pull-requests)."""
        owner, repo = request.match_info["owner"], request.match_info["repo"]
        mine = [p for p in self.pulls if (p["owner"], p["repo"]) == (owner, repo)]
        return web.json_response(list(reversed(mine)))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_post("/api/v3/repos/{owner}/{repo}/pulls", self.create_pull)
        app.router.add_get("/api/v3/repos/{owner}/{repo}/pulls", self.list_pulls)
        app.router.add_get("/api/v3/repos/{owner}/{repo}/installation", self.installation)
        app.router.add_post("/api/v3/app/installations/{id}/access_tokens", self.access_token)
        app.router.add_delete("/api/v3/installation/token", self.revoke_token)
        app.router.add_get("/api/v3/repos/{owner}/{repo}/collaborators/{user}/permission", self.permission)
        app.router.add_route("*", "/api/v3/repos/{owner}/{repo}/issues/{number}/comments", self.issue_comments)
        app.router.add_patch("/api/v3/repos/{owner}/{repo}/issues/comments/{id}", self.edit_comment)
        app.router.add_get("/api/v3/repos/{owner}/{repo}/pulls/{number}", self.get_pull)
        app.router.add_post("/api/v3/repos/{owner}/{repo}/pulls/{number}/reviews", self.create_review)
        app.router.add_post(
            "/api/v3/repos/{owner}/{repo}/pulls/{number}/comments/{id}/replies", self.reply_to_review_comment
        )
        app.router.add_get("/api/v3/repos/{owner}/{repo}/compare/{basehead}", self.compare)
        app.router.add_get("/api/v3/repos/{owner}/{repo}/contents/{path:.+}", self.contents)
        app.router.add_post("/api/v3/repos/{owner}/{repo}/check-runs", self.check_run)
        app.router.add_patch("/api/v3/repos/{owner}/{repo}/check-runs/{id}", self.check_run)
        app.router.add_route("*", "/{owner}/{repo}.git/{tail:.*}", self.git)
        return app


def main() -> None:
    """`make demo`'s GitHub: one repository (made once under --root), its git over HTTP and the pull request API."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", required=True)
    parser.add_argument("--repo", default="demo/widgets", help="owner/name")
    args = parser.parse_args()
    owner, name = args.repo.split("/")
    if not (args.root / owner / f"{name}.git").exists():
        make_repo(args.root, owner, name, {"README.md": "# widgets\n\nA demo repository for Kilo Bridge.\n"})
    fake = FakeGitHub(args.root, args.token)
    fake.port = args.port

    async def serve() -> None:
        await fake.start()
        print(f"fake GitHub listening on {fake.url} (repository {fake.repo_url(owner, name)})", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
