"""Every `reason` a job can end with (its record's and the API's `reason` field), in one place: `EndReason`. The
runner, the store's scripts, the reaper, the worker and the ECS finalizer each produce some of them (the Python
ones as members, so mypy holds them to this list). The README's list ("Agent jobs" → States) and the API's
description of `reason` are this one; tests/unit/test_docs.py checks that the code (its Lua too) produces nothing
missing here and that each member is documented."""

from __future__ import annotations

from enum import StrEnum


class EndReason(StrEnum):
    """Why a job ended, when it did not succeed: the `reason` of its record."""

    # the runner (agent_task/runner.py)
    REPO_REFUSED = "repo_refused"
    SANDBOX_UNAVAILABLE = "sandbox_unavailable"
    CLONE_FAILED = "clone_failed"
    PATCH_FAILED = "patch_failed"
    SETUP_FAILED = "setup_failed"
    AGENT_UNKNOWN = "agent_unknown"
    AGENT_UNSAFE = "agent_unsafe"
    AGENT_FAILED = "agent_failed"
    BUDGET_EXCEEDED = "budget_exceeded"
    BUDGET_UNPRICED = "budget_unpriced"
    CREDITS_EXHAUSTED = "credits_exhausted"
    GATEWAY_RATE_LIMITED = "gateway_rate_limited"
    GATEWAY_UNAVAILABLE = "gateway_unavailable"
    GATEWAY_AUTH_FAILED = "gateway_auth_failed"
    TIMEOUT = "timeout"
    SECRET_IN_DIFF = "secret_in_diff"  # noqa: S105 - a reason's name, no secret
    COMMIT_FAILED = "commit_failed"
    PUSH_FAILED = "push_failed"
    PR_FAILED = "pr_failed"
    GITHUB_FAILED = "github_failed"
    RESOURCE_LIMIT = "resource_limit"
    RECORD_TAMPERED = "record_tampered"
    INTERNAL_ERROR = "internal_error"
    # a deploy job's runner (agent_task/stages/deploy.py)
    BUILD_FAILED = "build_failed"
    DEPLOY_FAILED = "deploy_failed"
    DEPLOY_REJECTED = "deploy_rejected"
    APPROVAL_EXPIRED = "approval_expired"
    # the store's scripts (jobs/lua/), the worker and the reaper
    CANCELLED_BY_USER = "cancelled_by_user"
    WORKER_LOST = "worker_lost"
    RUNNER_DIED = "runner_died"
    HEARTBEAT_LOST = "heartbeat_lost"
    DEADLINE_PASSED = "deadline_passed"
    NEVER_STARTED = "never_started"
    # AWS (jobs/ecs.py)
    DISPATCH_FAILED = "dispatch_failed"
    TASK_STOPPED = "task_stopped"


# What each reason means, as the docs say it.
DESCRIPTIONS: dict[EndReason, str] = {
    # the runner (agent_task/runner.py)
    EndReason.REPO_REFUSED: "the repository URL is refused by policy when the runner checks it again",
    EndReason.SANDBOX_UNAVAILABLE: "the agent's OS sandbox (AGENT_SANDBOX) cannot be had here",
    EndReason.CLONE_FAILED: "git clone failed",
    EndReason.PATCH_FAILED: "the run's patch could not be applied at all",
    EndReason.SETUP_FAILED: "one of its profile's setup commands failed before the agent started",
    EndReason.AGENT_UNKNOWN: "the Kilo CLI does not know the agent by name",
    EndReason.AGENT_UNSAFE: "a report-only agent is not denied what it must be by the Kilo CLI",
    EndReason.AGENT_FAILED: "the Kilo CLI failed",
    EndReason.BUDGET_EXCEEDED: "the job's cost cap (maxCostUsd) was reached",
    EndReason.BUDGET_UNPRICED: "the model has no price, so the cost cap could not be kept",
    EndReason.CREDITS_EXHAUSTED: "the Kilo Gateway kept answering 402",
    EndReason.GATEWAY_RATE_LIMITED: "the Kilo Gateway kept answering 429",
    EndReason.GATEWAY_UNAVAILABLE: "the Kilo Gateway kept failing or timing out",
    EndReason.GATEWAY_AUTH_FAILED: "the Kilo Gateway refused the server's KILO_API_KEY",
    EndReason.TIMEOUT: "the job ran past its timeoutMs",
    EndReason.SECRET_IN_DIFF: "the change contains a value of profileEnv: not pushed",
    EndReason.COMMIT_FAILED: "git commit failed",
    EndReason.PUSH_FAILED: "git push failed",
    EndReason.PR_FAILED: "the pull request could not be opened",
    EndReason.GITHUB_FAILED: "a pull request review could not read its pull request or run its check on GitHub",
    EndReason.RESOURCE_LIMIT: "the agent was held at one of the AGENT_MAX_*/AGENT_TMP_MB limits",
    EndReason.RECORD_TAMPERED: "the job's record changed in Redis after submission: nothing was opened or run",
    EndReason.INTERNAL_ERROR: "an unexpected error in the runner",
    # a deploy job's runner (agent_task/stages/deploy.py)
    EndReason.BUILD_FAILED: "the deploy agent reported its build FAILED: nothing was deployed",
    EndReason.DEPLOY_FAILED: "the deploy command exited non-zero",
    EndReason.DEPLOY_REJECTED: "the deploy awaiting approval was rejected",
    EndReason.APPROVAL_EXPIRED: "no approval within DEPLOY_APPROVAL_TTL_S",
    # the store's scripts (jobs/lua/), the worker and the reaper
    EndReason.CANCELLED_BY_USER: "cancelled (DELETE, the console, `jobs cancel`)",
    EndReason.WORKER_LOST: "the worker running it stopped, attempts used up",
    EndReason.RUNNER_DIED: "its runner died, attempts used up",
    EndReason.HEARTBEAT_LOST: "no heartbeat for JOB_STALE_S",
    EndReason.DEADLINE_PASSED: "still running past its deadline plus JOB_STALE_S",
    EndReason.NEVER_STARTED: "still queued after JOB_QUEUE_MAX_WAIT_S",
    # AWS (jobs/ecs.py)
    EndReason.DISPATCH_FAILED: "its ECS task could not be started",
    EndReason.TASK_STOPPED: "its ECS task stopped before finishing it",
}
# The reasons as the records and the API spell them, with their meaning.
FAILURE_REASONS: dict[str, str] = {reason.value: DESCRIPTIONS[reason] for reason in EndReason}
