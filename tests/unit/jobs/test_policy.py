"""Small pieces of the job path that need no server: redaction forms, address checks, ids, the catalogue,
the local key file."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from kilo_bridge.config import load_settings
from kilo_bridge.errors import BridgeError
from kilo_bridge.jobs.catalogue import load_catalog
from kilo_bridge.jobs.policy import blocked_address, check_branch, check_profile_env
from kilo_bridge.jobs.record import new_job_id, valid_job_id
from kilo_bridge.jobs.secrets import LocalBox
from kilo_bridge.platform.security import REDACTED, Redactor

SECRET = "ghp_Canary/Token+With=Odd~Chars_42"


@pytest.mark.parametrize("form", [
    SECRET, quote(SECRET, safe=""), quote_plus(SECRET),
    base64.b64encode(SECRET.encode()).decode(), base64.urlsafe_b64encode(SECRET.encode()).decode(),
    base64.b64encode(b"x-access-token:" + SECRET.encode()).decode(),  # a Basic auth header
    base64.b64encode(b"ab" + SECRET.encode() + b"tail").decode(),
])
def test_redaction_finds_every_encoding(form: str) -> None:
    redact = Redactor([SECRET, None, "short"])
    text = f"before {form} after"
    assert redact.found_in(text)
    assert REDACTED in redact(text) and "before" in redact(text) and "after" in redact(text)


def test_short_values_are_not_masked_everywhere() -> None:
    assert Redactor(["1", "true"])("true story 1") == "true story 1"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "ip6-localhost"])
def test_hosts_resolving_to_private_addresses_are_blocked(host: str) -> None:
    assert blocked_address(host, load_settings()) is not None


def test_unresolvable_host_is_blocked_with_a_reason() -> None:
    assert "cannot resolve" in (blocked_address("no-such-host.invalid", load_settings()) or "")


@pytest.mark.parametrize("name", ["main", "release/2.1", "feature/x_y-z"])
def test_good_branch_names(name: str) -> None:
    check_branch(name)


@pytest.mark.parametrize("name", ["-x", "a..b", "a b", "a~1", "a^", "a:b", "x.lock", "a//b", "/a", "a/", "@{u}"])
def test_bad_branch_names(name: str) -> None:
    with pytest.raises(BridgeError):
        check_branch(name)


def test_profile_env_accepts_plain_names() -> None:
    check_profile_env({"GITHUB_TOKEN": "x", "NPM_TOKEN": "y", "_PRIVATE": "z"})


def test_job_ids() -> None:
    job_id = new_job_id()
    assert valid_job_id(job_id) and job_id != new_job_id()
    assert not valid_job_id(job_id.upper()) and not valid_job_id(job_id + "0") and not valid_job_id("job_")


def test_catalogue_definitions_and_permissions() -> None:
    catalog = load_catalog(load_settings().agents_path)
    assert {"apply-patch-and-pr", "review"} <= set(catalog)
    review = catalog["review"].definition.read_text()
    assert "edit: deny" in review and "bash: deny" in review
    for spec in catalog.values():
        assert spec.definition.read_text().startswith("---\n")
        assert spec.requires_prompt or spec.default_prompt


def test_local_key_file_is_private_and_stable(tmp_path: Path) -> None:
    settings = load_settings(job_secrets_key_file=str(tmp_path / "k" / "job.key"))
    first, second = LocalBox.from_settings(settings), LocalBox.from_settings(settings)
    assert stat.S_IMODE((tmp_path / "k" / "job.key").stat().st_mode) == 0o600
    assert second.open("job_x", first.seal("job_x", {"A": "b"})) == {"A": "b"}
