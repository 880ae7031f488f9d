"""Every `reason` a job can end with (its record's and the API's `reason` field), in one place: the runner, the
store's scripts, the reaper, the worker and the ECS finalizer each produce some of them. The README's list
("Agent jobs" → States) is this one; tests/unit/test_docs.py checks both that the code produces nothing missing
here and that each entry here is documented."""

from __future__ import annotations

FAILURE_REASONS: dict[str, str] = {
    # the runner (agent_task/runner.py)
    "repo_refused": "the repository URL is refused by policy when the runner checks it again",
    "sandbox_unavailable": "the agent's OS sandbox (AGENT_SANDBOX) cannot be had here",
    "clone_failed": "git clone failed",
    "patch_failed": "the run's patch could not be applied at all",
    "agent_unknown": "the Kilo CLI does not know the agent by name",
    "agent_unsafe": "a report-only agent is not denied what it must be by the Kilo CLI",
    "agent_failed": "the Kilo CLI failed",
    "budget_exceeded": "the job's cost cap (maxCostUsd) was reached",
    "budget_unpriced": "the model has no price, so the cost cap could not be kept",
    "credits_exhausted": "the Kilo Gateway kept answering 402",
    "gateway_rate_limited": "the Kilo Gateway kept answering 429",
    "gateway_unavailable": "the Kilo Gateway kept failing or timing out",
    "gateway_auth_failed": "the Kilo Gateway refused the server's KILO_API_KEY",
    "bridge_unreachable": "the agent could not reach this bridge's /v1 (BRIDGE_URL)",
    "timeout": "the job ran past its timeoutMs",
    "secret_in_diff": "the change contains a value of profileEnv: not pushed",
    "commit_failed": "git commit failed",
    "push_failed": "git push failed",
    "pr_failed": "the pull request could not be opened",
    "github_failed": "a pull request review could not read its pull request or run its check on GitHub",
    "resource_limit": "the agent was held at one of the AGENT_MAX_*/AGENT_TMP_MB limits",
    "record_tampered": "the job's record changed in Redis after submission: nothing was opened or run",
    "internal_error": "an unexpected error in the runner",
    # the store's scripts (jobs/lua/), the worker and the reaper
    "cancelled_by_user": "cancelled (DELETE, the console, `jobs cancel`)",
    "worker_lost": "the worker running it stopped, attempts used up",
    "runner_died": "its runner died, attempts used up",
    "heartbeat_lost": "no heartbeat for JOB_STALE_S",
    "deadline_passed": "still running past its deadline plus JOB_STALE_S",
    "never_started": "still queued after JOB_QUEUE_MAX_WAIT_S",
    # AWS (jobs/ecs.py)
    "dispatch_failed": "its ECS task could not be started",
    "task_stopped": "its ECS task stopped before finishing it",
}
