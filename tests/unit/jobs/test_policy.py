"""The job policy without a server: address checks before cloning, branch names, profileEnv names."""

from __future__ import annotations

import pytest

from kilo_bridge.config import load_settings
from kilo_bridge.errors import BridgeError
from kilo_bridge.jobs.policy import blocked_address, check_branch
from kilo_bridge.profiles.env import check_profile_env


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
