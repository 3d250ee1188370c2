"""agent.netfilter_state: valid samples parse; anything off is refused in one line."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Any

import pytest

from agent.netfilter_state import PortRange, RoutingDomain, StateError
from tests.unit.netfilter_samples import raw


def test_isolated_sample_parses_to_typed_values() -> None:
    domain = RoutingDomain.from_json(raw("isolated"))
    assert domain.source_nat_ip == IPv4Address("203.0.113.2")
    assert domain.networks[0].cidr == IPv4Network("10.1.1.0/24")
    assert domain.networks[0].acl is None
    pf2 = next(p for p in domain.port_forwards if p.id == "pf2")
    assert pf2.public_ports == PortRange(5000, 5003)
    lb = next(lb for lb in domain.load_balancers if lb.id == "lb1")
    assert [b.alive for b in lb.backends] == [True, True, False]


def test_vpc_acl_is_sorted_by_number() -> None:
    data = raw("vpc")
    data["networks"][0]["acl"].reverse()
    tier = RoutingDomain.from_json(data).networks[0]
    assert tier.acl is not None
    assert [item.number for item in tier.acl] == [10, 20, 30, 40]


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    target: Any = data
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    target[keys[-1]] = value


INJECTIONS = [
    ("public_interface", 'pub0"; flush ruleset; "', "domain.public_interface"),
    ("public_interface", "a-very-long-interface-name", "domain.public_interface"),
    ("source_nat_ip", "203.0.113.2 }; flush ruleset", "domain.source_nat_ip"),
    ("source_nat_ip", "203.0.113.2%eth0", "domain.source_nat_ip"),
    ("source_nat_ip", "0x7f.1", "domain.source_nat_ip"),
    ("source_nat_ip", "::1", "domain.source_nat_ip"),
    ("id", "1 2", "domain.id"),
    ("id", "a_b", "domain.id"),
    ("networks.0.cidr", "10.1.1.1/24", "domain.networks[0].cidr"),
    ("networks.0.gateway", "10.9.9.9", "domain.networks[0].gateway"),
    ("networks.0.egress_default_allow", "no", "domain.networks[0].egress_default_allow"),
    ("port_forwards.0.protocol", "gre", "domain.port_forwards[0].protocol"),
    ("port_forwards.0.public_port", 0, "domain.port_forwards[0].public_port"),
    ("port_forwards.0.public_port", 65536, "domain.port_forwards[0].public_port"),
    ("port_forwards.0.public_port", True, "domain.port_forwards[0].public_port"),
    ("port_forwards.0.public_port", "22; drop", "domain.port_forwards[0].public_port"),
    ("port_forwards.0.private_port", "22-23", "domain.port_forwards[0]"),
    ("port_forwards.1.public_port", "5003-5000", "domain.port_forwards[1].public_port"),
    ("firewall_rules.0.protocol", "tcp }", "domain.firewall_rules[0].protocol"),
    ("firewall_rules.0.source_cidrs", ["0.0.0.0/0 } accept"],
     "domain.firewall_rules[0].source_cidrs[0]"),
    ("firewall_rules.0.port_end", 70000, "domain.firewall_rules[0].port_end"),
    ("firewall_rules.2.icmp_type", 256, "domain.firewall_rules[2].icmp_type"),
    ("firewall_rules.0.icmp_type", 8, "domain.firewall_rules[0]"),
    ("firewall_rules.0.network", "999", "domain.firewall_rules"),
    ("firewall_rules.0.flags", "x", "domain.firewall_rules[0]"),
    ("load_balancers.0.algorithm", "random", "domain.load_balancers[0].algorithm"),
    ("load_balancers.0.backends.0.weight", 0, "domain.load_balancers[0].backends[0].weight"),
    ("load_balancers.0.backends.0.alive", 1, "domain.load_balancers[0].backends[0].alive"),
    ("mode", "bridged", "domain.mode"),
    ("colour", "blue", "domain"),
    ("networks.0.ipv6_cidr", "2001:db8:1:1::1/64", "domain.networks[0].ipv6_cidr"),
    ("networks.0.ipv6_cidr", "2001:db8:1:1::", "domain.networks[0].ipv6_cidr"),
    ("networks.0.ipv6_cidr", "10.1.1.0/24", "domain.networks[0].ipv6_cidr"),
    ("networks.0.ipv6_cidr", "fe80::%eth0/64", "domain.networks[0].ipv6_cidr"),
    ("networks.0.ipv6_cidr", "::ffff:10.1.1.0/120", "domain.networks[0].ipv6_cidr"),
    ("networks.0.ipv6_cidr", "2001:db8::/64 } accept", "domain.networks[0].ipv6_cidr"),
    ("networks.0.ipv6_cidr", 20010000, "domain.networks[0].ipv6_cidr"),
    ("networks.0.ipv6_cidr", "2001:db8::/129", "domain.networks[0].ipv6_cidr"),
    ("networks.0.ipv6_cidr", "::/0", "domain.networks[0].ipv6_cidr"),
    ("networks.0.ipv6_cidr", "fe80::/64", "domain.networks[0].ipv6_cidr"),
    ("networks.0.ipv6_cidr", "ff05::/64", "domain.networks[0].ipv6_cidr"),
    ("networks.0.ipv6_cidr", "::1/128", "domain.networks[0].ipv6_cidr"),
    ("networks.0.ipv6_cidr", "::ffff:0:0/96", "domain.networks[0].ipv6_cidr"),
]


@pytest.mark.parametrize(("path", "value", "field"), INJECTIONS)
def test_refuses_bad_fields_in_one_line(path: str, value: Any, field: str) -> None:
    data = raw("isolated")
    _set(data, path, value)
    with pytest.raises(StateError) as error:
        RoutingDomain.from_json(data)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(field), message


CROSS_CHECKS = [
    # (sample, path, value, words in the message)
    ("isolated", "port_forwards.0.public_ip", "203.0.113.3", "static NAT"),
    ("isolated", "load_balancers.0.public_ip", "203.0.113.3", "static NAT"),
    ("isolated", "port_forwards.0.public_port", 6001, "overlaps"),
    ("isolated", "static_nats", [{"public_ip": "203.0.113.3", "private_ip": "10.1.1.11"},
                                 {"public_ip": "203.0.113.9", "private_ip": "10.1.1.11"}],
     "private_ip"),
    ("isolated", "networks", [{"id": "1", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1"},
                              {"id": "2", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1"}],
     "one network"),
    ("isolated", "networks.0.acl", [], "acl"),
    ("vpc", "networks.1.cidr", "10.20.0.0/16", "overlaps"),
    ("vpc", "networks.1.gateway", "10.20.0.1", "outside"),
    ("vpc", "networks.0.acl.1.number", 10, "share a number"),
    ("vpc", "firewall_rules", [{"id": "1", "direction": "egress", "network": "301"}], "ACL"),
    ("routed", "source_nat_ip", "203.0.113.9", "no NAT"),
    ("isolated", "firewall_rules.0.public_ip", None, "public_ip"),
    ("vpc", "networks.1.ipv6_cidr", "2001:db8:20:1:8000::/80", "overlaps"),
]


@pytest.mark.parametrize(("name", "path", "value", "words"), CROSS_CHECKS)
def test_refuses_what_cloudstack_would(name: str, path: str, value: Any, words: str) -> None:
    data = raw(name)
    _set(data, path, value)
    if value is None:
        data["firewall_rules"][0].pop("public_ip")
    with pytest.raises(StateError, match=words):
        RoutingDomain.from_json(data)


def test_ipv6_prefix_is_optional_and_typed() -> None:
    vpc = RoutingDomain.from_json(raw("vpc"))
    assert vpc.networks[0].ipv6_cidr == IPv6Network("2001:db8:20:1::/64")
    assert vpc.networks[1].ipv6_cidr is None  # absent: no IPv6
    data = raw("vpc")
    data["networks"][1]["ipv6_cidr"] = "2001:DB8:20:2::/64"  # upper case is one spelling
    data["networks"][0]["ipv6_cidr"] = "fd00:20:1::/48"  # unique local, any length
    tiers = RoutingDomain.from_json(data).networks
    assert tiers[1].ipv6_cidr == IPv6Network("2001:db8:20:2::/64")
    assert tiers[0].ipv6_cidr == IPv6Network("fd00:20:1::/48")


def test_port_range_spellings() -> None:
    assert PortRange.parse(80, "p") == PortRange(80, 80)
    assert PortRange.parse("1000-1010", "p") == PortRange(1000, 1010)
    assert PortRange.parse([1, 65535], "p").size == 65535
    with pytest.raises(StateError):
        PortRange.parse("80-", "p")


def test_icmp_minus_one_means_any() -> None:
    data = raw("isolated")
    data["firewall_rules"][2]["icmp_type"] = -1
    rule = RoutingDomain.from_json(data).firewall_rules[2]
    assert rule.match.icmp_type is None and rule.match.icmp_code is None


def test_acl_accepts_protocol_numbers_firewall_does_not() -> None:
    data = raw("isolated")
    data["firewall_rules"][0] = {"id": "1", "direction": "ingress", "network": "201",
                                 "public_ip": "203.0.113.2", "protocol": 47}
    with pytest.raises(StateError, match="protocol"):
        RoutingDomain.from_json(data)
    vpc = RoutingDomain.from_json(raw("vpc"))
    assert vpc.networks[1].acl is not None
    assert vpc.networks[1].acl[1].match.protocol == 47
