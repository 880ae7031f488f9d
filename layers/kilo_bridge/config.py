"""Settings, read once from the environment with the source document's variable names.

A bad value fails at start with a message naming the variable (never echoing a secret).

A plain read-only class with its own small validation (types, bounds, the URL checks), not a pydantic model:
the settings are flat scalars, and building a ~100-field pydantic model (and importing pydantic and
pydantic-settings for it) was the largest single part of the dispatcher's and finalizer's cold start, which
need no other pydantic model (docs/benchmarks/coldstart.md). Not a dataclass either: generating and compiling
its 100-parameter methods cost several ms more of every cold start. The messages keep pydantic's wording.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from kilo_bridge.config_values import CHECKS, Invalid, SecretStr, Setting, convert, fields_of, setting

DEFAULT_GATEWAY_BASE = "https://api.kilo.ai/api/gateway"
# The repository root in a checkout (layers/kilo_bridge/config.py), /opt in a Lambda layer.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the environment variable."""


def check_sandbox_concurrency(sandbox: str, concurrency: int) -> None:
    """`AGENT_SANDBOX=user` runs every job's agent as the same user: meant for one job per container (the
    Fargate image), it would let concurrent jobs on one host read each other's checkouts."""
    if sandbox == "user" and concurrency > 1:
        raise ConfigError(
            f"AGENT_SANDBOX=user is for one job per container (the Fargate image); this host would run "
            f"{concurrency} jobs at once (JOBS_CONCURRENCY / --concurrency), and their agents, one user, could read "
            "each other's checkouts. Use AGENT_SANDBOX=auto (bubblewrap) or a concurrency of 1."
        )


def environment(fields: Iterable[str]) -> dict[str, str]:
    """The environment's value of each field, its variable's name matched without regard to case."""
    wanted = set(fields)
    return {name: value for key, value in os.environ.items() if (name := key.lower()) in wanted}


