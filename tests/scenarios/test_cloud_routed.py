"""A ROUTED isolated network driven through the CloudStack stand-in with the real `cs`
client: the offering `vxgate cloudstack register` made (vxgate-isolated-routed), a guest
CIDR from RFC 2544's 198.18.0.0/15 so the simulator can route it, VMs on hv1 and hv2.

What CloudStack promises for ROUTED mode: no NAT at all; the guest CIDR is announced
upstream (here sg1 to up1 over BGP), so the internet reaches the VMs by their own
addresses; ingress is closed until a routing firewall rule (createRoutingFirewallRule,
CloudStack 4.20+) opens it. The network's mode reaches the service through the
registration of the `vxgate-routed` extension (NEE's payload carries none).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cs
import pytest

from simulator.cloud import Cloud
from simulator.evpn_fabric import INTERNET_HOST
from simulator.fabric import FabricError, wait_until
from simulator.traffic import connect, server_in
from tests.scenarios.conftest import scenario_cloud

GATEWAY, NETMASK, CIDR = "198.18.20.1", "255.255.255.0", "198.18.20.0/24"  # RFC 2544
SERVICE_PORT = 8080
NO_ROUTE = f"up1 has no BGP route to {CIDR}"



@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    yield from scenario_cloud()


@pytest.fixture(scope="module")
def routed(cloud: Cloud) -> dict[str, Any]:
    """routed1 with app1 on hv1 and app2 on hv2."""
    api = cloud.api
    net = api.createNetwork(name="routed1", displaytext="routed1", zoneid=cloud.zone(),
                            networkofferingid=cloud.offering("vxgate-isolated-routed"),
                            gateway=GATEWAY, netmask=NETMASK)["network"]
    hosts = {h["name"]: h["id"] for h in api.listHosts(fetch_list=True)}
    vms = [api.deployVirtualMachine(
        zoneid=cloud.zone(), serviceofferingid="small", templateid="debian", name=name,
        networkids=net["id"], hostid=hosts[host])["virtualmachine"]
        for name, host in (("app1", "hv1"), ("app2", "hv2"))]
    assert not cloud.failed_spawns()
    return {"network": net, "vms": vms, "announced": None}


def address(vm: dict[str, Any]) -> str:
    return str(vm["nic"][0]["ipaddress"])


def up1_address(cloud: Cloud) -> str:
    """up1's own address toward sg1: what a VM sees when up1 connects straight to it."""
    return cloud.topology.upstream_address(cloud.topology.softgate_names[0])


def announced_to_up1(cloud: Cloud, routed: dict[str, Any]) -> bool:
    """Whether up1 learns the guest CIDR from sg1 (waited for once: every test that needs
    the route to the VMs asks, and a missing route should not cost each its timeout)."""
    if routed["announced"] is None:
        try:
            wait_until(f"up1 to learn {CIDR} from sg1", lambda: CIDR in cloud.fabric.vtysh_json(
                "up1", "show ip bgp json").get("routes", {}), timeout=10)
            routed["announced"] = True
        except FabricError:
            routed["announced"] = False
    return bool(routed["announced"])


def test_vms_get_their_addresses_by_dhcp(cloud: Cloud, routed: dict[str, Any]) -> None:
    for vm in routed["vms"]:
        lease = cloud.lease(vm["id"])
        assert lease["new_ip_address"] == address(vm)
        assert lease["new_network_number"] == CIDR.split("/")[0]
        assert lease["new_routers"] == GATEWAY


def test_vms_on_two_hypervisors_reach_each_other(cloud: Cloud,
                                                   routed: dict[str, Any]) -> None:
    app1, app2 = routed["vms"]
    assert cloud.vm(app1["id"]).host != cloud.vm(app2["id"]).host
    cloud.lease(app1["id"])
    cloud.lease(app2["id"])
    wait_until("app1 to reach app2 across the fabric", lambda: cloud.exec(
        app1["id"], "ping", "-c1", "-W1", address(app2)).returncode == 0, timeout=10)


