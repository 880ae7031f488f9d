"""Agent jobs as the API takes and shows them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from kilo_bridge.jobs.egress import ALLOW_ENTRY_SCHEMA, allow_entry_problem
from kilo_bridge.jobs.policy import BRANCH_PATTERN
from kilo_bridge.jobs.reasons import EndReason
from kilo_bridge.jobs.record import JobNetwork, JobPhase, JobStatus, ShownStatus
from kilo_bridge.models import MODEL_ID, ApiModel
from kilo_bridge.profiles.env import ENV_SCHEMA, ENV_TOTAL_RULE
from kilo_bridge.profiles.models import PROFILE_NAME

AGENT_NAME = r"^[a-z0-9][a-z0-9-]{0,63}$"
PATCH_MAX_CHARS = 500_000
ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"


def base_branch_field() -> Any:
    """`baseBranch` of a run, a trigger's or a schedule's: a git branch name, its pattern the one the job checks
    (the pattern is stated in the schema; `jobs.policy.check_branch` enforces it, with its own message)."""
    return Field(
        None,
        min_length=1,
        max_length=200,
        description="A git branch name.",
        json_schema_extra={"pattern": BRANCH_PATTERN},
    )


class DeployStep(ApiModel):
    command: str = Field(
        min_length=1,
        max_length=4_000,
        description="The shell command the runner runs in the job's sandbox after the agent's preparation, with "
        "the profile's values in its environment (never the agent's). A line `KILO_DEPLOY_URL=<url>` it prints "
        "becomes the result's `deployUrl`.",
    )
    allow: list[str] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra={"items": ALLOW_ENTRY_SCHEMA},
        description="Hosts the command may reach (like AGENT_EGRESS_ALLOW: `host` or `*.domain`, `:port` "
        "optional, 80/443 by default), for that step alone.",
    )

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: list[str]) -> list[str]:
        for entry in value:
            problem = allow_entry_problem(entry)
            if problem:
                raise ValueError(f"{entry[:100]!r}: {problem}")
        return value


class RunAgentRequest(ApiModel):
    repo_url: str = Field(min_length=1, max_length=2048, description="https URL of a git repository, allowed host.")
    agent: str = Field(pattern=AGENT_NAME, description="A name from GET /api/kilo/agents.")
    prompt: str | None = Field(None, min_length=1, max_length=20_000, description="The task given to the agent.")
    profile_env: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description="Secrets and settings for the job (e.g. GITHUB_TOKEN); encrypted at rest, never returned. "
        + ENV_TOTAL_RULE
        + " The same with a `profile`'s values added.",
        json_schema_extra=ENV_SCHEMA,
    )
    profile: str | None = Field(
        None,
        pattern=PROFILE_NAME,
        description="A saved profile (GET /api/kilo/profiles) whose variables the job gets; `profileEnv` wins.",
    )
    timeout_ms: int | None = Field(None, ge=1_000, le=3_600_000, description="Default 10 minutes, at most 60.")
    dry_run: bool = Field(False, description="Keep the diff only: no commit, push or pull request.")
    base_branch: str | None = base_branch_field()
    model: str | None = Field(None, pattern=MODEL_ID)
    max_cost_usd: float | None = Field(None, gt=0, le=10_000, description="Stop the agent before passing this cost.")
    patch: str | None = Field(
        None,
        min_length=1,
        max_length=PATCH_MAX_CHARS,
        description="A unified diff (`git diff` output) applied to the checkout before the agent runs; conflicts "
        "are left as markers for the agent to resolve. Only for agents that accept one (GET /api/kilo/agents).",
    )
    network: JobNetwork | None = Field(
        None,
        description="The agent's network: `none` or `allowlist`; absent = the agent's default. Jobs started "
        "from GitHub text get `none` unless their repository is opted in (GITHUB_AGENT_NETWORK).",
    )
    deploy: DeployStep | None = Field(
        None,
        description="The `deploy` agent's step (else the profile's DEPLOY_COMMAND and DEPLOY_ALLOW); never "
        "taken from the repository. Only for a deploy agent, which needs `deploy.command` or a `profile` that "
        "holds DEPLOY_COMMAND.",
    )
    require_approval: bool = Field(
        False, description="A deploy waits in `awaiting_approval` for POST /api/kilo/job/{id}/approve."
    )


class FollowUpRequest(ApiModel):
    """The next task in a finished job's conversation: same agent, repository, branch, secrets and session."""

    prompt: str = Field(min_length=1, max_length=20_000, description="What the agent is asked next.")
    max_cost_usd: float | None = Field(None, gt=0, le=10_000, description="This job's own cost cap.")
    dry_run: bool = Field(False, description="Keep the diff only: nothing pushed.")
    timeout_ms: int | None = Field(None, ge=1_000, le=3_600_000, description="Default: the parent job's.")


class FollowUpAccepted(ApiModel):
    job_id: str
    parent_job_id: str
    status_url: str


class JobMessage(ApiModel):
    """Something to tell a running job's agent: it gets it as a user message at its next step."""

    text: str = Field(min_length=1, max_length=20_000)
    wait_ms: int = Field(
        20_000, ge=0, le=60_000, description="How long the answer waits for the delivery before saying `pending`."
    )


