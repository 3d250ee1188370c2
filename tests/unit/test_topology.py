"""simulator/topology.py: names, loopbacks, links and the operator's declarations of a
fabric description; no root, no service (declarations go to a recording fake)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from simulator.cloud_fabric import declare_inventory, upstream_config
from simulator.topology import Link, Topology, TopologyError

LARGER = Topology(spines=2, leaves=2, hypervisors=3, softgates=2)
# The fabric simulator/evpn_fabric.py hard-coded before topologies: these must not move.
SMALL_LOOPBACKS = {"spine1": "10.255.0.1", "hv1": "10.255.1.1", "hv2": "10.255.1.2",
                   "sg1": "10.255.2.1"}
SMALL_UPSTREAM_CONFIG = """frr defaults datacenter
hostname up1
log syslog informational
!
router bgp 64496
 bgp router-id 198.51.100.1
 coalesce-time 100
 neighbor 198.51.100.0 remote-as external
 neighbor 198.51.100.0 timers 3 9
 neighbor 198.51.100.0 timers connect 2
 neighbor 198.51.100.0 bfd
 !
 address-family ipv4 unicast
  neighbor 198.51.100.0 default-originate
 exit-address-family
exit
!
"""


def recorded_inventory(topology: Topology) -> list[tuple[str, str, Any]]:
    calls: list[tuple[str, str, Any]] = []

    def request(method: str, path: str, body: Any) -> Any:
        calls.append((method, path, body))
        return {}

    declare_inventory(request, topology)
    return calls


def devices_declared(topology: Topology) -> dict[str, dict[str, Any]]:
    return {path.removeprefix("/v1/devices/"): body
            for _, path, body in recorded_inventory(topology)
            if path.startswith("/v1/devices/")}


# --- the small fabric ------------------------------------------------------------------


def test_small_is_the_scenarios_fabric() -> None:
    small = Topology.small()
    assert small.fabric_nodes == ("spine1", "hv1", "hv2", "sg1")
    assert small.frr_nodes == ("spine1", "hv1", "hv2", "sg1", "up1")
    assert small.loopbacks() == SMALL_LOOPBACKS
    assert small.links() == (
        Link("hv1", "uplink", "spine1", "to-hv1"),
        Link("hv2", "uplink", "spine1", "to-hv2"),
        Link("sg1", "uplink", "spine1", "to-sg1"),
        Link("sg1", "wan", "up1", "to-sg1", mtu=1500, address="198.51.100.0/31",
             peer_address="198.51.100.1/31"),
    )


def test_small_declares_what_the_scenarios_declared() -> None:
    calls = recorded_inventory(Topology.small())
    assert [(method, path) for method, path, _ in calls] == [
        ("PUT", "/v1/zones/1"), ("PUT", "/v1/physical-networks/200"),
        ("PUT", "/v1/devices/spine1"), ("PUT", "/v1/devices/hv1"), ("PUT", "/v1/devices/hv2"),
        ("PUT", "/v1/devices/sg1"),
    ]
    zone, physnet = calls[0][2], calls[1][2]
    assert zone == {"name": "sim", "rt_asn": 65000}
    assert physnet == {"zone_id": "1", "name": "guest", "isolation_method": "vxlan",
                       "l2vni_range": "10000-4999999", "l3vni_range": "5000000-5999999",
                       "vlan_range": "3000-4094"}
    devices = devices_declared(Topology.small())
    assert devices["spine1"] == {"zone_id": "1", "role": "spine", "loopback": "10.255.0.1",
                                 "uplinks": [
        {"interface": f"to-{node}", "peer_device": node, "peer_interface": "uplink"}
        for node in ("hv1", "hv2", "sg1")]}
    assert devices["hv2"] == {"zone_id": "1", "role": "hypervisor", "loopback": "10.255.1.2",
                              "uplinks": [{"interface": "uplink", "peer_device": "spine1",
                                           "peer_interface": "to-hv2"}]}
    assert devices["sg1"]["role"] == "softgate"
    assert devices["sg1"]["upstream_peers"] == [{"address": "198.51.100.1",
                                                 "remote_asn": 64496}]


def test_small_upstream_config_is_the_hand_written_one() -> None:
    assert upstream_config(Topology.small()) == SMALL_UPSTREAM_CONFIG


# --- two spines, two leaves ------------------------------------------------------------


def test_names_and_loopbacks() -> None:
    assert LARGER.fabric_nodes == ("spine1", "spine2", "leaf1", "leaf2", "hv1", "hv2", "hv3",
                                   "sg1", "sg2")
    assert LARGER.loopbacks() == {
        "spine1": "10.255.0.1", "spine2": "10.255.0.2", "leaf1": "10.255.3.1",
        "leaf2": "10.255.3.2", "hv1": "10.255.1.1", "hv2": "10.255.1.2", "hv3": "10.255.1.3",
        "sg1": "10.255.2.1", "sg2": "10.255.2.2",
    }


def test_every_leaf_reaches_every_spine_and_hosts_are_spread_over_the_leaves() -> None:
    assert LARGER.fabric_links() == (
        Link("leaf1", "uplink1", "spine1", "to-leaf1"),
        Link("leaf1", "uplink2", "spine2", "to-leaf1"),
        Link("leaf2", "uplink1", "spine1", "to-leaf2"),
        Link("leaf2", "uplink2", "spine2", "to-leaf2"),
        Link("hv1", "uplink", "leaf1", "to-hv1"),
        Link("hv2", "uplink", "leaf2", "to-hv2"),
        Link("hv3", "uplink", "leaf1", "to-hv3"),
        # SoftGates continue the round: the two land on different leaves.
        Link("sg1", "uplink", "leaf2", "to-sg1"),
        Link("sg2", "uplink", "leaf1", "to-sg2"),
    )


def test_each_softgate_has_its_own_wan_31_to_up1() -> None:
    assert LARGER.wan_links() == (
        Link("sg1", "wan", "up1", "to-sg1", mtu=1500, address="198.51.100.0/31",
             peer_address="198.51.100.1/31"),
        Link("sg2", "wan", "up1", "to-sg2", mtu=1500, address="198.51.100.2/31",
             peer_address="198.51.100.3/31"),
    )
    devices = devices_declared(LARGER)
    assert devices["sg2"]["upstream_peers"] == [{"address": "198.51.100.3",
                                                 "remote_asn": 64496}]
    assert "upstream_peers" not in devices["leaf1"]


def test_without_leaves_hosts_hang_off_every_spine() -> None:
    topology = Topology(spines=2, hypervisors=1)
    assert topology.fabric_links() == (
        Link("hv1", "uplink1", "spine1", "to-hv1"),
        Link("hv1", "uplink2", "spine2", "to-hv1"),
        Link("sg1", "uplink1", "spine1", "to-sg1"),
        Link("sg1", "uplink2", "spine2", "to-sg1"),
    )


@pytest.mark.parametrize("topology", [Topology.small(), LARGER], ids=["small", "larger"])
def test_interface_names_fit_and_are_unique_per_node(topology: Topology) -> None:
    ends = Counter(end for link in topology.links()
                   for end in ((link.node, link.interface), (link.peer, link.peer_interface)))
    assert [end for end, count in ends.items() if count > 1] == []
    assert all(len(interface) <= 15 for _, interface in ends)


@pytest.mark.parametrize("topology", [Topology.small(), LARGER], ids=["small", "larger"])
def test_declared_uplinks_are_the_links_seen_from_both_ends(topology: Topology) -> None:
    declared = {(name, up["interface"], up["peer_device"], up["peer_interface"])
                for name, body in devices_declared(topology).items() for up in body["uplinks"]}
    from_links = {end for link in topology.fabric_links() for end in (
        (link.node, link.interface, link.peer, link.peer_interface),
        (link.peer, link.peer_interface, link.node, link.interface))}
    assert declared == from_links


def test_leaf_lists_its_uplinks_before_its_host_ports() -> None:
    uplinks = devices_declared(LARGER)["leaf1"]["uplinks"]
    assert [up["interface"] for up in uplinks] == ["uplink1", "uplink2", "to-hv1", "to-hv3",
                                                   "to-sg2"]


def test_only_the_operators_part_is_declared() -> None:
    calls = recorded_inventory(LARGER)
    assert {method for method, _, _ in calls} == {"PUT"}
    assert [path for _, path, _ in calls] == [
        "/v1/zones/1", "/v1/physical-networks/200",
        *(f"/v1/devices/{node}" for node in LARGER.fabric_nodes)]
    roles = {name: body["role"] for name, body in devices_declared(LARGER).items()}
    assert Counter(roles.values()) == {"spine": 2, "leaf": 2, "hypervisor": 3, "softgate": 2}


def test_upstream_config_peers_with_every_softgate() -> None:
    config = upstream_config(LARGER)
    for softgate in ("198.51.100.0", "198.51.100.2"):
        assert f" neighbor {softgate} remote-as external\n" in config
        assert f"  neighbor {softgate} default-originate\n" in config


# --- settings and limits ---------------------------------------------------------------


def test_vlan_isolation_is_carried_into_the_physical_network() -> None:
    calls = recorded_inventory(Topology(isolation="vlan"))
    assert calls[1][2]["isolation_method"] == "vlan"


@pytest.mark.parametrize("settings", [
    {"spines": 0}, {"leaves": -1}, {"hypervisors": 0}, {"softgates": 0},
    {"hypervisors": 255}, {"softgates": 129}, {"isolation": "gre"},
])
def test_impossible_topologies_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(TopologyError):
        Topology(**settings)


def test_a_node_outside_the_topology_has_no_role() -> None:
    with pytest.raises(TopologyError):
        Topology.small().loopback("leaf1")