def test_a_routed_network_has_no_public_ip_and_no_nat(cloud: Cloud,
                                                      routed: dict[str, Any]) -> None:
    """The offering has no SourceNat: CloudStack allocates no address and sends no
    assign-ip; the network is implemented with the gateway as its extension IP."""
    net = routed["network"]
    assert cloud.api.listPublicIpAddresses(associatednetworkid=net["id"],
                                           fetch_list=True) == []
    assert "assign-ip" not in cloud.spawned()
    assert not any(spawn.command.endswith("nat") or "port-forward" in spawn.command
                   for spawn in cloud.sim.spawns())


def test_the_service_records_the_network_routed(cloud: Cloud,
                                                routed: dict[str, Any]) -> None:
    network = cloud.sim.db.networks.by_uuid(routed["network"]["id"])
    assert network is not None
    recorded = cloud.service.ok("GET", f"/v1/networks/{network.db_id}")
    assert (recorded["cidr"], recorded["mode"]) == (CIDR, "routed")


def test_up1_learns_the_guest_cidr_from_sg1(cloud: Cloud, routed: dict[str, Any]) -> None:
    assert announced_to_up1(cloud, routed), NO_ROUTE
    paths = cloud.fabric.vtysh_json("up1", "show ip bgp json")["routes"][CIDR]
    sg1_wan = next(link.address.split("/")[0] for link in cloud.topology.wan_links())
    assert {hop["ip"] for path in paths for hop in path["nexthops"]} == {sg1_wan}


def test_a_vm_reaches_the_internet_with_its_own_address(cloud: Cloud,
                                                        routed: dict[str, Any]) -> None:
    app1 = routed["vms"][0]
    cloud.lease(app1["id"])
    assert announced_to_up1(cloud, routed), NO_ROUTE  # else up1 has no way back
    with server_in(cloud.fabric, "up1", 7001):
        wait_until("app1 to reach the internet, not translated", lambda: connect(
            cloud.fabric, cloud.node(app1["id"]), INTERNET_HOST, 7001) == address(app1),
            timeout=10)


def test_a_routing_firewall_rule_is_applied(cloud: Cloud, routed: dict[str, Any]) -> None:
    """createRoutingFirewallRule: CloudStack revokes the rule and fails the call when the
    provider's apply-fw-rules fails."""
    api, net = cloud.api, routed["network"]
    try:
        rule = api.createRoutingFirewallRule(
            networkid=net["id"], protocol="tcp", startport=SERVICE_PORT,
            endport=SERVICE_PORT, destcidrlist=f"{address(routed['vms'][0])}/32")
    except cs.CloudStackApiException as error:
        pytest.fail(f"{error}; the provider said: {cloud.failed_spawns()[-1:]}")
    api.deleteRoutingFirewallRule(id=rule["firewallrule"]["id"])
    assert api.listRoutingFirewallRules(networkid=net["id"], fetch_list=True) == []


def test_ingress_is_closed_until_a_routing_firewall_rule_opens_it(
        cloud: Cloud, routed: dict[str, Any]) -> None:
    api, net = cloud.api, routed["network"]
    app1, app2 = routed["vms"]
    cloud.lease(app1["id"])
    # Closed only means something once up1 has a route to the VMs.
    assert announced_to_up1(cloud, routed), NO_ROUTE
    with server_in(cloud.fabric, cloud.node(app1["id"]), SERVICE_PORT), \
            server_in(cloud.fabric, cloud.node(app2["id"]), SERVICE_PORT):
        assert connect(cloud.fabric, "up1", address(app1), SERVICE_PORT) == ""
        rule = api.createRoutingFirewallRule(
            networkid=net["id"], protocol="tcp", startport=SERVICE_PORT,
            endport=SERVICE_PORT, cidrlist="198.51.100.0/24",
            destcidrlist=f"{address(app1)}/32")["firewallrule"]
        # Straight to the guest address, and the VM sees up1's own address: no NAT.
        wait_until("the routing firewall rule to open app1", lambda: connect(
            cloud.fabric, "up1", address(app1), SERVICE_PORT) == up1_address(cloud),
            timeout=10)
        assert connect(cloud.fabric, "up1", address(app2), SERVICE_PORT) == ""
        api.deleteRoutingFirewallRule(id=rule["id"])
        wait_until("ingress to close again", lambda: connect(
            cloud.fabric, "up1", address(app1), SERVICE_PORT) == "", timeout=10)
    assert not cloud.failed_spawns()