class JobMessageAccepted(ApiModel):
    message_id: str
    job_id: str
    delivery: Literal["delivered", "ended", "pending"] = Field(
        description="`delivered`: in the agent's next model request; `ended`: the job ended before it; "
        "`pending`: not yet, after `waitMs`."
    )


class ThreadJob(ApiModel):
    """One job of a conversation, oldest first."""

    job_id: str
    status: ShownStatus
    prompt: str | None = None
    cost_usd: float = Field(0.0, description="This job's own cost (its agent's model calls).")


class RunAgentAccepted(ApiModel):
    job_id: str
    status: JobStatus
    status_url: str


class DiffStat(ApiModel):
    files: int = 0
    insertions: int = 0
    deletions: int = 0


class DeployOutcome(ApiModel):
    """What the runner's deploy command did (its output redacted of every profile value)."""

    exit_code: int | None = None
    duration_ms: int = 0
    output_tail: list[str] = Field(default_factory=list)
    url: str | None = Field(None, description="From a line `KILO_DEPLOY_URL=<url>` the command printed.")


class Approval(ApiModel):
    """What a person approves before a deploy runs."""

    command: str
    allow: list[str] = Field(default_factory=list)
    build: str = Field("", description="The agent's build result (its summary).")
    diff_stat: DiffStat = Field(default_factory=DiffStat)
    files_changed: list[str] = Field(default_factory=list)
    diff: str = Field("", description="The agent's change to the checkout (cut at 64 KB).")
    expires_at: str | None = None
    decision: str | None = None


class JobResult(ApiModel):
    summary: str = ""
    files_changed: list[str] = Field(default_factory=list)
    diff_stat: DiffStat = Field(default_factory=DiffStat)
    pr_url: str | None = None
    branch: str | None = None
    commit: str | None = None
    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    exit_code: int | None = None
    # The agent's connections its egress proxy refused (each one a line of the job's log).
    egress_denied: int = 0
    deploy: DeployOutcome | None = None


class ArtifactLink(ApiModel):
    key: str
    url: str
    bytes: int


class PhaseTiming(ApiModel):
    """One phase of a job: `queued`, then the runner's (cloning, agent, pushing, uploading)."""

    phase: str
    started_at: str | None = None
    duration_ms: int | None = Field(
        None, description="Until the next phase began or the job ended; null while current."
    )


class JobView(ApiModel):
    id: str
    status: ShownStatus
    phase: JobPhase = ""
    progress: int = Field(0, ge=0, le=100)
    agent: str
    repo_url: str
    base_branch: str | None = None
    model: str | None = None
    prompt: str | None = Field(None, description="The task as given; null: the agent's default task ran.")
    dry_run: bool = False
    timeout_ms: int
    max_cost_usd: float | None = None
    network: JobNetwork | None = Field(None, description="The job's own network policy; absent = its agent's.")
    deploy: DeployStep | None = None
    require_approval: bool = False
    approval: Approval | None = Field(None, description="A deploy awaiting (or past) its approval.")
    key_id: str | None = Field(None, description="The API key that started the job (its id, never the key).")
    attempt: int = 0
    cancel_requested: bool = False
    created_at: str
    started_at: str | None = None
    heartbeat_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = Field(None, description="Created to finished, once the job has ended.")
    phases: list[PhaseTiming] = Field(default_factory=list, description="Each phase with its start and duration.")
    outcome: str | None = Field(
        None,
        description='What came of it, in one line (e.g. "dry run: diff kept, nothing pushed"); null while it runs.',
    )
    reason: str | None = Field(
        None,
        description="Why a job failed, timed out or was cancelled (a stable code): " + ", ".join(EndReason) + ".",
        json_schema_extra={"examples": [EndReason.CLONE_FAILED.value]},
    )
    error: str | None = None
    result: JobResult | None = None
    artifacts: dict[str, ArtifactLink] = Field(default_factory=dict)
    log_url: str
    parent_job_id: str | None = Field(None, description="The job this one follows up (its session and branch).")
    thread: list[ThreadJob] = Field(
        default_factory=list, description="The conversation this job belongs to, oldest first, up to this job."
    )
    thread_cost_usd: float = Field(0.0, description="What the thread's jobs cost together.")


class JobList(ApiModel):
    jobs: list[JobView]


class JobLogLine(ApiModel):
    """One line of a job's live log (event `log`)."""

    ts: str
    source: str
    level: str = "info"
    msg: str


class JobLogStatus(ApiModel):
    """A job's state on its log stream (event `status`): the first event, then each change."""

    status: ShownStatus
    phase: JobPhase = ""
    progress: int = Field(0, ge=0, le=100)
    heartbeat_at: str | None = None
    cancel_requested: bool = False
    reason: str | None = None


class JobLogEnd(ApiModel):
    """Last event of a job's log stream: the job has ended."""

    status: JobStatus
    reason: str | None = None


class AgentInfo(ApiModel):
    name: str
    description: str
    after: Literal["pull_request", "report", "deploy"]
    requires_prompt: bool
    accepts_patch: bool = Field(False, description="Whether a run may carry a `patch` (a unified diff).")
    default_prompt: str | None = Field(None, description="The task it is given when the run has no `prompt`.")


class AgentList(ApiModel):
    agents: list[AgentInfo]
