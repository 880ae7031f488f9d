import subprocess
import sys

import pytest

from kilo_bridge.config import DEFAULT_GATEWAY_BASE, ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KILO_API_KEY",
        "KILO_GATEWAY_BASE",
        "KILO_TIMEOUT_MS",
        "REDIS_URL",
        "REDIS_HOST",
        "REDIS_PORT",
        "KILO_BALANCE_URL",
        "PORT",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_match_the_source_document() -> None:
    s = load_settings()
    assert s.kilo_gateway_base == DEFAULT_GATEWAY_BASE
    assert s.kilo_timeout_ms == 30_000
    assert s.resolved_redis_url == "redis://localhost:6379/0"
    assert s.port == 5000
    assert s.api_key is None


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILO_API_KEY", "test-key-not-real")
    monkeypatch.setenv("KILO_GATEWAY_BASE", "http://127.0.0.1:9/api/gateway/")
    monkeypatch.setenv("KILO_TIMEOUT_MS", "1500")
    monkeypatch.setenv("REDIS_HOST", "10.1.2.3")
    monkeypatch.setenv("REDIS_PORT", "6380")
    s = load_settings()
    assert s.api_key == "test-key-not-real"
    assert s.kilo_gateway_base == "http://127.0.0.1:9/api/gateway"  # trailing slash dropped
    assert s.kilo_timeout_ms == 1500
    assert s.resolved_redis_url == "redis://10.1.2.3:6380/0"


def test_names_match_without_regard_to_case_and_an_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("kilo_timeout_ms", "1500")  # as pydantic-settings' case_sensitive=False read it
    monkeypatch.setenv("PORT", "6000")
    monkeypatch.setenv("NOT_A_SETTING", "ignored")
    s = load_settings(port=7000, not_a_setting="ignored too")
    assert (s.kilo_timeout_ms, s.port) == (1500, 7000)


def test_values_are_converted_and_checked_as_pydantic_did(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"AUTH_REQUIRED": "Yes", "REPO_ALLOW_LOCAL": "0", "SSE_KEEPALIVE_S": "2", "JOB_QUEUE": "sqs"}
    env |= {"KILO_API_KEY": "test-key-not-real", "RESERVATION_HOLD_S": "90.5", "PUBLIC_BASE_URL": ""}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = load_settings(kilo_max_retries=3.0)
    assert s.auth_required is True and s.repo_allow_local is False and s.job_queue == "sqs"
    assert s.sse_keepalive_s == 2.0 and isinstance(s.sse_keepalive_s, float) and s.reservation_hold_s == 90.5
    assert s.kilo_max_retries == 3 and s.public_base_url is None and s.web_concurrency is None
    assert s.api_key == "test-key-not-real" and "test-key-not-real" not in repr(s)
    assert s.replace(port=5001).port == 5001 and s.replace(port=5001).api_key == s.api_key
    assert s.replace() == s and hash(s.replace()) == hash(s)
    with pytest.raises(AttributeError, match="read-only"):
        s.port = 1
    with pytest.raises(TypeError, match="unknown settings: no_such"):
        Settings(no_such=1)
    for name in ("AUTH_REQUIRED", "SSE_KEEPALIVE_S", "JOB_QUEUE"):
        monkeypatch.delenv(name)
    with pytest.raises(ConfigError) as info:
        load_settings(job_queue="kafka", kilo_default_model="", kilo_org_id="x" * 201, auth_required="maybe",
                      kilo_max_retries=2.5, sse_keepalive_s=0, budget_fallback_estimate_usd="lots")  # fmt: skip
    assert str(info.value) == (
        "invalid configuration: KILO_ORG_ID: String should have at most 200 characters; "
        "KILO_DEFAULT_MODEL: String should have at least 1 character; "
        "KILO_MAX_RETRIES: Input should be a valid integer, got a number with a fractional part; "
        "AUTH_REQUIRED: Input should be a valid boolean, unable to interpret input; "
        "BUDGET_FALLBACK_ESTIMATE_USD: Input should be a valid number, unable to parse string as a number; "
        "SSE_KEEPALIVE_S: Input should be greater than 0; "
        "JOB_QUEUE: Input should be 'local' or 'sqs'"
    )


def test_settings_load_neither_pydantic_nor_pydantic_settings() -> None:
    """Building a ~100-field pydantic model was the largest part of the dispatcher's cold start (config.py)."""
    code = "import sys, kilo_bridge.config; print(sorted({'pydantic', 'pydantic_settings'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_redis_url_wins_and_accepts_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://user:pw@cache.example:6379/0")
    monkeypatch.setenv("REDIS_HOST", "ignored")
    assert load_settings().resolved_redis_url.startswith("rediss://")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KILO_TIMEOUT_MS", "soon"),
        ("KILO_TIMEOUT_MS", "0"),
        ("REDIS_PORT", "70000"),
        ("KILO_GATEWAY_BASE", "ftp://x"),
        ("KILO_GATEWAY_BASE", "https://user:secretpw@api.kilo.ai"),
        ("REDIS_URL", "http://localhost:6379"),
        ("GITHUB_APP_KEY_ID", "kb_secretpw_pasted_instead_of_the_id"),  # the key itself, not its id
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert name in str(info.value)
    assert "secretpw" not in str(info.value)


def test_the_github_app_key_id_is_a_key_id_and_empty_is_unset() -> None:
    assert load_settings(github_app_key_id="").github_app_key_id is None  # the template's empty parameter
    assert load_settings(github_app_key_id="3f9a0c41d2e7").github_app_key_id == "3f9a0c41d2e7"


def test_balance_url_is_derived_from_the_gateway_base() -> None:
    assert load_settings().balance_url == "https://api.kilo.ai/api/profile/balance"
    s = load_settings(kilo_gateway_base="http://127.0.0.1:8000/api/gateway")
    assert s.balance_url == "http://127.0.0.1:8000/api/profile/balance"
    s = load_settings(kilo_balance_url="http://127.0.0.1:1/b")
    assert s.balance_url == "http://127.0.0.1:1/b"
