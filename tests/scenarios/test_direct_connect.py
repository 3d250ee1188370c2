"""Direct connect in the simulator: a bare-metal host behind VTEP leaf leaf2's port swp1,
VLAN 100, joins isolated network net1 by the network custom action `attach-vlan` and
leaves it by `detach-vlan`, both run through the CloudStack stand-in with the `cs` client.

Fabric: spine1 over leaf1 (hv1, sg1) and leaf2 (hv2, and the bare-metal host bm1); leaf2
is declared `vtep: true`, so its agent applies leaf.json. net1 has web1 on hv1 and web2
on hv2; net2 has other1 on hv1.

What "reaches the network's VMs, and nothing else" means here: the host joins net1's L2
segment and nothing more. It reaches net1's VMs (and, like them, net1's gateway; what
lies beyond the gateway is net1's egress policy, the same for the host as for a VM). It
does not reach net2's VMs, even with a default route via net1's gateway (each isolated
network is its own routing domain), nor the fabric's underlay (loopbacks of leaf2 and
the hypervisors): the port member is a bridge port only, with no address. Before the
attach and after the detach it reaches nothing at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from simulator import direct_connect
from simulator.cloud import Cloud
from simulator.direct_connect import BareMetal
from simulator.fabric import wait_until
from simulator.topology import Topology
from tests.scenarios.conftest import scenario_cloud

TOPOLOGY = Topology(spines=1, leaves=2, hypervisors=2, softgates=1, vtep_leaves=("leaf2",))
LEAF, PORT, VLAN = "leaf2", "swp1", 100
HOST = BareMetal(node="bm1", leaf=LEAF, port=PORT, vlan=VLAN, address="10.100.0.250/24",
                 gateway="10.100.0.1")
UNDERLAY = ("10.255.3.2", "10.255.1.1", "10.255.1.2")  # leaf2's, hv1's, hv2's loopbacks


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    yield from scenario_cloud(TOPOLOGY)


def _network(cloud: Cloud, name: str, gateway: str, vms: tuple[tuple[str, str], ...]
             ) -> dict[str, Any]:
    api = cloud.api
    net = api.createNetwork(name=name, displaytext=name, zoneid=cloud.zone(),
                            networkofferingid=cloud.offering("vxgate-isolated-natted"),
                            gateway=gateway, netmask="255.255.255.0")["network"]
    hosts = {h["name"]: h["id"] for h in api.listHosts(fetch_list=True)}
    made = [api.deployVirtualMachine(zoneid=cloud.zone(), serviceofferingid="small",
                                     templateid="debian", name=vm, networkids=net["id"],
                                     hostid=hosts[host])["virtualmachine"]
            for vm, host in vms]
    for vm in made:
        cloud.lease(vm["id"])
    return {"network": net, "vms": made}


@pytest.fixture(scope="module")
def world(cloud: Cloud) -> dict[str, Any]:
    net1 = _network(cloud, "net1", "10.100.0.1", (("web1", "hv1"), ("web2", "hv2")))
    net2 = _network(cloud, "net2", "10.200.0.1", (("other1", "hv1"),))
    direct_connect.plug(cloud.fabric, HOST)
    assert not cloud.failed_spawns()
    return {"net1": net1, "net2": net2}


def action_id(cloud: Cloud, name: str) -> str:
    """The action of the extension the isolated NATTED offering names (`vxgate`)."""
    extension = cloud.api.listExtensions(name="vxgate", fetch_list=True)[0]["id"]
    return str(cloud.api.listCustomActions(name=name, extensionid=extension,
                                           fetch_list=True)[0]["id"])


def run_action(cloud: Cloud, network: dict[str, Any], action: str,
               **params: object) -> dict[str, Any]:
    parameters = [{"key": key, "value": str(value)} for key, value in params.items()]
    answer = cloud.api.runNetworkCustomAction(networkid=network["id"],
                                              actionid=action_id(cloud, action),
                                              parameters=parameters)
    return dict(answer.get("customactionresult", answer))


def attach(cloud: Cloud, network: dict[str, Any], **overrides: object) -> dict[str, Any]:
    params: dict[str, object] = {"device": LEAF, "port": PORT, "vlan": VLAN, **overrides}
    return run_action(cloud, network, "attach-vlan", **params)


def detach(cloud: Cloud, network: dict[str, Any]) -> dict[str, Any]:
    return run_action(cloud, network, "detach-vlan", device=LEAF, port=PORT, vlan=VLAN)


def reaches(cloud: Cloud, address: str) -> bool:
    return direct_connect.ping(cloud.fabric, HOST, address)


def addresses(network: dict[str, Any]) -> list[str]:
    return [vm["nic"][0]["ipaddress"] for vm in network["vms"]]


def service_id(cloud: Cloud, network: dict[str, Any]) -> str:
    """The network's id in the service: CloudStack's database id, as the payloads say."""
    found = cloud.sim.db.networks.by_uuid(network["id"])
    assert found is not None
    return str(found.db_id)


def vni_of(cloud: Cloud, network: dict[str, Any]) -> int:
    recorded = cloud.service.ok("GET", f"/v1/networks/{service_id(cloud, network['network'])}")
    return int(recorded["segment"]["id"])


def leaf_links(cloud: Cloud) -> str:
    return cloud.fabric.ip(LEAF, "-br", "link", "show")


def test_attach_lets_the_host_reach_the_networks_vms(cloud: Cloud,
                                                      world: dict[str, Any]) -> None:
    net1 = world["net1"]
    assert not any(reaches(cloud, address) for address in addresses(net1))
    started = time.monotonic()
    result = attach(cloud, net1["network"])
    answered = time.monotonic() - started
    assert result["success"], result
    assert result["result"]["message"] == (
        f"attached: VLAN {VLAN} on {LEAF} port {PORT} to network "
        f"{service_id(cloud, net1['network'])}")
    for address in addresses(net1):
        wait_until(f"bm1 to reach {address}", lambda a=address: reaches(cloud, a),
                   timeout=30)
    first_reply = time.monotonic() - started
    print(f"\nattach-vlan: the action answered in {answered:.2f} s; bm1 reached both VMs "
          f"of net1 {first_reply:.2f} s after the action started")
    vni = vni_of(cloud, net1)
    assert f"vni {vni}" in cloud.fabric.vtysh(LEAF, "show running-config")
    assert f"dcvx{vni}" in leaf_links(cloud)


def test_the_host_reaches_nothing_else(cloud: Cloud, world: dict[str, Any]) -> None:
    net1, net2 = world["net1"], world["net2"]
    wait_until("bm1 on net1", lambda: reaches(cloud, addresses(net1)[0]), timeout=30)
    for address in [*addresses(net2), "10.200.0.1", *UNDERLAY]:
        assert not reaches(cloud, address), address
    # Only net1's segment is on the leaf: net2's VNI is not there at all.
    assert f"dcvx{vni_of(cloud, net2)}" not in leaf_links(cloud)
    web1 = cloud.node(net1["vms"][0]["id"])
    internet = cloud.topology.internet_host
    vm_reaches = cloud.fabric.exec(web1, "ping", "-c1", "-W1", internet,
                                   check=False).returncode == 0
    host_reaches = reaches(cloud, internet)
    print(f"\nthe internet ({internet}) from bm1: {host_reaches}, from web1: {vm_reaches}")
    assert host_reaches == vm_reaches  # as a VM of net1, no more


def test_attach_again_changes_nothing(cloud: Cloud, world: dict[str, Any]) -> None:
    before = cloud.service.ok("GET", f"/v1/devices/{LEAF}/config")["generation"]
    result = attach(cloud, world["net1"]["network"])
    assert result["success"] and result["result"]["message"].startswith("already attached")
    assert cloud.service.ok("GET", f"/v1/devices/{LEAF}/config")["generation"] == before


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"device": "leaf1"}, "device leaf1 is not a VTEP leaf"),
    ({"device": "hv1"}, "device hv1 is not a VTEP leaf"),
    ({"port": "uplink"}, "port uplink is a fabric port of leaf2"),
    ({"vlan": 4095}, "vlan: "),
    ({"vlan": "x"}, "vlan: expected a whole number"),
])
def test_bad_parameters_are_refused_in_one_line(cloud: Cloud, world: dict[str, Any],
                                                overrides: dict[str, object],
                                                expected: str) -> None:
    before = cloud.service.ok("GET", f"/v1/devices/{LEAF}/direct-connects")
    result = attach(cloud, world["net2"]["network"], **overrides)
    message = result["result"]["message"]
    assert not result["success"] and expected in message and "\n" not in message, message
    assert cloud.service.ok("GET", f"/v1/devices/{LEAF}/direct-connects") == before


def test_a_vlan_in_use_by_another_network_is_refused(cloud: Cloud,
                                                     world: dict[str, Any]) -> None:
    result = attach(cloud, world["net2"]["network"])
    assert not result["success"]
    assert "is attached to network" in result["result"]["message"]
    result = detach(cloud, world["net2"]["network"])
    assert not result["success"]
    assert reaches(cloud, addresses(world["net1"])[0])


def test_detach_cuts_the_host_off_and_leaves_no_trace(cloud: Cloud,
                                                      world: dict[str, Any]) -> None:
    net1 = world["net1"]
    vni = vni_of(cloud, net1)
    result = detach(cloud, net1["network"])
    assert result["success"] and result["result"]["message"].startswith("detached")
    for address in addresses(net1):
        wait_until(f"bm1 to lose {address}", lambda a=address: not reaches(cloud, a),
                   timeout=30)
    wait_until("leaf2's FRR to drop the VNI", lambda: f"vni {vni}" not in
               cloud.fabric.vtysh(LEAF, "show running-config"), timeout=30)
    assert "direct-connect" not in cloud.fabric.vtysh(LEAF, "show running-config")
    links = leaf_links(cloud)
    assert f"dcvx{vni}" not in links and f"dcbr{vni}" not in links, links
    assert "master" not in cloud.fabric.ip(LEAF, "link", "show", HOST.leaf_member)
    assert cloud.service.ok("GET", f"/v1/devices/{LEAF}/direct-connects") == []
    again = detach(cloud, net1["network"])
    assert again["success"] and again["result"]["message"].startswith("was not attached")


def test_replayed_attach_and_detach_converge(cloud: Cloud, world: dict[str, Any]) -> None:
    net1 = world["net1"]["network"]
    for _ in range(2):
        assert attach(cloud, net1)["success"]
    wait_until("bm1 back on net1", lambda: reaches(cloud, addresses(world["net1"])[1]),
               timeout=30)
    for _ in range(2):
        assert detach(cloud, net1)["success"]
    wait_until("bm1 off net1", lambda: not reaches(cloud, addresses(world["net1"])[1]),
               timeout=30)
    assert "dcbr" not in leaf_links(cloud)


def test_deleting_the_network_removes_its_attachments(cloud: Cloud,
                                                      world: dict[str, Any]) -> None:
    net2 = world["net2"]
    assert attach(cloud, net2["network"], port="swp2", vlan=200)["success"]
    assert [p["network_id"] for p in
            cloud.service.ok("GET", f"/v1/devices/{LEAF}/direct-connects")] == \
        [service_id(cloud, net2["network"])]
    for vm in net2["vms"]:
        cloud.api.destroyVirtualMachine(id=vm["id"], expunge="true")
    cloud.api.deleteNetwork(id=net2["network"]["id"])
    assert cloud.service.ok("GET", f"/v1/devices/{LEAF}/direct-connects") == []
    wait_until("leaf2's kernel to drop net2's VNI", lambda: "dcbr" not in leaf_links(cloud),
               timeout=30)
    assert not cloud.failed_spawns() or all(
        "custom-action" in failed for failed in cloud.failed_spawns())
