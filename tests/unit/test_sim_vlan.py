"""The simulator's VLAN hand-off pieces that need no namespace: how the KVM agent reads a
broadcast URI, the names it and the switch give links, and how the SoftGate's trunk reads
a routing domain's links."""

from __future__ import annotations

import pytest

from simulator.fabric import FabricError
from simulator.kvm import BroadcastDomain, vlan_bridge_name
from simulator.vlan_switch import domain_links, host_port, switch_port, trunk_port

IFNAMSIZ = 15


def test_broadcast_uris_the_kvm_agent_plugs_into() -> None:
    assert BroadcastDomain.of("vxlan://10000") == BroadcastDomain("vxlan", 10000)
    assert BroadcastDomain.of("vxlan://10000").bridge == "brvx-10000"
    assert BroadcastDomain.of("vlan://3000") == BroadcastDomain("vlan", 3000)
    assert BroadcastDomain.of("vlan://3000").bridge == "breth1-3000"


@pytest.mark.parametrize("uri", ["", "vlan://", "vlan://untagged", "lswitch://1", "3000"])
def test_other_broadcast_uris_are_refused(uri: str) -> None:
    with pytest.raises(FabricError, match="cannot plug"):
        BroadcastDomain.of(uri)


def test_link_names_fit_the_kernel() -> None:
    names = [vlan_bridge_name(4094), host_port(4094), trunk_port(4094),
             switch_port("hv254", 4094), switch_port("sg128", 4094)]
    assert all(len(name) <= IFNAMSIZ for name in names), names


def test_a_domains_links_as_the_trunk_reads_them() -> None:
    links = [{"ifname": "lo"}, {"ifname": "vxpub"},
             {"ifname": "vxl3000"}, {"ifname": "sw3000", "master": "vxl3000"},
             {"ifname": "vxl3001"},
             {"ifname": "sw3002"},  # its bridge gone: the trunk deletes it
             {"ifname": "vxb10000"}, {"ifname": "vxl12345"}]
    found = domain_links(links)
    assert found.bridges == {3000: "vxl3000", 3001: "vxl3001"}
    assert found.ports == {3000: "vxl3000", 3002: ""}
