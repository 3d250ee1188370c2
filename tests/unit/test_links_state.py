"""agent.links_state: the `links` section of softgate.json, strict and lenient."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from agent.links_state import LinksState, LinksStateError, parse_links, router_mac
from tests.unit.links_samples import domain_json, links_json, vlan_segment_json


def state(domains: int = 2) -> dict[str, Any]:
    return links_json(domains)


def refused(data: object) -> str:
    with pytest.raises(LinksStateError) as info:
        LinksState.from_json(data)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_sample_parses_into_sorted_typed_data() -> None:
    data = state(2)
    data["domains"].reverse()
    parsed = LinksState.from_json(data)
    assert [d.netns for d in parsed.domains] == ["vxr5000010", "vxr5000020"]
    first = parsed.domains[0]
    assert parsed.vtep_address == ipaddress.IPv4Address("10.255.2.1")
    assert parsed.gateway_mac == "02:00:5e:00:00:01"
    assert parsed.blackholes == (ipaddress.ip_network("203.0.113.0/24"),)
    assert first.uplink.root == "vxp5000010" and first.uplink.domain == "vxpub"
    assert first.l3vni is not None and first.l3vni.vxlan == "vxv5000010"
    assert [s.bridge for s in first.segments] == ["vxb5000011", "vxb5000012"]
    segment = first.segments[0]
    assert segment.gateway == ipaddress.IPv4Interface("10.0.1.1/24")
    assert segment.gateway6 == ipaddress.IPv6Interface("2001:db8:1::1/64")
    assert (segment.vni, segment.vxlan, segment.vlan) == (5000011, "vxv5000011", None)
    assert first.routes == (ipaddress.IPv4Network("198.18.1.0/24"),)
    assert parsed.kept == ()
    assert LinksStateError.__mro__[1] is ValueError


def test_a_vlan_handoff_domain_needs_no_vtep() -> None:
    vlan = domain_json(3, 0, l3vni=False)
    vlan["segments"] = [vlan_segment_json("net-v", 3001, "10.99.0.1/24")]
    parsed = LinksState.from_json({"vtep_address": None, "gateway_mac": "02:00:5e:00:00:01",
                                   "domains": [vlan]})
    segment = parsed.domains[0].segments[0]
    assert (parsed.domains[0].netns, parsed.domains[0].l3vni) == ("vxr4003", None)
    assert (segment.bridge, segment.vlan, segment.vni, segment.vxlan) == ("vxl3001", 3001,
                                                                          None, None)
    evpn = {"vtep_address": None, "gateway_mac": "02:00:5e:00:00:01",
            "domains": [domain_json(1)]}
    assert "vtep_address is null" in refused(evpn)


def test_the_router_mac_is_the_vtep_address_behind_02_00() -> None:
    assert router_mac(ipaddress.IPv4Address("10.255.2.1")) == "02:00:0a:ff:02:01"
    parsed = LinksState.from_json(state())
    assert parsed.router_mac == "02:00:0a:ff:02:01" != parsed.gateway_mac
    first = int(parsed.router_mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b01  # locally administered, unicast
    no_vtep = LinksState.from_json({"vtep_address": None, "gateway_mac": "02:00:5e:00:00:01"})
    assert no_vtep.router_mac is None


def test_mac_is_lower_cased_and_must_be_unicast() -> None:
    data = state(1)
    data["gateway_mac"] = "02:00:5E:00:00:0A"
    assert LinksState.from_json(data).gateway_mac == "02:00:5e:00:00:0a"
    for bad in ("03:00:5e:00:00:01", "00:00:00:00:00:00", "02:00:5e:00:00", "02-00-5e-00-00-01"):
        data["gateway_mac"] = bad
        assert refused(data).startswith("links.gateway_mac: ")


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("vtep_address",), "10.255.2", "links.vtep_address: not an IPv4 address"),
    (("blackholes", 0), "203.0.113.1/24", "links.blackholes[0]: not a CIDR with host bits"),
    (("domains", 0, "netns"), "vxr", "links.domains[0].netns: not vxr<number>"),
    (("domains", 0, "netns"), "vxr123456789", "links.domains[0].netns: not vxr<number>"),
    (("domains", 0, "netns"), "tenant1", "links.domains[0].netns: not vxr<number>"),
    (("domains", 0, "uplink", "root"), "vxp5000011", "links.domains[0].uplink.root: vxp5000011"
                                                      " does not match"),
    (("domains", 0, "uplink", "domain"), "eth0", "links.domains[0].uplink.domain: expected"),
    (("domains", 0, "l3vni", "vni"), 0, "links.domains[0].l3vni.vni: expected an integer"),
    (("domains", 0, "l3vni", "vni"), 16777216, "links.domains[0].l3vni.vni: expected"),
    (("domains", 0, "l3vni", "vni"), True, "links.domains[0].l3vni.vni: expected"),
    (("domains", 0, "l3vni", "bridge"), "vxb1", "links.domains[0].l3vni.bridge: expected "
                                                "vxb5000010"),
    (("domains", 0, "l3vni", "vxlan"), "vxb5000010", "links.domains[0].l3vni.vxlan: expected"),
    (("domains", 0, "routes", 0), "2001:db8::/64", "links.domains[0].routes[0]: not an IPv4"),
    (("domains", 0, "routes6", 0), "10.0.0.0/8", "links.domains[0].routes6[0]: not an IPv6"),
    (("domains", 0, "segments", 0, "vni"), "5000011", "links.domains[0].segments[0].vni: "),
    (("domains", 0, "segments", 0, "bridge"), "vxb5000012", "links.domains[0].segments[0]."
                                                            "bridge: expected vxb5000011"),
    (("domains", 0, "segments", 0, "vxlan"), "vxv1", "links.domains[0].segments[0].vxlan: "),
    (("domains", 0, "segments", 0, "gateway"), "10.0.1.0/24", "links.domains[0].segments[0]."
                                                              "gateway: 10.0.1.0/24 is not"),
    (("domains", 0, "segments", 0, "gateway"), "10.0.1.1/31", "links.domains[0].segments[0]."
                                                              "gateway: "),
    (("domains", 0, "segments", 0, "gateway"), "10.0.1.1", "links.domains[0].segments[0]."
                                                           "gateway: 10.0.1.1/32"),
    (("domains", 0, "segments", 0, "gateway6"), "fe80::1/64", "links.domains[0].segments[0]."
                                                              "gateway6: fe80::1/64 is not"),
    (("domains", 0, "segments", 0, "network"), "net 1", "links.domains[0].segments[0]."
                                                        "network: not a network id"),
])
def test_bad_fields_are_named(path: tuple[Any, ...], value: object, expected: str) -> None:
    data = state(1)
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert refused(data).startswith(expected)


@pytest.mark.parametrize("where", [(), ("domains", 0), ("domains", 0, "uplink"),
                                   ("domains", 0, "l3vni"), ("domains", 0, "segments", 0)])
def test_unknown_keys_are_refused(where: tuple[Any, ...]) -> None:
    data = state(1)
    target: Any = data
    for key in where:
        target = target[key]
    target["mtu"] = 9000
    assert "unknown field 'mtu'" in refused(data)


def test_required_fields() -> None:
    for key in ("netns", "uplink"):
        data = state(1)
        del data["domains"][0][key]
        assert refused(data) == f"links.domains[0].{key}: required"
    data = state(1)
    del data["gateway_mac"]
    assert refused(data) == "links.gateway_mac: required"
    assert refused([]).startswith("links: expected an object")


def test_a_segment_is_vxlan_or_vlan_never_both_or_neither() -> None:
    data = state(1)
    data["domains"][0]["segments"][0]["vlan"] = 3001
    assert "give exactly one of vni and vlan" in refused(data)
    data["domains"][0]["segments"][0].update(vni=None, vlan=None)
    assert "give exactly one of vni and vlan" in refused(data)
    vlan = vlan_segment_json("net-v", 3001, "10.99.0.1/24")
    data = state(1)
    data["domains"][0]["segments"] = [dict(vlan, vxlan="vxv3001")]
    assert "vxlan: must be null on a VLAN segment" in refused(data)
    data["domains"][0]["segments"] = [dict(vlan, bridge="vxb3001")]
    assert "bridge: expected vxl3001" in refused(data)


def test_the_l3vni_names_the_namespace() -> None:
    data = state(1)
    data["domains"][0]["l3vni"] = {"vni": 5000019, "bridge": "vxb5000019",
                                   "vxlan": "vxv5000019"}
    assert "netns: vxr5000010 is not named after its L3VNI 5000019" in refused(data)


def test_clashes_between_and_within_domains() -> None:
    data = state(2)
    data["domains"][1]["netns"] = "vxr5000010"
    data["domains"][1]["uplink"]["root"] = "vxp5000010"
    data["domains"][1]["l3vni"] = None
    assert refused(data) == "links.domains[1].netns: vxr5000010 is listed twice"
    data = state(2)
    data["domains"][1]["segments"][0] = copy.deepcopy(data["domains"][0]["segments"][0])
    data["domains"][1]["segments"][0]["network"] = "other"
    assert "VNI 5000011 is already used by vxr5000010" in refused(data)
    data = state(2)
    data["domains"][1]["segments"][0]["network"] = "net-1-0"
    assert "network net-1-0 is already used by vxr5000010" in refused(data)
    data = state(2)
    data["domains"][1]["routes"] = ["198.18.1.0/24"]
    assert "route 198.18.1.0/24 is already used by vxr5000010" in refused(data)
    data = state(1)
    data["domains"][0]["routes"] = ["203.0.113.0/24"]
    assert "route 203.0.113.0/24 is already used by links.blackholes" in refused(data)
    data = state(1)
    data["domains"][0]["routes"] = ["198.18.1.0/24", "198.18.1.0/24"]
    assert "routes: 198.18.1.0/24 is listed twice" in refused(data)
    data = state(1)
    data["domains"][0]["segments"][1]["gateway"] = "10.0.1.200/25"
    assert "10.0.1.128/25 overlaps network net-1-0's subnet" in refused(data)


def test_vlans_are_unique_across_domains() -> None:
    data = state(0)
    for index in (3, 4):
        vlan = domain_json(index, 0, l3vni=False)
        vlan["segments"] = [vlan_segment_json(f"net-{index}", 3001, f"10.{index}.0.1/24")]
        data["domains"].append(vlan)
    assert "VLAN 3001 is already used by vxr4003" in refused(data)


def test_lenient_parse_leaves_bad_domains_out_and_keeps_their_namespaces() -> None:
    data = state(3)
    data["domains"][1]["segments"][0]["gateway"] = "not an address"
    data["domains"][2]["segments"][0]["vni"] = 5000011  # clashes with the first domain
    data["domains"][2]["segments"][0]["bridge"] = "vxb5000011"
    data["domains"][2]["segments"][0]["vxlan"] = "vxv5000011"
    data["domains"].append({"netns": 42})
    parsed, problems = parse_links(data)
    assert [d.netns for d in parsed.domains] == ["vxr5000010"]
    assert parsed.kept == ("vxr5000020", "vxr5000030")
    assert [(p.kind, p.id, p.state) for p in problems] == [
        ("domain", "vxr5000020", "error"), ("domain", "vxr5000030", "error"),
        ("domain", "links.domains[3]", "error")]
    assert problems[0].reason.startswith("links.domains[1].segments[0].gateway: ")
    assert "already used by vxr5000010" in problems[1].reason


def test_lenient_parse_still_refuses_a_bad_top_level() -> None:
    data = state(1)
    data["gateway_mac"] = "nope"
    with pytest.raises(LinksStateError, match=r"links\.gateway_mac"):
        parse_links(data)


def test_a_duplicate_of_a_good_domain_is_not_kept() -> None:
    data = state(1)
    data["domains"].append(copy.deepcopy(data["domains"][0]))
    parsed, problems = parse_links(data)
    assert [d.netns for d in parsed.domains] == ["vxr5000010"]
    assert parsed.kept == ()
    assert problems[0].reason == "links.domains[1].netns: vxr5000010 is listed twice"
