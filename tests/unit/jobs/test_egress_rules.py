"""Where an agent's egress proxy may connect (kilo_bridge.jobs.egress), without a socket: the allow-list by name
and port, and the addresses refused whatever name led to them."""

from __future__ import annotations

import ipaddress

import pytest

from kilo_bridge.jobs.egress import EgressRules, address_refusal, allow_entry_problem, parse_allow, parse_private


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # an IPv4-mapped IPv6 literal
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("169.254.169.254", "link-local"),  # EC2 instance metadata
        ("169.254.170.2", "link-local"),  # ECS task metadata and credentials
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_non_public_addresses_are_refused_naming_why(address: str, why: str) -> None:
    assert why in (address_refusal(ipaddress.ip_address(address)) or ""), address


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"])
def test_public_unicast_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_the_allow_list_matches_hosts_subdomains_and_ports() -> None:
    rules = EgressRules(parse_allow("registry.npmjs.org, *.pypi.org:443,Files.Example.COM.:8443,[::1]:99"), frozenset())
    assert rules.host_refusal("registry.npmjs.org", 443) is None
    assert rules.host_refusal("registry.npmjs.org", 80) is None
    assert rules.host_refusal("registry.npmjs.org", 22) is not None  # no port given: the web ports only
    assert rules.host_refusal("a.pypi.org", 443) is None and rules.host_refusal("x.y.pypi.org", 443) is None
    assert rules.host_refusal("pypi.org", 443) is not None  # `*.domain` is its subdomains
    assert rules.host_refusal("evilpypi.org", 443) is not None
    assert rules.host_refusal("a.pypi.org", 80) is not None
    assert rules.host_refusal("files.example.com", 8443) is None
    assert rules.host_refusal("::1", 99) is None
    assert "allow-list" in (rules.host_refusal("example.org", 443) or "")


def test_a_private_endpoint_is_reachable_only_at_its_exact_address_and_port() -> None:
    rules = EgressRules(parse_allow("mirror.internal:8080"), parse_private("10.0.0.5:8080"))
    assert rules.pick(["10.0.0.5"], 8080) == ("10.0.0.5", "")
    assert rules.pick(["10.0.0.6"], 8080)[0] is None
    assert rules.pick(["10.0.0.5"], 8081)[0] is None
    # A name with several addresses: only a vetted one is used (never a private one the list does not name).
    assert rules.pick(["127.0.0.1", "93.184.216.34"], 443) == ("93.184.216.34", "")
    assert "loopback" in rules.pick(["127.0.0.1"], 443)[1]


def test_a_private_entry_needs_a_port() -> None:
    with pytest.raises(ValueError, match="needs a port"):
        parse_private("10.0.0.5")


@pytest.mark.parametrize(
    "entry", ["deploy.example.test", "*.example.test", "api.example.test:8443", "10.0.0.5:22", "[::1]:8080", "Host."]
)
def test_an_allow_entry_is_a_host_a_subdomain_pattern_or_an_address(entry: str) -> None:
    assert allow_entry_problem(entry) is None


@pytest.mark.parametrize(
    "entry", ["*", "*.com", "a.*.test", "exa mple.test", "host:99999", "host:port", "a..b", "-a.test", "", "x:0"]
)
def test_what_is_not_an_allow_entry_says_why(entry: str) -> None:
    assert allow_entry_problem(entry)