class Settings:
    """Every knob of the service. Environment names are the upper-cased field names (`load_settings` reads
    them); constructing one directly takes the defaults for what it is not given. Each value is checked and
    converted (a string from the environment to its field's type) at construction: `ConfigError` otherwise.
    Read-only once built; `replace()` makes a changed copy."""

    _fields: dict[str, Setting]

    # -- Kilo Gateway ------------------------------------------------------------------------------
    kilo_api_key: SecretStr | None = None
    # Deployed: the key lives in Secrets Manager and is read at start, with the other secrets (read_secrets).
    kilo_api_key_secret_arn: str | None = None
    # How often that secret is re-read, so a rotated key is used without a restart.
    kilo_api_key_max_age_s: float = setting(300.0, ge=0, le=86_400)
    kilo_gateway_base: str = DEFAULT_GATEWAY_BASE
    kilo_timeout_ms: int = setting(30_000, ge=100, le=3_700_000)
    kilo_org_id: str | None = setting(None, max_length=200)
    kilo_default_model: str = setting("kilo-auto/balanced", min_length=1, max_length=200)
    # Retries happen only before the first byte reaches our client.
    kilo_max_retries: int = setting(2, ge=0, le=10)
    # Where the last-seen credit balance is read; derived from the gateway base when unset.
    kilo_balance_url: str | None = None
    kilo_credits_max_age_s: int = setting(300, ge=0, le=86_400)
    # Longest a single stream may run (API Gateway ends streams at 15 minutes).
    kilo_stream_max_s: int = setting(900, ge=1, le=3600)
    # A stream whose client hung up (or that we refused mid-way) is read on for this long, for the usage the
    # gateway bills it by: the key, the stats and the credits are charged what it cost.
    stream_drain_s: float = setting(30.0, ge=0, le=900)

    # -- Redis -------------------------------------------------------------------------------------
    redis_url: str | None = None
    redis_host: str = "localhost"
    redis_port: int = setting(6379, ge=1, le=65535)
    # The {hash tag} keeps every key in one cluster slot: ElastiCache Serverless is cluster-mode, and our
    # Lua scripts touch several keys at once (a CROSSSLOT error otherwise).
    redis_prefix: str = setting("{kb}:", min_length=1, max_length=64)
    redis_timeout_ms: int = setting(2_000, ge=50, le=60_000)
    # How long a budget reservation is held if its settlement never comes (default: the longest a call can
    # run, KILO_STREAM_MAX_S + KILO_TIMEOUT_MS, plus a minute).
    reservation_hold_s: float | None = setting(None, gt=0, le=86_400)
    # A web process shows it is alive every third of this; once silent this long (killed), another releases the
    # reservations it held.
    reservation_owner_timeout_s: float = setting(30.0, gt=0, le=3600)
    # Settlements Redis refused wait here (fsynced, one file each) until Redis takes them; any web process of
    # this machine replays them (at start too). On Lambda a relative path is under /tmp.
    settlement_spool_dir: str = ".run/spool"
    # Deployed (ElastiCache with RBAC): the user name, and a secret holding {"username", "password"}.
    redis_username: str | None = None
    redis_password_secret_arn: str | None = None
    redis_password: SecretStr | None = None
    # The embedded Redis's password (made by scripts/ensure_redis.py, mode 0600). Unset: `.run/redis-<port>.password`
    # when the Redis is on loopback and that file exists (`make run`), else no password.
    redis_password_file: str | None = None

    # -- access control ----------------------------------------------------------------------------
    # Unset: required when deployed (on Lambda), open for the local server on 127.0.0.1.
    auth_required: bool | None = None
    admin_api_key: SecretStr | None = None
    # `GET /metrics` (Prometheus text, across the local server's web processes). Unset: on for the local
    # server, off on Lambda (where the figures go to CloudWatch instead). Behind the admin key when auth is on.
    prometheus_metrics: bool | None = None
    # Administrative changes (keys, profiles, triggers, schedules, console logins) are kept this many days.
    audit_retention_days: int = setting(365, ge=1, le=3650)
    admin_api_key_secret_arn: str | None = None
    # Budget reservations: a request's estimate before its real cost is known.
    budget_default_max_tokens: int = setting(4096, ge=1, le=1_000_000)
    budget_fallback_estimate_usd: float = setting(0.05, ge=0, le=1000)
    # Comma-separated origins allowed by CORS; empty = CORS off.
    cors_origins: str = ""
    # The API's public address when a custom domain fronts it (e.g. https://api.example.com); links the API
    # returns start here. Unset: the address the request came to, with the API Gateway stage.
    public_base_url: str | None = None

    # -- HTTP surface ------------------------------------------------------------------------------
    port: int = setting(5000, ge=1, le=65535)
    # `kilo-bridge serve`'s web processes (uvicorn workers); unset: one per core this process may run on.
    web_concurrency: int | None = setting(None, ge=1, le=256)
    max_body_bytes: int = setting(1_000_000, ge=1_024, le=10_000_000)
    max_prompt_chars: int = setting(200_000, ge=1, le=2_000_000)
    # `/v1` carries long contexts and images (base64): the gateway judges their size, we only bound the body.
    # 6 MB is a synchronous Lambda invocation's own limit.
    v1_max_body_bytes: int = setting(6_000_000, ge=1_024, le=100_000_000)
    sse_keepalive_s: float = setting(15.0, gt=0, le=60)
    # Requests (streams included) one web process serves at once; the next gets a fast 503 with Retry-After.
    # Unset: a third of the process's open-file limit (`serve` raises it to the hard limit at start).
    max_concurrent_requests: int | None = setting(None, ge=1, le=1_000_000)

    # -- agent jobs --------------------------------------------------------------------------------
    # "local": a bullmq queue in this Redis, worked by `serve` (JOBS_CONCURRENCY) or `kilo-bridge worker`;
    # "sqs": AGENT_QUEUE_URL, dispatched to ECS tasks by functions/dispatcher.
    job_queue: Literal["local", "sqs"] = "local"
    jobs_concurrency: int = setting(1, ge=0, le=32)
    agent_queue_url: str | None = None
    ecs_cluster: str | None = None
    ecs_task_definition: str | None = None
    ecs_subnets: str = ""
    ecs_security_groups: str = ""
    ecs_container_name: str = "agent"
    # The dispatcher: its mark on a job lapses after DISPATCH_LEASE_S unless a task ARN is recorded (at least
    # the dispatcher's timeout, under the queue's visibility timeout); RunTask is tried ECS_RUN_TASK_ATTEMPTS
    # times with backoff from ECS_RUN_TASK_BACKOFF_S; on a message's last receive (AGENT_QUEUE_MAX_RECEIVES, the
    # queue's maxReceiveCount) a task that still cannot start fails the job (dispatch_failed).
    dispatch_lease_s: float = setting(120.0, gt=0, le=43_200)
    ecs_run_task_attempts: int = setting(4, ge=1, le=10)
    ecs_run_task_backoff_s: float = setting(1.0, ge=0, le=60)
    agent_queue_max_receives: int = setting(3, ge=1, le=1000)
    # The agent queue's dead-letter queue, also read by the dispatcher: a job whose message lands there while
    # it is still queued with no task is failed (dispatch_failed) at once.
    agent_dead_letter_queue_arn: str | None = None
    # Audit artifacts: S3-compatible storage when a bucket is set, else a local directory.
    artifacts_bucket: str | None = None
    artifacts_dir: str = ".run/artifacts"
    s3_endpoint_url: str | None = None
    artifact_url_ttl_s: int = setting(3600, ge=60, le=604_800)
    # profileEnv encryption: KMS envelope when a key id is set, else AES-GCM with a local key
    # (JOB_SECRETS_KEY, base64 of 32 bytes, or one generated once into JOB_SECRETS_KEY_FILE).
    job_secrets_kms_key_id: str | None = None
    job_secrets_key: SecretStr | None = None
    job_secrets_key_file: str = ".run/job-secrets.key"
    # Repositories: https only, hosts from this list; local paths and loopback http only when allowed
    # (development and tests).
    repo_host_allowlist: str = "github.com,gitlab.com,bitbucket.org"
    repo_allow_local: bool = False
    github_api_url: str = "https://api.github.com"
    # A GitHub App (docs/github.md): its id and private key (PEM, or a file holding it) mint a per-job
    # installation token scoped to the job's repository; the webhook secret verifies deliveries; opted-in
    # repositories ("owner/name,…") get a review job on each pull request opened or pushed to.
    github_app_id: str | None = None
    github_app_private_key: SecretStr | None = None
    github_app_private_key_file: str | None = None
    github_webhook_secret: SecretStr | None = None
    # On AWS: one Secrets Manager secret, JSON {"privateKey": PEM, "webhookSecret": …}, read at start.
    github_app_secret_arn: str | None = None
    # Review repositories: "owner/name" each, with options after colons ("acme/widgets:drafts:bots:model=<id>:
    # max-cost=<usd>"): review drafts, review bot-authored pull requests, the review's model and cost cap.
    github_review_repos: str = ""
    # The review check run fails when a finding at or above this severity is present ("never": it never fails
    # on findings; a failed review job always fails it).
    github_review_fail_on: Literal["never", "critical", "high", "medium", "low", "info"] = "never"
    # Repositories ("owner/name,…") whose jobs started from GitHub text (a `/kilo` comment, a review) keep their
    # agent's network policy; every other repository's run with network `none` (the text may be an injection).
    github_agent_network: str = ""
    # The API key (its 12-hex id, as `kilo-bridge keys list` shows it) that owns the jobs the App starts: its
    # budget, maxJobs and job list apply to them. Required when auth is (else the App starts nothing and
    # says so on the issue); unset on an open server, they are open jobs.
    github_app_key_id: str | None = None
    # Webhook triggers (kilo_bridge/triggers/): a call's body cap and each trigger's verified calls a minute.
    trigger_max_body_bytes: int = setting(65_536, ge=1_024, le=1_000_000)
    trigger_rate_per_minute: int = setting(10, ge=1, le=1_000)
    # Schedules made through the API (kilo_bridge/schedules/): locally bullmq job schedulers; on AWS EventBridge
    # Scheduler schedules in SCHEDULE_GROUP, targeting SCHEDULE_TARGET_ARN (functions/scheduled) with
    # SCHEDULE_ROLE_ARN. SCHEDULE_TEST_EVERY_MS (tests only) fires local schedules every so many ms instead.
    schedule_group: str | None = None
    schedule_target_arn: str | None = None
    schedule_role_arn: str | None = None
    schedule_test_every_ms: int | None = setting(None, ge=100)
    kilo_cli: str | None = None
    agents_dir: str | None = None
    # The OS sandbox around the agent process (agent_task/sandbox.py): auto = bubblewrap where it works, else
    # the job fails naming this setting; user = the agent as AGENT_USER, for one job per container (Fargate:
    # refused with JOBS_CONCURRENCY > 1 on a local queue); none = no sandbox.
    agent_sandbox: Literal["auto", "bwrap", "user", "none"] = "auto"
    agent_user: str = "kilo-agent"
    # Where agents the catalogue gives `network: allowlist` may go through the runner's egress proxy:
    # comma-separated `host` or `*.domain`, each with an optional `:port` (else 80 and 443). Empty: nowhere.
    agent_egress_allow: str = setting("", max_length=4000)
    # Exact `ip:port` endpoints the proxy may reach although their address is private (an internal mirror);
    # only when their host is also on AGENT_EGRESS_ALLOW.
    agent_egress_allow_private: str = setting("", max_length=4000)
    # How long a deploy with `requireApproval` waits for its approval before it is cancelled (within the job's
    # own timeout).
    deploy_approval_ttl_s: int = setting(900, ge=1, le=86_400)
    # Kernel limits on every agent process tree (agent_task/limits.py): its processes, memory (no swap), the
    # size of one file it writes, and its private /tmp (a RAM-backed tmpfs).
    agent_max_procs: int = setting(512, ge=16, le=1_000_000)
    agent_max_memory_mb: int = setting(4096, ge=32, le=1_048_576)
    agent_max_file_mb: int = setting(1024, ge=1, le=1_048_576)
    agent_tmp_mb: int = setting(1024, ge=1, le=1_048_576)
    job_workdir: str | None = None
    job_timeout_default_ms: int = setting(600_000, ge=1_000, le=3_600_000)
    job_timeout_max_ms: int = setting(3_600_000, ge=1_000, le=3_600_000)
    # A running job writes a heartbeat this often; another worker may take it over once the heartbeat is
    # JOB_TAKEOVER_S old, and the reaper fails it once it is JOB_STALE_S old.
    job_heartbeat_s: float = setting(5.0, gt=0, le=300)
    job_takeover_s: float = setting(20.0, gt=0, le=3600)
    job_stale_s: float = setting(120.0, gt=0, le=86_400)
    job_max_attempts: int = setting(2, ge=1, le=10)
    # A key with a budget pays for agent jobs too: a job without maxCostUsd reserves (and is capped at) this.
    job_default_max_cost_usd: float = setting(1.0, gt=0, le=10_000)
    # Where a job's agent sends its model calls: this bridge's own `/v1`, on a key of the job's own (the
    # gateway key never reaches the agent). Unset: this machine's server on PORT (`make run`); on AWS, the
    # API's URL (the template sets it for the task).
    bridge_url: str | None = None
    # Requests per minute a job's key may make (its agent, subagents and title calls together).
    job_key_rpm: int = setting(600, ge=1, le=100_000)
    # bullmq: a worker's lock on a job; a dead worker's job goes back to the queue after about this long.
    job_lock_ms: int = setting(30_000, ge=500, le=3_600_000)
    job_stalled_check_ms: int = setting(30_000, ge=200, le=3_600_000)
    job_kill_grace_s: float = setting(5.0, ge=0, le=120)
    # Stopping a worker (or `make run`) waits this long for running jobs before interrupting them.
    job_shutdown_grace_s: float = setting(10.0, ge=0, le=3600)
    job_retention_days: int = setting(30, ge=1, le=3650)
    job_log_max_lines: int = setting(5_000, ge=10, le=1_000_000)
    job_log_max_bytes: int = setting(10_000_000, ge=10_000, le=1_000_000_000)
    job_queue_max_wait_s: int = setting(86_400, ge=10, le=30 * 86_400)

    def __init__(self, **values: Any) -> None:
        unknown = values.keys() - self._fields.keys()
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        problems = []
        for name, f in self._fields.items():
            try:
                value = convert(f, values.get(name, f.default))
                if name in CHECKS:
                    try:
                        value = CHECKS[name](value)
                    except ValueError as exc:
                        raise Invalid(f"Value error, {exc}") from None
            except Invalid as exc:
                problems.append(f"{name.upper()}: {exc}")
                continue
            object.__setattr__(self, name, value)
        if not problems and self.job_queue == "local":
            try:
                check_sandbox_concurrency(self.agent_sandbox, self.jobs_concurrency)
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))

    @classmethod
    def fields(cls) -> tuple[Setting, ...]:
        return tuple(cls._fields.values())

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._fields}

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes`, checked as a new one is."""
        return Settings(**{**self.values(), **changes})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Settings are read-only (setting {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Settings are read-only (deleting {name!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and other.values() == self.values()

    def __hash__(self) -> int:
        return hash(tuple(self.values().values()))

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self.values().items()) + ")"

    @cached_property
    def resolved_redis_url(self) -> str:
        url = self.redis_url or f"redis://{self.redis_host}:{self.redis_port}/0"
        if self.redis_password and "@" not in url:
            scheme, rest = url.split("://", 1)
            user = quote(self.redis_username or "default", safe="")
            url = f"{scheme}://{user}:{quote(self.redis_password.get_secret_value(), safe='')}@{rest}"
        return url

    @cached_property
    def balance_url(self) -> str:
        """`https://api.kilo.ai/api/gateway` → `https://api.kilo.ai/api/profile/balance`."""
        if self.kilo_balance_url:
            return self.kilo_balance_url
        parts = urlsplit(self.kilo_gateway_base)
        path = parts.path.rstrip("/")
        root = path[: -len("/gateway")] if path.endswith("/gateway") else path
        return urlunsplit((parts.scheme, parts.netloc, f"{root}/profile/balance", "", ""))

    @cached_property
    def agent_api_base(self) -> str:
        """The OpenAI-compatible base a job's agent is given (`…/v1`)."""
        return (self.bridge_url or f"http://127.0.0.1:{self.port}") + "/v1"

    @cached_property
    def server_workers(self) -> int:
        return self.web_concurrency or len(os.sched_getaffinity(0))

    @cached_property
    def resolved_spool_dir(self) -> str:
        """SETTLEMENT_SPOOL_DIR; on Lambda a relative one is under /tmp (the only writable place there)."""
        path = self.settlement_spool_dir
        if os.getenv("AWS_LAMBDA_FUNCTION_NAME") and not os.path.isabs(path):
            return os.path.join("/tmp", "kilo-bridge", path)  # noqa: S108 - Lambda's own writable directory
        return path

    @cached_property
    def auth_is_required(self) -> bool:
        if self.auth_required is not None:
            return self.auth_required
        return bool(os.getenv("AWS_LAMBDA_FUNCTION_NAME"))

    @cached_property
    def prometheus_enabled(self) -> bool:
        if self.prometheus_metrics is not None:
            return self.prometheus_metrics
        return not os.getenv("AWS_LAMBDA_FUNCTION_NAME")

    @cached_property
    def behind_lambda_adapter(self) -> bool:
        """Served by the Lambda Web Adapter (the streaming function): its `x-amzn-request-context` header is
        the adapter's own (it overwrites one a client sends), so the app may trust it."""
        return os.getenv("AWS_LAMBDA_EXEC_WRAPPER") == "/opt/bootstrap"

    @cached_property
    def repo_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.repo_host_allowlist.split(",") if h.strip())

    @cached_property
    def kilo_cli_path(self) -> str:
        return self.kilo_cli or str(PROJECT_ROOT / "agent_task" / "node_modules" / ".bin" / "kilo")

    @cached_property
    def agents_path(self) -> Path:
        return Path(self.agents_dir) if self.agents_dir else PROJECT_ROOT / "agent_task" / "agents"

    @property
    def admin_key(self) -> str | None:
        return self.admin_api_key.get_secret_value() if self.admin_api_key else None

    @property
    def api_key(self) -> str | None:
        return self.kilo_api_key.get_secret_value() if self.kilo_api_key else None


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus explicit overrides); raise ConfigError naming each bad variable."""
    names = Settings._fields.keys()
    values: dict[str, Any] = {**environment(names), **{k: v for k, v in overrides.items() if k in names}}
    return _with_secrets(Settings(**values))


# field → (the setting naming its secret, the JSON field read when the secret holds JSON)
_FROM_SECRET = {
    "github_app_private_key": ("GITHUB_APP_SECRET_ARN", "privateKey"),
    "github_webhook_secret": ("GITHUB_APP_SECRET_ARN", "webhookSecret"),
    "redis_password": ("REDIS_PASSWORD_SECRET_ARN", "password"),
}


def _with_secrets(settings: Settings) -> Settings:
    """Fill KILO_API_KEY / ADMIN_API_KEY, the cache password (and the GitHub App's key and webhook secret) from
    Secrets Manager when only their *_SECRET_ARN is set: each secret read once (the App's one secret feeds two
    fields), all of them at the same time, each read bounded by SECRET_READ_TIMEOUTS."""
    wanted: list[tuple[str, str, str, str]] = []  # (field, arn, json field, the setting named in an error)
    for field, arn in (
        ("kilo_api_key", settings.kilo_api_key_secret_arn),
        ("admin_api_key", settings.admin_api_key_secret_arn),
        ("github_app_private_key", settings.github_app_secret_arn),
        ("github_webhook_secret", settings.github_app_secret_arn),
        ("redis_password", settings.redis_password_secret_arn),
    ):
        if arn and getattr(settings, field) is None:
            setting, json_field = _FROM_SECRET.get(field, (f"{field.upper()}_SECRET_ARN", field.upper()))
            wanted.append((field, arn, json_field, setting))
    update: dict[str, Any] = {}
    if settings.redis_password is None and not settings.redis_password_secret_arn:
        password = _embedded_redis_password(settings)
        if password:
            update["redis_password"] = SecretStr(password)
    raw = read_secrets({arn for _, arn, _, _ in wanted}) if wanted else {}
    for field, arn, json_field, setting in wanted:
        value = raw[arn]
        try:
            if isinstance(value, BaseException):
                raise value
            update[field] = SecretStr(_secret_field(value, json_field))
        except Exception as exc:
            raise ConfigError(f"{setting}: cannot read the secret ({type(exc).__name__})") from None
    return settings.replace(**update) if update else settings


def redis_password_path(port: int) -> str:
    """Where scripts/ensure_redis.py keeps the password of the Redis it started on this port."""
    return f".run/redis-{port}.password"


def _embedded_redis_password(settings: Settings) -> str | None:
    """The password of the Redis `make run` started (a file only its user can read), else None."""
    url = urlsplit(settings.redis_url) if settings.redis_url else None
    if url is not None and (url.password or url.scheme == "unix"):
        return None
    path = settings.redis_password_file
    if path is None:
        host = url.hostname if url else settings.redis_host
        if host not in ("127.0.0.1", "localhost", "::1"):
            return None
        path = redis_password_path((url.port or 6379) if url else settings.redis_port)
        if not os.path.exists(path):
            return None
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError as exc:
        raise ConfigError(f"REDIS_PASSWORD_FILE: cannot read {path} ({type(exc).__name__})") from None


# Secrets Manager is read at a cold start, inside Lambda's 10 s init and through the NAT gateway: botocore's
# defaults (60 s connect and read, retried) could overrun it. A read answers in tens of milliseconds; these
# bound the worst case at about 2 x (1 + 2) s plus one backoff, whatever the number of secrets (read at once).
SECRET_READ_TIMEOUTS = {"connect_timeout": 1.0, "read_timeout": 2.0, "total_max_attempts": 2}
_secrets_client: Any = None


def _secrets() -> Any:
    global _secrets_client
    if _secrets_client is None:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=SECRET_READ_TIMEOUTS["connect_timeout"],
            read_timeout=SECRET_READ_TIMEOUTS["read_timeout"],
            retries={"total_max_attempts": int(SECRET_READ_TIMEOUTS["total_max_attempts"]), "mode": "standard"},
            max_pool_connections=8,
        )
        _secrets_client = boto3.session.Session().client("secretsmanager", config=config)
    return _secrets_client


def read_secrets(arns: Iterable[str]) -> dict[str, str | BaseException]:
    """Each secret's string, read now and all at once (a thread each); a secret that could not be read maps to
    its exception."""
    from concurrent.futures import ThreadPoolExecutor

    arns = sorted(set(arns))
    client = _secrets()

    def one(arn: str) -> str | BaseException:
        try:
            return str(client.get_secret_value(SecretId=arn)["SecretString"])
        except Exception as exc:
            return exc

    if len(arns) == 1:
        return {arns[0]: one(arns[0])}
    with ThreadPoolExecutor(max_workers=len(arns)) as pool:
        return dict(zip(arns, pool.map(one, arns), strict=True))


def _secret_field(value: str, json_field: str) -> str:
    if value.startswith("{"):
        import json

        value = str(json.loads(value)[json_field])
    if not value:
        raise ValueError("empty secret")
    return value


def read_secret(arn: str, json_field: str) -> str:
    """A secret's string (or its `json_field` when it holds JSON), read now (callers keep their own copy and
    decide when to re-read)."""
    value = read_secrets([arn])[arn]
    if isinstance(value, BaseException):
        raise value
    return _secret_field(value, json_field)


def reset_secrets_client() -> None:
    """Forget the Secrets Manager client (tests point boto3 at a new endpoint)."""
    global _secrets_client
    _secrets_client = None


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as environment variables, so a child process (the job runner) sees exactly these."""
    env: dict[str, str] = {}
    for name, value in settings.values().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[name.upper()] = str(value)
    return env


Settings._fields = fields_of(Settings)
