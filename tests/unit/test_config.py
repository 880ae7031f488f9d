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
    s = load_settings(port=7000)
    assert (s.kilo_timeout_ms, s.port) == (1500, 7000)
    assert Settings(max_body_bytes=2048).kilo_timeout_ms == 1500  # the class reads the environment too


def test_settings_do_not_load_pydantic_settings() -> None:
    """Its sources are ~130 modules of every Lambda function's cold start (config.py says why)."""
    out = subprocess.run(
        [sys.executable, "-c", "import sys, kilo_bridge.config; print('pydantic_settings' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "False"


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
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert name in str(info.value)
    assert "secretpw" not in str(info.value)


def test_balance_url_is_derived_from_the_gateway_base() -> None:
    assert load_settings().balance_url == "https://api.kilo.ai/api/profile/balance"
    s = load_settings(kilo_gateway_base="http://127.0.0.1:8000/api/gateway")
    assert s.balance_url == "http://127.0.0.1:8000/api/profile/balance"
    s = load_settings(kilo_balance_url="http://127.0.0.1:1/b")
    assert s.balance_url == "http://127.0.0.1:1/b"
