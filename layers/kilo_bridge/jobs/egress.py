"""Where an agent's egress proxy may connect: the allow-list (AGENT_EGRESS_ALLOW) by the name the agent asked
for, then every address that name resolves to, refused when it is not a public unicast address unless the exact
`ip:port` is on AGENT_EGRESS_ALLOW_PRIVATE. The proxy resolves names itself and connects to the address vetted
here, never to a name (a second lookup could answer differently: DNS rebinding)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from kilo_bridge.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_PORTS = (80, 443)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# The entries `allow_entry_problem` takes, as a JSON Schema pattern for the OpenAPI document (a little narrower:
# lower case, no IPv6 literals): a host name or `*.domain`, `:port` optional.
_LABEL_ECMA = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PORT_ECMA = r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
ALLOW_ENTRY_SCHEMA: dict[str, Any] = {
    "type": "string",
    "maxLength": 253,
    "pattern": rf"^(?:\*\.{_LABEL_ECMA}(?:\.{_LABEL_ECMA})+|{_LABEL_ECMA}(?:\.{_LABEL_ECMA})*){_PORT_ECMA}$",
}
NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class Allowed:
    """One allow-list entry: an exact host, or `*.domain` (its subdomains, not the domain itself)."""

    host: str
    port: int | None  # None: the default web ports

    def matches(self, host: str, port: int) -> bool:
        if port not in ((self.port,) if self.port is not None else DEFAULT_PORTS):
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host


def normal_host(host: str) -> str:
    """Lower case, no trailing dot, an IPv6 literal without its brackets."""
    return host.strip().lower().removesuffix(".").removeprefix("[").removesuffix("]")


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port)
    return entry, None


def allow_entry_problem(entry: str) -> str | None:
    """Why an allow-list entry (`host`, `*.domain`, an IP literal; `:port` optional) is not one (None: it is)."""
    try:
        host, port = _split_port(entry.strip())
    except ValueError:
        return "the port is not a number"
    if port is not None and not 0 < port < 65536:
        return "the port is out of range"
    host = normal_host(host)
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host.removeprefix("*.")
    if "*" in name or not name or len(name) > 253 or not all(_LABEL.fullmatch(x) for x in name.split(".")):
        return "not a host name, `*.domain` or IP address"
    if host.startswith("*.") and "." not in name:
        return "`*.` needs a domain with a dot (no top-level wildcards)"
    return None


def parse_allow(raw: str) -> tuple[Allowed, ...]:
    entries = []
    for item in raw.split(","):
        if item.strip():
            host, port = _split_port(item.strip())
            entries.append(Allowed(normal_host(host), port))
    return tuple(entries)


def parse_private(raw: str) -> frozenset[tuple[IPAddress, int]]:
    out = set()
    for item in raw.split(","):
        if item.strip():
            host, port = _split_port(item.strip())
            if port is None:
                raise ValueError(f"AGENT_EGRESS_ALLOW_PRIVATE: {item.strip()!r} needs a port (ip:port)")
            out.add((ipaddress.ip_address(normal_host(host)), port))
    return frozenset(out)


def address_refusal(addr: IPAddress) -> str | None:
    """Why an address is no place for an agent's connection (None: a public unicast address)."""
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = addr.ipv4_mapped or addr.sixtofour or (addr.teredo[1] if addr.teredo else None)
        if embedded is None and addr in NAT64:
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if embedded is not None:
            return address_refusal(embedded)
    if addr.is_unspecified:
        return "unspecified address"
    if addr.is_loopback:
        return "loopback address"
    if addr.is_link_local:
        return "link-local address (instance metadata)"
    if addr.is_multicast:
        return "multicast address"
    if isinstance(addr, ipaddress.IPv4Address) and addr in CGNAT:
        return "carrier-grade NAT address"
    if addr.is_reserved:
        return "reserved address"
    if addr.is_private:
        return "private address"
    if not addr.is_global:
        return "reserved address"
    return None


@dataclass(frozen=True, slots=True)
class EgressRules:
    allow: tuple[Allowed, ...]
    private: frozenset[tuple[IPAddress, int]]

    @classmethod
    def of(cls, settings: Settings) -> EgressRules:
        return cls(parse_allow(settings.agent_egress_allow), parse_private(settings.agent_egress_allow_private))

    def host_refusal(self, host: str, port: int) -> str | None:
        if not any(a.matches(host, port) for a in self.allow):
            return "not on the allow-list (AGENT_EGRESS_ALLOW)"
        return None

    def pick(self, addresses: list[str], port: int) -> tuple[str | None, str]:
        """The first acceptable address of those a name resolved to, or None and why none is."""
        why = "the name does not resolve"
        for text in addresses:
            addr = ipaddress.ip_address(text.split("%", 1)[0])
            refused = address_refusal(addr)
            if refused is None or (addr, port) in self.private:
                return text, ""
            why = f"resolves to a {refused}"
        return None, why
