"""dhcp_state: every field checked, tenant strings cannot inject, errors are one line."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from agent.dhcp_state import (
    DhcpState,
    DhcpStateError,
    parse_state,
    with_network,
    without_network,
)
from tests.unit.dhcp_samples import ipv4_network, nic, state_json


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(DhcpStateError) as info:
        DhcpState.from_json(data)
    message = str(info.value)
    assert "\n" not in message and "\0" not in message
    return message


def with_nic_field(key: str, value: object) -> dict[str, Any]:
    network = ipv4_network()
    network["nics"][0][key] = value
    return state_json(network)


def with_network_field(key: str, value: object) -> dict[str, Any]:
    network = ipv4_network()
    network[key] = value
    return state_json(network)


def test_samples_parse_sorted_and_typed() -> None:
    state = DhcpState.from_json(state_json())
    assert [net.id for net in state.networks] == ["201", "202", "203"]
    net = state.networks[0]
    assert net.gateway == ipaddress.IPv4Address("10.10.1.1")
    assert [str(s) for s in net.dns_servers] == ["192.0.2.53", "198.51.100.53"]
    assert [n.mac for n in net.nics] == sorted(n.mac for n in net.nics)
    assert net.nics[0].vm_data.password == "Ch4ngeMe-1"
    assert dict(net.nics[0].vm_data.metadata)["vm-id"] == "101"
    assert state.networks[1].nics[1].default is False
    assert state.networks[2].nics[0].ipv6 == ipaddress.IPv6Address("fd00:10:3::11")


@pytest.mark.parametrize("hostname", [
    "a,b", "a b", "vm\n1", "vm#1", 'vm"1', "vm'1", "vm\x001", "-vm", "vm-", "a" * 64,
    "vm.example", "vm/1", "vm=1", "vm\u00e9",
])
def test_hostnames_that_could_inject_are_refused(hostname: str) -> None:
    message = refused(with_nic_field("hostname", hostname))
    assert message.startswith("networks[0].nics[0].hostname: not a valid host name")


@pytest.mark.parametrize("domain", [
    "a,b.internal", "x.internal\nserver=1.2.3.4", "x#.internal", "x/internal",
    "x..internal", "x.internal/", "a" * 64 + ".internal", "'x'.internal",
])
def test_domains_that_could_inject_are_refused(domain: str) -> None:
    assert refused(with_network_field("domain", domain)).startswith(
        "networks[0].domain: not a valid domain name")


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("mac", "02:00:0a:0a:01", "networks[0].nics[0].mac: not a MAC address"),
    ("ip", "10.10.9.5", "networks[0].nics[0].ip: 10.10.9.5 is not a free host address"),
    ("ip", "10.10.1.1", "is not a free host address"),
    ("ip", "10.10.1.255", "is not a free host address"),
    ("ip6", "fd00::5", "is not in the network's IPv6 prefix"),
    ("default", "yes", "networks[0].nics[0].default: expected true or false"),
    ("user_data", "a\x00b", "user_data: control character U+0000 at offset 1"),
    ("user_data", "\ud800", "user_data: not valid UTF-8 text"),
    ("user_data", "x" * (1024 * 1024 + 1), "is more than 1048576"),
    ("user_data", 5, "user_data: expected a string, got int"),
    ("password", "two words", "a password is 1-256 printable characters"),
    ("password", "tab\there", "a password is"),
    ("metadata", {"../etc": "x"}, "metadata: bad key '../etc'"),
    ("metadata", {"a/b": "x"}, "bad key 'a/b'"),
    ("metadata", {"k\n": "x"}, "bad key"),
    ("metadata", {"vm-id": "1", "VM-ID": "2"}, "is listed twice (keys ignore case)"),
    ("metadata", {"user-data": "x"}, "is listed twice"),
    ("metadata", {"vm-id": "a\x07"}, "metadata.vm-id: control character U+0007"),
    ("metadata", ["vm-id"], "expected an object of key: text"),
    ("surprise", 1, "networks[0].nics[0]: unknown field 'surprise'"),
])
def test_nic_fields_are_checked(key: str, value: object, expected: str) -> None:
    assert expected in refused(with_nic_field(key, value))


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("id", "a b", "networks[0].id: not an id"),
    ("bridge", "a-name-too-long-for-linux", "networks[0].bridge: not an interface name"),
    ("bridge", "br;x", "not an interface name"),
    ("netns", "../root", "networks[0].netns: not a namespace name"),
    ("cidr", "10.10.1.0/31", "has no room for a gateway"),
    ("cidr", "2001:db8::/64", "not an IPv4 CIDR"),
    ("gateway", "10.10.2.1", "networks[0].gateway: 10.10.2.1 is not a host address"),
    ("dns_servers", "8.8.8.8,nope", "networks[0].dns_servers: not an IP address: 'nope'"),
    ("dns_servers", ["1.1.1.1"] * 5, "5 servers is more than 4"),
    ("upstream_dns", ["2001:db8::1"], "not an IPv4 address"),
    ("ipv6_cidr", "fd00::/48", "must be /64 for SLAAC"),
    ("ipv6_cidr", "fd00::/64", "give both ipv6_cidr and ipv6_gateway"),
    ("dhcp", 1, "networks[0].dhcp: expected true or false"),
    ("nics", {}, "networks[0].nics: expected a list"),
])
def test_network_fields_are_checked(key: str, value: object, expected: str) -> None:
    assert expected in refused(with_network_field(key, value))


def test_cidr_is_required() -> None:
    network = ipv4_network()
    del network["cidr"]
    assert refused(state_json(network)) == "networks[0].cidr: required"


def test_duplicates_are_refused() -> None:
    network = ipv4_network()
    network["nics"].append(nic(9, mac=network["nics"][0]["mac"]))
    assert "mac: 02:00:0a:0a:01:01 is listed twice" in refused(state_json(network))
    network = ipv4_network()
    network["nics"].append(nic(9, ip=network["nics"][0]["ip"]))
    assert "10.10.1.11 is already used by NIC" in refused(state_json(network))
    network = ipv4_network()
    network["nics"].append(nic(9, hostname="VM1"))
    assert "vm1 is already used by NIC" in refused(state_json(network))
    assert "network 201 is listed twice" in refused(state_json(ipv4_network(), ipv4_network()))


def test_parse_state_keeps_the_good_and_reports_the_bad() -> None:
    good = ipv4_network()
    good["nics"][1]["hostname"] = "bad,name"
    broken = ipv4_network()
    broken["id"] = "209"
    broken["gateway"] = "not-an-ip"
    state, problems = parse_state(state_json(good, broken))
    assert [net.id for net in state.networks] == ["201"]
    assert len(state.networks[0].nics) == 2
    assert [(p.kind, p.id, p.ok) for p in problems] == [
        ("nic", "201/02:00:0a:0a:01:02", False), ("network", "209", False)]
    assert problems[0].reason.startswith("networks[0].nics[1].hostname:")


def test_parse_state_refuses_a_non_object() -> None:
    with pytest.raises(DhcpStateError, match="state: expected an object"):
        parse_state([])


def test_with_and_without_network() -> None:
    state = DhcpState.from_json(state_json())
    replacement = DhcpState.from_json(state_json(ipv4_network())).networks[0]
    smaller = without_network(state, "202")
    assert [net.id for net in smaller.networks] == ["201", "203"]
    assert with_network(smaller, replacement).networks[0] == replacement
