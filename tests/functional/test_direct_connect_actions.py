"""The network custom actions attach-vlan and detach-vlan through the real entry-point, as
runNetworkCustomAction sends them (protocol.md §3 #30): what they answer, what they
change (the mapping, the VTEP leaf's frr.conf and leaf.json), and their one-line refusals.
The data plane is tests/scenarios/test_direct_connect.py."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bench.service import Service
from tests import cloudstack_payloads as cp
from tests.cloudstack_payloads import ZONE, CloudStack, Net, Vpc

LEAF = {"zone_id": ZONE, "role": "leaf", "loopback": "10.255.3.1", "vtep": True,
        "uplinks": [{"interface": "uplink"}]}
PORT = {"device": "leaf1", "port": "swp1", "vlan": "100"}


@pytest.fixture
def leaf(service: Service) -> str:
    service.ok("PUT", "/v1/devices/leaf1", LEAF)
    service.ok("PUT", "/v1/devices/leaf9", {**LEAF, "loopback": "10.255.3.9", "vtep": False})
    return "leaf1"


def implemented(cs: CloudStack, number: int) -> Net:
    net = Net(str(number), f"10.{number % 250}.0.0/24", f"10.{number % 250}.0.1")
    output = cs.ok("implement-network", cp.implement_network(net), net)
    return replace(net, vlan=json.loads(output)["network.broadcast_uri"].split("://")[1])


def action(cs: CloudStack, net: Net | Vpc, name: str, params: dict[str, str]) -> cp.Spawn:
    fields = cp.N(net) if isinstance(net, Net) else cp.V(net)
    return cs.run("custom-action", cp.custom_action(fields, name, params), net)


def leaf_configs(service: Service) -> dict[str, tuple[int, str]]:
    artifacts = service.ok("GET", "/v1/devices/leaf1/config")["artifacts"]
    return {name: (a["generation"], a["content"]) for name, a in artifacts.items()}


def test_attach_and_detach_answer_and_render(service: Service, cs: CloudStack,
                                             leaf: str) -> None:
    net = implemented(cs, 301)
    attached = action(cs, net, "attach-vlan", PORT)
    assert (attached.code, attached.output) == (
        0, "attached: VLAN 100 on leaf1 port swp1 to network 301")
    configs = leaf_configs(service)
    assert f"vni {net.vlan}" in configs["frr.conf"][1]
    assert json.loads(configs["leaf.json"][1])["ports"] == [
        {"interface": "swp1", "vlan": 100, "vni": int(net.vlan)}]
    again = action(cs, net, "attach-vlan", PORT)
    assert (again.code, again.output) == (
        0, "already attached: VLAN 100 on leaf1 port swp1 to network 301")
    assert leaf_configs(service) == configs
    detached = action(cs, net, "detach-vlan", PORT)
    assert (detached.code, detached.output) == (
        0, "detached: VLAN 100 on leaf1 port swp1 from network 301")
    assert json.loads(leaf_configs(service)["leaf.json"][1])["ports"] == []
    assert f"vni {net.vlan}" not in leaf_configs(service)["frr.conf"][1]
    absent = action(cs, net, "detach-vlan", PORT)
    assert (absent.code, absent.output) == (
        0, "was not attached: VLAN 100 on leaf1 port swp1 from network 301")


@pytest.mark.parametrize(("params", "expected"), [
    ({"device": "leaf1", "port": "swp1"}, "missing vlan"),
    ({**PORT, "colour": "red"}, "unknown colour"),
    ({**PORT, "device": "leaf9"}, "device leaf9 is not a VTEP leaf"),
    ({**PORT, "device": "nope"}, "nope"),
    ({**PORT, "port": "uplink"}, "port uplink is a fabric port of leaf1"),
    ({**PORT, "port": "a" * 16}, "port: interface names are at most 15"),
    ({**PORT, "port": "swp12345678", "vlan": "4094"}, "longer than 15"),
    ({**PORT, "vlan": "0"}, "vlan: "),
    ({**PORT, "vlan": "4095"}, "vlan: "),
    ({**PORT, "vlan": "1e3"}, "vlan: expected a whole number"),
])
def test_bad_parameters_fail_in_one_line_and_change_nothing(
        service: Service, cs: CloudStack, leaf: str, params: dict[str, str],
        expected: str) -> None:
    net = implemented(cs, 302)
    before = leaf_configs(service)
    spawn = action(cs, net, "attach-vlan", params)
    assert spawn.code != 0 and expected in spawn.output, spawn.output
    assert "\n" not in spawn.output and "Traceback" not in spawn.output
    assert leaf_configs(service) == before


def test_a_vlan_of_another_network_is_refused(service: Service, cs: CloudStack,
                                              leaf: str) -> None:
    mine, theirs = implemented(cs, 303), implemented(cs, 304)
    assert action(cs, mine, "attach-vlan", {**PORT, "vlan": "303"}).code == 0
    for name in ("attach-vlan", "detach-vlan"):
        spawn = action(cs, theirs, name, {**PORT, "vlan": "303"})
        assert spawn.code != 0 and "is attached to network 303" in spawn.output
    assert action(cs, mine, "detach-vlan", {**PORT, "vlan": "303"}).code == 0


def test_a_vpc_has_no_direct_connect(cs: CloudStack, leaf: str) -> None:
    vpc = Vpc("705", "10.205.0.0/16")
    cs.ok("implement-vpc", cp.V(vpc), vpc)
    spawn = action(cs, vpc, "attach-vlan", PORT)
    assert spawn.code != 0 and "acts on a network, not a VPC" in spawn.output


def test_deleting_the_network_removes_its_attachments(service: Service, cs: CloudStack,
                                                      leaf: str) -> None:
    net = implemented(cs, 305)
    assert action(cs, net, "attach-vlan", {**PORT, "port": "swp5"}).code == 0
    assert [p["network_id"] for p in service.ok("GET", "/v1/devices/leaf1/direct-connects")
            ] == ["305"]
    cs.ok("destroy-network", cp.N(replace(net, state="destroy")), net)
    assert service.ok("GET", "/v1/devices/leaf1/direct-connects") == []
    assert json.loads(leaf_configs(service)["leaf.json"][1])["ports"] == []
