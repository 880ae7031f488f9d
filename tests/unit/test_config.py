import pytest

from kilo_bridge.config import DEFAULT_GATEWAY_BASE, ConfigError, load_settings


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
