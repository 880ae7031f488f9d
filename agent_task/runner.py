"""One agent job, start to end: claim → clone → kilo run → diff → (commit, push, pull request) → artifacts
→ final state in one atomic step. Used by the ECS task and by the local worker alike.

Whatever happens, the job ends in a final state with a reason, its artifacts uploaded and its working tree
removed — except when the runner itself is killed: then its worker (its parent) starts the next attempt or
fails the job, and removes the workspace (named by the job id); on ECS the finalizer fails a stopped task's
job. Redis may be away for a while (shorter than JOB_STALE_S): log lines and heartbeats wait in the runner,
and what the job cannot do without (its end above all) is retried until Redis answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson

from agent_task import app_token, procs
from agent_task.git import GitEnv, clone_argv
from agent_task.github import PullRequestError, open_pull_request
from agent_task.joblog import JobLog
from agent_task.kilo import AgentProgress, cli_env, listed_agents, not_denied, provider_config
from agent_task.sandbox import Sandbox, SandboxUnavailable, resolve
from kilo_bridge.config import Settings
from kilo_bridge.errors import BridgeError
from kilo_bridge.jobs.artifacts import artifact_store
from kilo_bridge.jobs.catalogue import AgentSpec, get_agent
from kilo_bridge.jobs.models import DiffStat, JobResult
from kilo_bridge.jobs.policy import LOOPBACK_HOSTS, REPO_TOKEN_NAMES, blocked_address, check_repo_url, repo_token
from kilo_bridge.jobs.record import now_ms
from kilo_bridge.jobs.secrets import secret_box
from kilo_bridge.jobs.store import JobStore
from kilo_bridge.jobs.workspace import fresh_workspace, remove_workspace, runner_name
from kilo_bridge.keys.store import JobKeyUsage, KeyStore
from kilo_bridge.money import nusd, usd
from kilo_bridge.observability import get_logger
from kilo_bridge.platform.redis import REDIS_DOWN, Store
from kilo_bridge.platform.security import Redactor

logger = get_logger()
# A persistent gateway error the agent met, as the reason its job failed (else `agent_failed`).
GATEWAY_REASONS = {
    "credits_exhausted": "credits_exhausted",
    "upstream_rate_limited": "gateway_rate_limited",
    "rate_limited": "gateway_rate_limited",
    "upstream_unavailable": "gateway_unavailable",
    "upstream_timeout": "gateway_unavailable",
    "upstream_unreachable": "gateway_unavailable",
    "gateway_auth_failed": "gateway_auth_failed",
}
MAX_DIFF_BYTES = 20_000_000
TAIL_LINES = 20
RETRY_MAX_S = 2.0
T = TypeVar("T")


class JobEnded(Exception):
    """The job ends here with this status and reason (the work so far is still collected)."""

    def __init__(self, status: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class Lost(Exception):
    """The job is no longer ours (another attempt owns it, or it was ended elsewhere): stop quietly."""


class Runner:
    def __init__(self, settings: Settings, job_id: str, worker: str | None = None) -> None:
        self.settings = settings
        self.job_id = job_id
        self.worker = worker or runner_name(os.getpid())
        self.store = Store(settings)
        self.jobs = JobStore(self.store)
        self.stop = asyncio.Event()
        self.stop_why = ""
        self.phase = "cloning"
        self.progress = 0
        self.repo_dir: Path | None = None
        self.redact = Redactor([])
        self.agent = AgentProgress()
        # The job's own key (its agent's model calls are admitted and metered on it) and what it was metered.
        self.job_key: str | None = None
        self.metered: JobKeyUsage | None = None
        self._failed_seen = 0
        self._rejects: list[str] = []  # `.rej` files a patch left for the agent
        self.sandbox = Sandbox("none")
        self._git_config: bytes | None = None
        self.agent_started = False
        self._app_token: str | None = None  # a GitHub App installation token minted for this job alone
        self._unreachable = False

    # -- the whole job -----------------------------------------------------------------------------
    async def run(self) -> str:
        """Run the job; returns the final status, or why nothing was done ('busy', 'done', 'missing', 'lost')."""
        try:
            return await self._run()
        finally:
            await self.store.close()

    async def _run(self) -> str:
        record = await self.jobs.get(self.job_id)
        if record is None:
            logger.warning("job not found", extra={"job_id": self.job_id})
            return "missing"
        self.record, self.owner = record, record.owner
        claim = await self.jobs.claim(self.job_id, self.owner, self.worker)
        if claim.verdict != "ok":
            logger.info("job not claimed", extra={"job_id": self.job_id, "verdict": claim.verdict})
            return claim.verdict
        self.attempt = claim.attempt
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + max(0.0, (claim.deadline_ms - now_ms()) / 1000)
        sealed = await self.jobs.sealed_env(self.job_id)
        profile_env: dict[str, str] = {}
        if sealed:
            profile_env = await asyncio.to_thread(secret_box(self.settings).open, self.job_id, sealed)
        self.redact = Redactor([*profile_env.values(), self.settings.api_key])
        workspace = await asyncio.to_thread(fresh_workspace, self.settings, self.job_id)
        # The runner's own files (log, askpass, git's HOME, the diff) in a directory the agent never sees.
        private = workspace / "runner"
        private.mkdir(mode=0o700)
        st = self.settings
        self.log = JobLog(
            self.jobs,
            self.job_id,
            self.redact,
            private / "log.jsonl",
            st.job_log_max_bytes,
            st.job_log_max_lines,
            self.attempt,
        )
        watchdog = asyncio.create_task(self._watch())
        status, reason, error = "succeeded", None, None
        result = JobResult()
        diff = b""
        try:
            await self.log.line(
                "runner",
                f"job {self.job_id} attempt {self.attempt} on {self.worker}: agent {record.agent} on {record.repo_url}",
            )
            result = await self._work(workspace, profile_env)
        except JobEnded as ended:
            status, reason, error = ended.status, ended.reason, self.redact(ended.message)[:2000]
        except Lost:
            await self._cleanup(workspace, watchdog)
            logger.warning("job lost to another attempt", extra={"job_id": self.job_id})
            return "lost"
        except Exception as exc:  # the job must still end, with a reason
            logger.exception("runner error", extra={"job_id": self.job_id})
            status, reason, error = "failed", "internal_error", self.redact(f"{type(exc).__name__}: {exc}")[:2000]
        if self.repo_dir is not None and status != "succeeded":
            # The work so far is kept: a stopped agent's partial change is part of the audit.
            with contextlib.suppress(Exception):
                diff, stat, files = await self._collect(workspace)
                result.diff_stat, result.files_changed = stat, files
        elif self.repo_dir is not None:
            diff = self._diff
        self._fill(result)
        if error:
            await self.log.line("runner", f"job ended {status}: {reason}: {error}", level="error")
        else:
            await self.log.line("runner", f"job ended {status}")
        # Before the job shows as ended, so whoever sees it ended finds its outcome on GitHub too.
        await self._github_end(status, reason, error, result)
        finished = await self._finish(workspace, status, reason, error, result, diff)
        await self._cleanup(workspace, watchdog)
        return status if finished else "lost"

    async def _github_end(self, status: str, reason: str | None, error: str | None, result: JobResult) -> None:
        """The App's token revoked; a job started from GitHub reports its outcome on its issue or pull request."""
        with contextlib.suppress(Exception):  # best effort: the job has ended either way
            if self._app_token:
                await app_token.revoke(self.settings, self._app_token)
            if self.record.notify:
                repo = check_repo_url(self.record.repo_url, self.settings)
                text = app_token.outcome_text(self.record, status, reason, error, result.pr_url, result.summary)
                await app_token.report(self.settings, self.record, repo, self.redact(text)[:60_000])

    def _fill(self, result: JobResult) -> None:
        a = self.agent
        result.steps, result.input_tokens, result.output_tokens = a.steps, a.input_tokens, a.output_tokens
        result.cost_usd = round(usd(self.metered.spend_nusd), 6) if self.metered else 0.0
        result.summary = self.redact(result.summary or a.summary())

    async def _finish(
        self, workspace: Path, status: str, reason: str | None, error: str | None, result: JobResult, diff: bytes
    ) -> bool:
        self.phase, self.progress = "uploading", 95
        await self._beat()
        sizes: dict[str, int] = {}
        store = artifact_store(self.settings)
        log_bytes = await self.log.close(self._patience_left())
        result_bytes = orjson.dumps(
            {
                "jobId": self.job_id,
                "status": status,
                "reason": reason,
                "error": error,
                **result.model_dump(by_alias=True),
            },
            option=orjson.OPT_INDENT_2,
        )
        for name, data in (("log.jsonl", log_bytes), ("diff.patch", diff), ("result.json", result_bytes)):
            try:
                await store.put(self.job_id, name, self.redact(data.decode(errors="replace")).encode())
                sizes[name] = len(data)
            except Exception as exc:  # the job still ends; the missing artifact is said in its error
                logger.warning(
                    "artifact upload failed",
                    extra={"job_id": self.job_id, "artifact": name, "error": type(exc).__name__},
                )
                error = ((error + "; ") if error else "") + f"artifact {name} not stored ({type(exc).__name__})"
        fields: dict[str, Any] = {"result": result.model_dump(by_alias=True), "artifacts": sizes, "progress": "100"}
        if self.metered is not None or not self.agent_started:  # else unknown: the reservation is charged
            fields["costNusd"] = str(self.metered.spend_nusd if self.metered else 0)
        if reason:
            fields["reason"] = reason
        if error:
            fields["error"] = error
        # Gone before the job is seen ended: the agent's HOME holds output never redacted.
        await asyncio.to_thread(remove_workspace, self.settings, self.job_id)
        return await self._finish_once(status, fields)

    async def _finish_once(self, status: str, fields: dict[str, Any]) -> bool:
        """The job's end, retried until Redis answers. A retry after a call whose reply was lost finds the
        job already ended by it: that is our end, not another attempt's."""
        retried = False

        async def end() -> bool:
            nonlocal retried
            again, retried = retried, True
            if await self.jobs.finish(self.job_id, self.owner, self.attempt, status, fields):
                return True
            if not again:
                return False
            record = await self.jobs.get(self.job_id)
            return record is not None and (record.status, record.attempt) == (status, self.attempt)

        return await self._until_redis_answers("finish", end)

    def _patience_left(self) -> float:
        """How long a Redis call the job needs may be retried: past its deadline plus JOB_STALE_S, the reaper
        has ended the job anyway."""
        return max(0.0, self.deadline + self.settings.job_stale_s - asyncio.get_running_loop().time())

    async def _until_redis_answers(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._patience_left()
        delay, told = 0.1, False
        while True:
            try:
                return await call()
            except REDIS_DOWN as exc:
                if loop.time() + delay > give_up:
                    raise
                if not told:
                    logger.warning(
                        "redis unreachable: retrying",
                        extra={"job_id": self.job_id, "step": what, "error": type(exc).__name__},
                    )
                    told = True
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)

    async def _cleanup(self, workspace: Path, watchdog: asyncio.Task[None]) -> None:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        await asyncio.to_thread(remove_workspace, self.settings, self.job_id)

    # -- heartbeat, cancel, lost -------------------------------------------------------------------
    async def _beat(self) -> str:
        """A heartbeat with the current phase and progress; when Redis is away ('unreachable') they wait on
        `self` and the watchdog's next beat carries them. The reaper judges an outage past JOB_STALE_S."""
        try:
            verdict = await self.jobs.heartbeat(self.job_id, self.attempt, self.phase, self.progress)
        except REDIS_DOWN as exc:
            if not self._unreachable:
                logger.warning("heartbeat failed", extra={"job_id": self.job_id, "error": type(exc).__name__})
            self._unreachable = True
            return "unreachable"
        if self._unreachable:
            logger.info("heartbeat back", extra={"job_id": self.job_id})
            self._unreachable = False
        if verdict in ("cancel", "lost") and not self.stop.is_set():
            self.stop_why = verdict
            self.stop.set()
        return verdict

    async def _watch(self) -> None:
        tick = min(0.5, self.settings.job_heartbeat_s)
        while True:
            try:
                await self._beat()
            except Exception as exc:  # whatever else went wrong, the next beat tries again
                logger.warning("heartbeat failed", extra={"job_id": self.job_id, "error": type(exc).__name__})
            await asyncio.sleep(tick)

    def _check_stop(self) -> None:
        if self.stop_why == "lost":
            raise Lost()
        if self.stop_why == "cancel":
            raise JobEnded("cancelled", "cancelled_by_user", "cancelled while " + self.phase)
        if asyncio.get_running_loop().time() >= self.deadline:
            raise JobEnded("timed_out", "timeout", f"the job ran past its timeout ({self.record.timeout_ms} ms)")

    async def _stream(
        self, argv: list[str], env: dict[str, str], cwd: Path, source: str, on_stdout: Any = None
    ) -> procs.Finished:
        tail: list[str] = []

        async def lines(raw: bytes, cut: bool) -> None:
            text = raw.decode(errors="replace") + (" …[line cut]" if cut else "")
            tail.append(text)
            del tail[:-TAIL_LINES]
            await self.log.line(source, text, level="warn" if source.endswith("stderr") else "info")

        finished = await procs.run(
            argv,
            env=env,
            cwd=str(cwd),
            on_stdout=on_stdout or lines,
            on_stderr=lines,
            stop=self.stop,
            stop_reason=lambda: self.stop_why,
            deadline=self.deadline,
            grace_s=self.settings.job_kill_grace_s,
        )
        self._tail = tail
        if finished.stopped:
            await self.log.line("runner", f"stopped {source} ({finished.stopped}): process group killed", level="warn")
            self._check_stop()
            if finished.stopped == "timeout":
                raise JobEnded("timed_out", "timeout", f"the job ran past its timeout ({self.record.timeout_ms} ms)")
        return finished

    # -- the work ----------------------------------------------------------------------------------
    async def _work(self, workspace: Path, profile_env: dict[str, str]) -> JobResult:
        st, record = self.settings, self.record
        spec = get_agent(st.agents_path, record.agent)
        try:
            repo = check_repo_url(record.repo_url, st)
        except BridgeError as exc:
            raise JobEnded("failed", "repo_refused", exc.message) from None
        try:
            self.sandbox = await asyncio.to_thread(resolve, st.agent_sandbox, st.agent_user, st.kilo_cli_path)
        except SandboxUnavailable as exc:
            raise JobEnded("failed", "sandbox_unavailable", str(exc)) from None
        token = repo_token(profile_env)
        if token is None and self._pr_target(repo.host):
            token = self._app_token = await app_token.mint(st, repo, writes=spec.after == "pull_request")
            if token:
                self.redact = self.log.redact = self.redact.with_secret(token)
                await self.log.line("runner", "repository token: a GitHub App installation token for this repository")
        git = GitEnv.create(workspace / "runner", token, st.repo_allow_local, git_dir=workspace / "git")
        git.host = urlsplit(repo.url).netloc.rpartition("@")[2]  # the one host askpass answers for
        self.git = git

        # 1. clone
        self.phase, self.progress = "cloning", 5
        await self._beat()
        if not repo.local:
            why = await asyncio.to_thread(blocked_address, repo.host, st)
            if why:
                raise JobEnded("failed", "repo_refused", why)
        self.repo_dir = workspace / "repo"
        base = record.base_branch
        finished = await self._stream(clone_argv(git, repo.url, self.repo_dir, base), git.env(), workspace, "git")
        if finished.returncode != 0:
            raise JobEnded("failed", "clone_failed", "git clone failed: " + " | ".join(self._tail[-3:]))
        git.work_tree = self.repo_dir
        self._git_config = (git.git_dir / "config").read_bytes()
        if base is None:
            rc, out, _ = await self._git("rev-parse", "--abbrev-ref", "HEAD")
            base = out.decode().strip() if rc == 0 else "main"

        # 2. the patch, if the run carries one; then the agent
        task = record.prompt or spec.default_prompt or ""
        patch = await self._until_redis_answers("patch", lambda: self.jobs.patch(self.job_id))
        if patch is not None:
            task = await self._apply_patch(workspace, patch, record.prompt)
        self.phase, self.progress = "agent", 10
        await self._beat()
        await self._run_agent(spec, workspace, profile_env, task)

        # 3. the change (without the patch's leftovers)
        for name in self._rejects:
            (self.repo_dir / name).unlink(missing_ok=True)
        diff, stat, files = await self._collect(workspace)
        self._diff = diff
        result = JobResult(files_changed=files, diff_stat=stat, exit_code=0, summary=self.agent.summary())
        if self.redact.found_in(diff.decode(errors="replace")):
            raise JobEnded("failed", "secret_in_diff", "the change contains a value from profileEnv; not pushed")
        if spec.after != "pull_request" or record.dry_run or not files:
            await self.log.line(
                "runner",
                "no push: "
                + (
                    "dry run"
                    if record.dry_run
                    else "report-only agent"
                    if spec.after != "pull_request"
                    else "no changes"
                ),
            )
            return result

        # 4. commit, push, pull request
        self.phase, self.progress = "pushing", 85
        await self._beat()
        branch = f"kilo/{self.job_id}"
        title = f"{spec.name}: {(record.prompt or 'automated change').splitlines()[0][:60]}"
        message = f"{title}\n\nKilo Bridge job {self.job_id}"
        for args in (("checkout", "-q", "-b", branch), ("commit", "-q", "-m", message)):
            rc, _, err = await self._git(*args)
            if rc != 0:
                raise JobEnded("failed", "commit_failed", self.redact(err.decode(errors="replace"))[-500:])
        _, sha, _ = await self._git("rev-parse", "HEAD")
        result.commit, result.branch = sha.decode().strip(), branch
        finished = await self._stream(
            # The URL that was cloned, never a remote the agent could have re-pointed (pushurl, insteadOf).
            git.argv("push", "--porcelain", repo.url, f"HEAD:refs/heads/{branch}"),
            git.env(),
            self.repo_dir,
            "git",
        )
        if finished.returncode != 0:
            raise JobEnded("failed", "push_failed", "git push failed: " + " | ".join(self._tail[-3:]))
        await self.log.line("runner", f"pushed {branch}")
        if self._pr_target(repo.host) and repo.owner and repo.name:
            if not token:
                raise JobEnded(
                    "failed",
                    "pr_failed",
                    "no GITHUB_TOKEN in profileEnv (nor a GitHub App installed) for the pull request",
                )
            body = (
                f"{self.agent.summary()}\n\n---\nOpened by Kilo Bridge job `{self.job_id}` (agent "
                f"`{spec.name}`, {len(files)} files, +{stat.insertions}/-{stat.deletions})."
            )
            try:
                result.pr_url = await open_pull_request(
                    st.github_api_url,
                    token,
                    repo.owner,
                    repo.name,
                    head=branch,
                    base=base,
                    title=title,
                    body=self.redact(body),
                )
            except PullRequestError as exc:
                raise JobEnded(
                    "failed", "pr_failed", f"branch {branch} pushed, pull request not opened: {exc}"
                ) from None
            await self.log.line("runner", f"pull request {result.pr_url}")
        return result

    def _pr_target(self, host: str) -> bool:
        return host == "github.com" or (self.settings.repo_allow_local and host in LOOPBACK_HOSTS)

    async def _apply_patch(self, workspace: Path, patch: str, prompt: str | None) -> str:
        """Apply the run's diff; what does not apply is left for the agent (conflict markers from a three-way
        merge, or `.rej` files where the clone lacks the patch's base: clones are shallow). The task follows."""
        path = workspace / "run.patch"  # outside the checkout: never part of the change
        path.write_text(patch)
        rc, out, err = await self._git("apply", "--3way", "--whitespace=nowarn", str(path))
        _, conflicts, _ = await self._git("diff", "--name-only", "--diff-filter=U")
        conflicted = conflicts.decode(errors="replace").split()
        if rc != 0 and not conflicted:
            rc, out, err = await self._git("apply", "--reject", "--whitespace=nowarn", str(path))
            assert self.repo_dir is not None
            self._rejects = sorted(str(p.relative_to(self.repo_dir)) for p in self.repo_dir.rglob("*.rej"))
            if rc != 0 and not self._rejects:
                said = self.redact((out + err).decode(errors="replace")).strip()
                raise JobEnded("failed", "patch_failed", f"the patch does not apply: {said[-500:]}")
            conflicted = [r.removesuffix(".rej") for r in self._rejects]
        if conflicted:
            await self.log.line("runner", f"patch applied with conflicts in {', '.join(conflicted[:20])}", level="warn")
            how = (
                "in the .rej files beside them (apply each rejected hunk by hand)"
                if self._rejects
                else "as conflict markers"
            )
            task = (
                f"A patch was applied to this checkout with conflicts in {', '.join(conflicted[:50])}, "
                f"{how}: resolve every conflict against the current code, keeping the patch's intent."
            )
        else:
            await self.log.line("runner", "patch applied cleanly")
            task = "A patch was applied to this checkout (see `git diff`)."
        then = prompt or (
            "Make sure the repository still builds and its tests pass (run them when it has them), "
            "fixing only what the patch broke."
        )
        return f"{task} {then}"

    async def _run_agent(self, spec: AgentSpec, workspace: Path, profile_env: dict[str, str], task: str) -> None:
        st, record = self.settings, self.record
        model = record.model or st.kilo_default_model
        if record.max_cost_usd is not None and not await self._priced(model):
            # A cap that cannot be enforced is refused rather than silently ignored.
            raise JobEnded(
                "failed",
                "budget_unpriced",
                f"maxCostUsd is set but {model} has no price in the Kilo "
                "Gateway's model list, so its cost cannot be tracked; the agent was not started",
            )
        cli = self.sandbox.cli or st.kilo_cli_path
        argv = self._in_sandbox([cli, "run", "--auto", "--format", "json", "--agent", spec.name, "--", task], spec)
        assert self.repo_dir is not None
        if not os.access(st.kilo_cli_path, os.X_OK):
            raise JobEnded(
                "failed",
                "agent_failed",
                f"the Kilo CLI is not installed at {st.kilo_cli_path} "
                "(`make install` puts the pinned one in agent_task/node_modules; or set KILO_CLI)",
            )
        await self._check_bridge()
        keys = KeyStore(self.store)
        budget = nusd(record.max_cost_usd) if record.max_cost_usd is not None else 0
        ttl = int(max(1.0, self.deadline - asyncio.get_running_loop().time())) + 60
        self.job_key = await self._until_redis_answers(
            "job key", lambda: keys.create_job_key(self.job_id, budget, st.job_key_rpm, ttl, record.owner)
        )
        self.redact = self.redact.with_secret(self.job_key)
        self.log.redact = self.redact
        agent_env = {k: v for k, v in profile_env.items() if k not in REPO_TOKEN_NAMES}  # git alone gets those
        agent_dir = workspace / "agent"
        env = cli_env(st, agent_dir, st.agents_path, provider_config(st, model), agent_env, self.job_key)
        self._confine(workspace, agent_dir, spec)

        async def on_event(raw: bytes, cut: bool) -> None:
            try:
                event = orjson.loads(raw) if not cut else None
            except orjson.JSONDecodeError:
                event = None
            if not isinstance(event, dict):
                await self.log.line("kilo", raw.decode(errors="replace") + (" …[line cut]" if cut else ""))
                return
            said = self.agent.apply(event)
            self.progress = min(80, 10 + 7 * self.agent.steps)
            await self.log.line(
                "kilo",
                said or str(event.get("type")),
                event=event,
                level="error" if event.get("type") == "error" else "info",
            )

        await self._check_agent(spec, env, cli)
        await self.log.line("runner", f"sandbox: {self.sandbox.mode}")
        await self.log.line("runner", f"kilo run --agent {spec.name} (model {model}, via {st.agent_api_base})")
        self.agent_started = True
        meter = asyncio.create_task(self._meter(keys))
        try:
            finished = await self._stream(argv, env, self.repo_dir, "kilo-stderr", on_stdout=on_event)
        finally:
            meter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await meter
            await self._meter_once(keys)  # what happened since the last look, said before the job ends
            await self._settle_job_key(keys)
        usage = self.metered
        spent = f"${usd(usage.spend_nusd):.4f}" if usage else "unknown"
        if usage is not None and usage.budget_refusals:
            raise JobEnded(
                "failed",
                "budget_exceeded",
                f"the agent's next model call would pass maxCostUsd ({record.max_cost_usd}); spent {spent}",
            )
        if finished.returncode != 0 or self.agent.errors:
            detail = "; ".join(self.agent.errors[-2:]) or " | ".join(self._tail[-3:])
            reason = GATEWAY_REASONS.get(usage.last_error or "", "agent_failed") if usage else "agent_failed"
            if reason != "agent_failed" and usage is not None:
                detail = f"the Kilo Gateway answered {usage.last_error} ({usage.failed} failed calls); {detail}"
            raise JobEnded("failed", reason, f"the agent exited with {finished.returncode}: {detail}")

    async def _check_bridge(self) -> None:
        """The agent's model calls go through this bridge's `/v1`: refuse to start an agent that cannot reach it."""
        base = self.settings.agent_api_base.removesuffix("/v1")
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                await client.get(base + "/healthz")
        except httpx.HTTPError as exc:
            raise JobEnded(
                "failed",
                "bridge_unreachable",
                f"the agent's model calls go through {base}/v1 and it does not answer ({type(exc).__name__}); "
                "run the server (`make run`) or set BRIDGE_URL",
            ) from None

    async def _meter(self, keys: KeyStore) -> None:
        """While the agent runs: what its key is metered for, and the gateway errors it meets, in the live log;
        the agent is stopped once a call was refused for its cost cap."""
        while True:
            await asyncio.sleep(min(1.0, self.settings.job_heartbeat_s * 2))
            await self._meter_once(keys)

    async def _meter_once(self, keys: KeyStore) -> None:
        assert self.job_key is not None
        try:
            usage = await keys.job_key_usage(self.job_key)
        except Exception as exc:  # a Redis blip: the heartbeat loop judges real outages
            logger.info("metering read failed", extra={"job_id": self.job_id, "error": type(exc).__name__})
            return
        self.metered = usage
        if usage.failed > self._failed_seen and usage.last_error not in (None, "client_disconnected"):
            self._failed_seen = usage.failed
            await self.log.line(
                "bridge",
                f"a model call failed: {usage.last_error} ({usage.failed} of {usage.requests} calls so far)",
                level="warn",
            )
        if usage.budget_refusals and self.stop_why == "":
            await self.log.line("bridge", "the cost cap is reached: the agent's next model call was refused")
            self.stop_why = "budget"
            self.stop.set()

    async def _settle_job_key(self, keys: KeyStore) -> None:
        """Revoke the job's key once its last calls settled; its spend is the job's cost."""
        if self.job_key is None:
            return
        secret = self.job_key
        with contextlib.suppress(Exception):
            for _ in range(30):  # calls admitted before the agent exited settle within moments
                usage = await keys.job_key_usage(secret)
                if usage.reserved_nusd <= 0:
                    break
                await asyncio.sleep(0.1)
        with contextlib.suppress(Exception):  # its spend is the job's cost: worth waiting for Redis
            self.metered = await self._until_redis_answers("revoke job key", lambda: keys.revoke_job_key(secret))

    def _in_sandbox(self, argv: list[str], spec: AgentSpec) -> list[str]:
        assert self.repo_dir is not None
        return self.sandbox.wrap(
            argv,
            cwd=self.repo_dir,
            writable=[self.repo_dir.parent / "agent"],
            readable=[],
            repo_writable=not spec.read_only,
        )

    def _confine(self, workspace: Path, agent_dir: Path, spec: AgentSpec) -> None:
        """As its own user, the agent owns its HOME and config (and the checkout, unless it only reports);
        the workspace lets it pass through to them, never list or read the runner's files."""
        if self.sandbox.mode != "user" or self.sandbox.user is None:
            return
        uid, gid = self.sandbox.user
        workspace.chmod(0o711)
        owned = [agent_dir] + ([self.repo_dir] if self.repo_dir is not None and not spec.read_only else [])
        for top in owned:
            for root, dirs, files in os.walk(top):
                for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.lchown(name, uid, gid)

    async def _check_agent(self, spec: AgentSpec, env: dict[str, str], cli: str) -> None:
        """The CLI must know the agent by its name (an unknown `--agent` only warns and runs the CLI's default
        agent, which may do anything), and a report-only agent must come out of the CLI's own rule merge
        denying every tool that could change or leave its checkout."""
        assert self.repo_dir is not None
        argv = self._in_sandbox([cli, "agent", "list"], spec)
        rc, out, err = await procs.capture(argv, env=env, cwd=str(self.repo_dir), timeout_s=120)
        agents = listed_agents(out.decode(errors="replace"))
        if spec.name not in agents:
            detail = self.redact(err.decode(errors="replace").strip())[-300:]
            raise JobEnded(
                "failed",
                "agent_unknown",
                f"the Kilo CLI does not know the agent {spec.name!r} (`kilo agent list` exited {rc}"
                + (f": {detail}" if detail else "")
                + "); the job is not run with the CLI's default agent instead",
            )
        if spec.read_only:
            left = not_denied(agents[spec.name], env["HOME"])
            if left:
                raise JobEnded(
                    "failed",
                    "agent_unsafe",
                    f"the report-only agent {spec.name!r} is not denied {', '.join(left)} by the Kilo CLI; not run",
                )

    async def _priced(self, model: str) -> bool:
        from kilo_bridge.gateway.client import GatewayClient
        from kilo_bridge.gateway.pricing import PriceBook

        gateway = GatewayClient(self.settings)
        try:
            if model in await PriceBook(gateway).prices():
                return True
        except Exception as exc:
            logger.warning("no model prices", extra={"job_id": self.job_id, "error": type(exc).__name__})
        finally:
            await gateway.close()
        await self.log.line("runner", f"no price for {model}: its calls are charged at their reservation", level="warn")
        return False

    async def _git(self, *args: str) -> tuple[int, bytes, bytes]:
        assert self.repo_dir is not None
        return await procs.capture(self.git.argv(*args), env=self.git.env(), cwd=str(self.repo_dir), timeout_s=120)

    async def _collect(self, workspace: Path) -> tuple[bytes, DiffStat, list[str]]:
        """Stage everything the agent changed; the binary diff, its stat and the file names."""
        if self._git_config is not None:
            self.git.reseal(self._git_config)
        await self._git("add", "-A")
        patch = workspace / "runner" / "diff.patch"
        await self._git("diff", "--cached", "--binary", f"--output={patch}")
        _, numstat, _ = await self._git("diff", "--cached", "--numstat")
        stat, files = DiffStat(), []
        for line in numstat.decode(errors="replace").splitlines():
            added, deleted, name = ([*line.split("\t", 2), "", ""])[:3]
            files.append(name)
            stat.insertions += int(added) if added.isdigit() else 0
            stat.deletions += int(deleted) if deleted.isdigit() else 0
        stat.files = len(files)
        data = patch.read_bytes()[:MAX_DIFF_BYTES] if patch.exists() else b""
        return data, stat, files[:1000]
