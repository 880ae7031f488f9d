"""Request and response models: the single source of the API's shape and of its OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are refused, not ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# -- generation ------------------------------------------------------------------------------------
MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$"


class GenerateRequest(ApiModel):
    prompt: str = Field(min_length=1, description="The user's prompt.")
    system: str | None = Field(None, description="Optional system message.")
    model: str | None = Field(None, pattern=MODEL_ID, description="Kilo model id, e.g. anthropic/claude-sonnet-4.5")
    max_tokens: int | None = Field(None, ge=1, le=200_000)
    temperature: float | None = Field(None, ge=0, le=2)


class Usage(ApiModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = Field(None, description="USD cost: reported by the upstream, else tokens x list price.")


class GenerateResponse(ApiModel):
    text: str
    model: str
    finish_reason: str | None = None
    usage: Usage
    request_id: str


class StreamDelta(ApiModel):
    """SSE `event: delta` — one per upstream chunk, as it arrives."""

    text: str


class StreamDone(ApiModel):
    """SSE `event: done` — the final event, with usage."""

    model: str
    finish_reason: str | None = None
    usage: Usage
    request_id: str


# -- errors ----------------------------------------------------------------------------------------
class ErrorDetail(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    code: str
    message: str
    request_id: str
    details: Any = None


class ErrorResponse(ApiModel):
    """Every error, on every route (SSE `event: error` carries the same object)."""

    error: ErrorDetail


# -- credits and stats -----------------------------------------------------------------------------
class Credits(ApiModel):
    balance_usd: float | None = Field(None, description="Balance last read from the credit source.")
    seen_at: str | None = Field(None, description="When that balance was read (ISO 8601, UTC).")
    spent_since_usd: float = Field(0.0, description="Spend counted here since that read.")
    remaining_usd: float | None = Field(None, description="balanceUsd - spentSinceUsd, floored at 0.")
    source: str | None = None
    stale: bool = Field(True, description="True when no fresh balance could be read.")
    last_error: str | None = None


class Counters(ApiModel):
    requests: int = 0
    ok: int = 0
    failed: int = 0
    streams: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spend_usd: float = 0.0
    unpriced: int = Field(0, description="Calls whose cost could not be priced (unknown model price).")


class AgentRunCounts(ApiModel):
    queued: int = Field(0, description="Waiting for a worker now.")
    running: int = Field(0, description="Running now.")
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0


class Stats(ApiModel):
    totals: Counters
    by_model: dict[str, Counters]
    by_key: dict[str, Counters] = Field(
        default_factory=dict, description="Per API key (`name:id`): all keys on an open server, else the caller's own.")
    by_day: dict[str, Counters] = Field(description="The last 7 days, UTC.")
    agent_runs: AgentRunCounts
    credits: Credits


class Badge(BaseModel):
    """shields.io endpoint badge (https://shields.io/badges/endpoint-badge)."""

    schemaVersion: Literal[1] = 1
    label: str
    message: str
    color: str
    namedLogo: str | None = None
    cacheSeconds: int = 300


class Health(ApiModel):
    status: Literal["ok", "degraded"]
    version: str
    redis: Literal["ok", "unreachable"]
    gateway_configured: bool
    gateway_base: str


# -- OpenAI-compatible passthrough -----------------------------------------------------------------
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=32)
    content: Any = None


