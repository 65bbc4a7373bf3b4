"""IANA's special-purpose address registries, checked in: which addresses a customer's
webhook may not reach.

`ipaddress`'s flags (`is_global`, `is_private`) follow these registries with a lag of
Python releases (3.11 knows neither 3fff::/20 nor 192.0.0.0/24 as a whole), so the rule
for webhook targets reads this table instead. Sources, as of 2025:
https://www.iana.org/assignments/iana-ipv4-special-registry/ and
https://www.iana.org/assignments/iana-ipv6-special-registry/, plus the blocks outside
unicast (IPv4 multicast; IPv6 outside 2000::/3, which IANA's IPv6 address space registry
keeps reserved except the NAT64 prefix listed below).

`reachable` is the registry's "Globally Reachable" column: True, False, or None where the
registry says N/A (relay and tunnel prefixes, deprecated blocks) — those are refused too.
Where blocks nest (192.0.0.9/32 in 192.0.0.0/24) the most specific one decides.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Block:
    prefix: str
    name: str
    rfc: str
    reachable: bool | None

    @cached_property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.prefix)


IPV4 = (
    Block("0.0.0.0/8", '"This network"', "RFC 791 §3.2", False),
    Block("0.0.0.0/32", '"This host on this network"', "RFC 1122 §3.2.1.3", False),
    Block("10.0.0.0/8", "Private-Use", "RFC 1918", False),
    Block("100.64.0.0/10", "Shared Address Space (carrier-grade NAT)", "RFC 6598", False),
    Block("127.0.0.0/8", "Loopback", "RFC 1122 §3.2.1.3", False),
    Block("169.254.0.0/16", "Link Local", "RFC 3927", False),
    Block("172.16.0.0/12", "Private-Use", "RFC 1918", False),
    Block("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890 §2.1", False),
    Block("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", False),
    Block("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False),
    Block("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", True),
    Block("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
    Block("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 §2.2", False),
    Block("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880, RFC 7050 §2.2", False),
    Block("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", False),
    Block("192.31.196.0/24", "AS112-v4", "RFC 7535", True),
    Block("192.52.193.0/24", "AMT", "RFC 7450", True),
    Block("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", None),
    Block("192.88.99.2/32", "6a44-relay anycast address", "RFC 6751", None),
    Block("192.168.0.0/16", "Private-Use", "RFC 1918", False),
    Block("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", True),
    Block("198.18.0.0/15", "Benchmarking", "RFC 2544", False),
    Block("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", False),
    Block("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", False),
    Block("240.0.0.0/4", "Reserved", "RFC 1112 §4", False),
    Block("255.255.255.255/32", "Limited Broadcast", "RFC 8190, RFC 919 §7", False),
    # Not in the special-purpose registry: multicast is no unicast target.
    Block("224.0.0.0/4", "Multicast", "RFC 5771", False),
)

IPV6 = (
    Block("::1/128", "Loopback Address", "RFC 4291", False),
    Block("::/128", "Unspecified Address", "RFC 4291", False),
    Block("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", False),
    Block("64:ff9b::/96", "IPv4-IPv6 Translation", "RFC 6052", True),  # + the IPv4 inside
    Block("64:ff9b:1::/48", "IPv4-IPv6 Translation (local use)", "RFC 8215", False),
    Block("100::/64", "Discard-Only Address Block", "RFC 6666", False),
    Block("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", False),
    Block("2001::/23", "IETF Protocol Assignments", "RFC 2928", False),
    Block("2001::/32", "TEREDO", "RFC 4380, RFC 8190", None),
    Block("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", True),
    Block("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
    Block("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", True),
    Block("2001:2::/48", "Benchmarking", "RFC 5180, RFC Errata 1752", False),
    Block("2001:3::/32", "AMT", "RFC 7450", True),
    Block("2001:4:112::/48", "AS112-v6", "RFC 7535", True),
    Block("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", None),
    Block("2001:20::/28", "ORCHIDv2", "RFC 7343", True),
    Block("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", True),
    Block("2001:db8::/32", "Documentation", "RFC 3849", False),
    Block("2002::/16", "6to4", "RFC 3056", None),
    Block("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", True),
    Block("3fff::/20", "Documentation", "RFC 9637", False),
    Block("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", False),
    Block("fc00::/7", "Unique-Local", "RFC 4193, RFC 8190", False),
    Block("fe80::/10", "Link-Local Unicast", "RFC 4291", False),
    # From IANA's IPv6 address space registry, outside the special-purpose one: all but
    # 2000::/3 (global unicast) is reserved; named here are the blocks once in use.
    Block("fec0::/10", "Site-Local (deprecated)", "RFC 3879", False),
    Block("ff00::/8", "Multicast", "RFC 4291", False),
)

GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


def block_of(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Block | None:
    """The most specific registry block holding `ip`, or None."""
    table = IPV4 if ip.version == 4 else IPV6
    found = [block for block in table if ip in block.network]
    return max(found, key=lambda block: block.network.prefixlen, default=None)


def globally_reachable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether the registries leave `ip` reachable on the public internet (an IPv4 address
    inside an IPv6 one is the caller's to check)."""
    block = block_of(ip)
    if block is not None:
        return block.reachable is True
    return ip.version == 4 or ip in GLOBAL_UNICAST_V6
