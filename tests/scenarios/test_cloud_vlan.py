"""A VLAN hand-off zone driven through the CloudStack stand-in with the real `cs` client:
the guest physical network's isolation method is VLAN, `vxgate cloudstack register`
registers vxgate on it as on a VXLAN zone, and the service gives each network a
transport VLAN from 3000-4094 (`vlan://<id>`) instead of a VNI.

This kernel has no 802.1Q, so each transport VLAN is its own bridge in a switch node
(simulator/vlan_switch.py): the KVM agent cables each hypervisor's VLAN bridge to it, the
SoftGate's trunk cables sg1's `vxl<vlan>` segment. Every isolated-network check of
test_cloud_isolated.py runs here too (imported below, on this module's VLAN cloud), plus
the VLAN's own: the transport VLAN and its cabling, no EVPN for these segments anywhere,
and a new network cabled afresh. The rendered texts of a VLAN site are golden-checked in
tests/golden (softgate_vlan_handoff.conf, vlan_handoff.json); here the running fabric is
asked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from simulator.cloud import Cloud
from simulator.fabric import wait_until
from simulator.kvm import vlan_bridge_name
from simulator.topology import Topology
from simulator.vlan_switch import switch_port, trunk_port
from tests.scenarios import test_cloud_isolated as shared
from tests.scenarios.conftest import scenario_cloud

GATEWAY = "10.110.0.1"
VLAN_RANGE = range(3000, 4094 + 1)

# The isolated network's checks on this VLAN site, in their own order (the last deletes
# their network): pytest collects them here with this module's `cloud`.
isolated = shared.isolated
test_vms_get_their_addresses_by_dhcp = shared.test_vms_get_their_addresses_by_dhcp
test_vms_on_two_hypervisors_reach_each_other = shared.test_vms_on_two_hypervisors_reach_each_other
test_source_nat_to_the_internet = shared.test_source_nat_to_the_internet
test_user_data_and_password_are_served = shared.test_user_data_and_password_are_served
test_static_nat_and_port_forward_open_with_their_firewall = (
    shared.test_static_nat_and_port_forward_open_with_their_firewall)
test_load_balancer_spreads_and_skips_a_stopped_backend = (
    shared.test_load_balancer_spreads_and_skips_a_stopped_backend)
test_restart_with_cleanup_converges = shared.test_restart_with_cleanup_converges
test_delete_network_leaves_nothing_behind = shared.test_delete_network_leaves_nothing_behind


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    yield from scenario_cloud(Topology.small(isolation="vlan"))


@pytest.fixture(scope="module")
def vlan_net(cloud: Cloud) -> dict[str, Any]:
    """net2 (beside the shared checks' net1) with vm1 on hv1 and vm2 on hv2."""
    net = cloud.isolated_network("net2", GATEWAY)
    vms = [cloud.deploy("vm1", net["id"], "hv1"), cloud.deploy("vm2", net["id"], "hv2")]
    assert not cloud.failed_spawns()
    return {"network": net, "vms": vms}


def vlan_of(cloud: Cloud, net: dict[str, Any]) -> int:
    uri = cloud.api.listNetworks(id=net["id"], fetch_list=True)[0]["broadcasturi"]
    scheme, _, number = uri.partition("://")
    assert scheme == "vlan", uri
    return int(number)


def test_the_network_takes_a_transport_vlan(cloud: Cloud, vlan_net: dict[str, Any]) -> None:
    net = cloud.api.listNetworks(id=vlan_net["network"]["id"], fetch_list=True)[0]
    assert net["broadcastdomaintype"] == "Vlan"
    vlan = vlan_of(cloud, vlan_net["network"])
    assert vlan in VLAN_RANGE
    # The KVM agents' VLAN bridges, each cabled to the VLAN's segment of the switch.
    for host in ("hv1", "hv2"):
        assert cloud.fabric.ip(host, "-br", "link", "show", vlan_bridge_name(vlan))
    switch = cloud.kvm.vlan_switch
    assert switch is not None
    wait_until("hv1, hv2 and sg1 on the VLAN's segment of the switch", lambda: {
        port.split("@")[0] for port in cloud.fabric.ip(
            switch.node, "-br", "link", "show", "master", f"vlan{vlan}").split()
        if "@" in port} == {switch_port(node, vlan) for node in ("hv1", "hv2", "sg1")},
        timeout=10)


def test_no_evpn_for_vlan_segments(cloud: Cloud, vlan_net: dict[str, Any]) -> None:
    """The service renders a VLAN site's segments as VLAN bridges: no L2VNI, no VXLAN
    device, no L3VNI for the routing domain; so no EVPN route or VNI anywhere."""
    vlan = vlan_of(cloud, vlan_net["network"])
    artifacts = cloud.service.ok("GET", "/v1/devices/sg1/config?since=0")["artifacts"]
    links = json.loads(artifacts["softgate.json"]["content"])["links"]
    [domain] = links["domains"]
    assert domain["l3vni"] is None
    assert [(s["bridge"], s["vlan"], s["vni"], s["vxlan"]) for s in domain["segments"]] == \
        [(f"vxl{vlan}", vlan, None, None)]
    for device in ("sg1", "hv1", "hv2"):
        frr = cloud.service.ok("GET", f"/v1/devices/{device}/config?since=0")[
            "artifacts"]["frr.conf"]["content"]
        assert not re.search(r"^\s*vni ", frr, re.MULTILINE), device
        assert cloud.fabric.vtysh_json(device, "show evpn vni json") == {}, device
        assert cloud.fabric.ip(device, "-d", "link", "show", "type", "vxlan") == "", device
    assert cloud.fabric.vtysh_json("sg1", "show bgp l2vpn evpn json")["numPrefix"] == 0
    assert cloud.trunk is not None
    assert "vxlan" not in cloud.trunk.in_domain("sg1", domain["netns"], "ip", "-d", "link")


def test_a_new_network_is_cabled_anew(cloud: Cloud, vlan_net: dict[str, Any]) -> None:
    """The last VM gone and the network deleted, the KVM agents remove their VLAN bridges
    and sg1's agent the segment; a new network's VLAN is cabled to sg1 afresh."""
    api = cloud.api
    old_vlan = vlan_of(cloud, vlan_net["network"])
    for vm in vlan_net["vms"]:
        api.destroyVirtualMachine(id=vm["id"])
    api.deleteNetwork(id=vlan_net["network"]["id"])
    for host in ("hv1", "hv2"):
        assert vlan_bridge_name(old_vlan) not in cloud.fabric.ip(host, "-br", "link")
    net = cloud.isolated_network("net3", "10.120.0.1")
    vm = cloud.deploy("vm3", net["id"], "hv2")
    vlan = vlan_of(cloud, net)
    assert vlan in VLAN_RANGE
    assert cloud.lease(vm["id"])["new_routers"] == "10.120.0.1"
    assert cloud.trunk is not None and cloud.kvm.vlan_switch is not None
    switch = cloud.kvm.vlan_switch
    assert cloud.fabric.ip(switch.node, "-br", "link", "show", switch_port("sg1", vlan))
    if vlan != old_vlan:
        wait_until("the old VLAN's trunk port to go", lambda: switch_port(
            "sg1", old_vlan) not in cloud.fabric.ip(switch.node, "-br", "link"), timeout=10)
    assert trunk_port(vlan) in "".join(
        cloud.trunk.in_domain("sg1", netns, "ip", "-br", "link")
        for netns in cloud.trunk.domains("sg1"))
    assert not cloud.failed_spawns()