class ChatCompletionRequest(BaseModel):
    """OpenAI chat completions body; fields we do not know are passed through to the gateway."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(pattern=MODEL_ID)
    messages: list[ChatMessage] = Field(min_length=1, max_length=2_000)
    stream: bool = False
    stream_options: dict[str, Any] | None = None


class OpenAIModelList(BaseModel):
    model_config = ConfigDict(extra="allow")

    object: str = "list"
    data: list[dict[str, Any]]


# -- API keys (admin) ------------------------------------------------------------------------------
KEY_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class KeyCreate(ApiModel):
    name: str = Field(pattern=KEY_NAME)
    budget_usd: float | None = Field(None, gt=0, le=1_000_000, description="Hard spend budget; none = unlimited.")
    rpm: int | None = Field(None, ge=1, le=1_000_000, description="Requests per minute.")
    tpm: int | None = Field(None, ge=1, le=1_000_000_000, description="Tokens per minute.")
    max_jobs: int | None = Field(None, ge=1, le=1_000, description="Concurrent agent jobs.")


class KeyView(ApiModel):
    id: str
    name: str
    created_at: str
    revoked: bool
    budget_usd: float | None
    spent_usd: float
    reserved_usd: float
    rpm: int | None
    tpm: int | None
    max_jobs: int | None
    requests: int


class KeyCreated(KeyView):
    key: str = Field(description="The secret: shown once, stored only as a digest.")


class KeyList(ApiModel):
    keys: list[KeyView]


# -- agent jobs ------------------------------------------------------------------------------------
AGENT_NAME = r"^[a-z0-9][a-z0-9-]{0,63}$"
ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]
JobPhase = Literal["", "cloning", "agent", "pushing", "uploading"]


class RunAgentRequest(ApiModel):
    repo_url: str = Field(min_length=1, max_length=2048, description="https URL of a git repository, allowed host.")
    agent: str = Field(pattern=AGENT_NAME, description="A name from GET /api/kilo/agents.")
    prompt: str | None = Field(None, min_length=1, max_length=20_000, description="The task given to the agent.")
    profile_env: dict[str, str] = Field(
        default_factory=dict, max_length=32,
        description="Secrets and settings for the job (e.g. GITHUB_TOKEN); encrypted at rest, never returned.")
    timeout_ms: int | None = Field(None, ge=1_000, le=3_600_000, description="Default 10 minutes, at most 60.")
    dry_run: bool = Field(False, description="Keep the diff only: no commit, push or pull request.")
    base_branch: str | None = Field(None, min_length=1, max_length=200)
    model: str | None = Field(None, pattern=MODEL_ID)
    max_cost_usd: float | None = Field(None, gt=0, le=10_000, description="Stop the agent before passing this cost.")


class RunAgentAccepted(ApiModel):
    job_id: str
    status: JobStatus
    status_url: str


class DiffStat(ApiModel):
    files: int = 0
    insertions: int = 0
    deletions: int = 0


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


class ArtifactLink(ApiModel):
    key: str
    url: str
    bytes: int


class JobView(ApiModel):
    id: str
    status: JobStatus
    phase: JobPhase = ""
    progress: int = Field(0, ge=0, le=100)
    agent: str
    repo_url: str
    base_branch: str | None = None
    model: str | None = None
    dry_run: bool = False
    timeout_ms: int
    max_cost_usd: float | None = None
    key_id: str | None = Field(None, description="The API key that started the job (its id, never the key).")
    attempt: int = 0
    cancel_requested: bool = False
    created_at: str
    started_at: str | None = None
    heartbeat_at: str | None = None
    finished_at: str | None = None
    reason: str | None = Field(None, description="Why a job failed, timed out or was cancelled (a stable code).")
    error: str | None = None
    result: JobResult | None = None
    artifacts: dict[str, ArtifactLink] = Field(default_factory=dict)
    log_url: str


class JobList(ApiModel):
    jobs: list[JobView]


class JobLogLine(ApiModel):
    """One line of a job's live log (event `log`)."""

    ts: str
    source: str
    level: str = "info"
    msg: str


class JobLogEnd(ApiModel):
    """Last event of a job's log stream: the job has ended."""

    status: JobStatus
    reason: str | None = None


class AgentInfo(ApiModel):
    name: str
    description: str
    after: Literal["pull_request", "report"]
    requires_prompt: bool


class AgentList(ApiModel):
    agents: list[AgentInfo]
