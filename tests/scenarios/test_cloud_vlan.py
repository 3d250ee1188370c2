"""A VLAN hand-off zone driven through the CloudStack stand-in with the real `cs` client:
the guest physical network's isolation method is VLAN, `vxgate cloudstack register`
registers vxgate on it as on a VXLAN zone, and the service gives each network a
transport VLAN from 3000-4094 (`vlan://<id>`) instead of a VNI.

This kernel has no 802.1Q, so each transport VLAN is its own bridge in a switch node
(simulator/vlan_switch.py): the KVM agent cables each hypervisor's VLAN bridge to it, the
SoftGate's trunk cables sg1's `vxl<vlan>` segment. The checks are the isolated network's
(DHCP, VMs across hypervisors, source NAT, user data, a port forward from the internet),
plus: no EVPN for these segments anywhere. The rendered texts of a VLAN site are golden-
checked in tests/golden (softgate_vlan_handoff.conf, vlan_handoff.json); here the
running fabric is asked.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from simulator.cloud import Cloud, running_cloud
from simulator.evpn_fabric import INTERNET_HOST
from simulator.fabric import run, wait_until
from simulator.kvm import vlan_bridge_name
from simulator.topology import Topology
from simulator.traffic import FETCH, connect, server_in
from simulator.vlan_switch import switch_port, trunk_port
from tests.scenarios.conftest import require_fabric_prerequisites

USER_DATA = "#cloud-config\nhostname: web1\n"
GATEWAY = "10.110.0.1"
VLAN_RANGE = range(3000, 4094 + 1)


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    require_fabric_prerequisites()
    with running_cloud(topology=Topology.small(isolation="vlan")) as running:
        yield running
    assert not running.fabric.dir.exists()
    assert running.fabric.prefix not in run(["ip", "netns", "list"]).stdout


def create_network(cloud: Cloud, name: str, gateway: str) -> dict[str, Any]:
    answer: dict[str, Any] = cloud.api.createNetwork(
        name=name, displaytext=name, zoneid=cloud.zone(),
        networkofferingid=cloud.offering("vxgate-isolated-natted"), gateway=gateway,
        netmask="255.255.255.0")["network"]
    return answer


def deploy(cloud: Cloud, name: str, network: dict[str, Any], host: str,
           **extra: Any) -> dict[str, Any]:
    hosts = {h["name"]: h["id"] for h in cloud.api.listHosts(fetch_list=True)}
    answer: dict[str, Any] = cloud.api.deployVirtualMachine(
        zoneid=cloud.zone(), serviceofferingid="small", templateid="debian", name=name,
        networkids=network["id"], hostid=hosts[host], **extra)["virtualmachine"]
    return answer


@pytest.fixture(scope="module")
def vlan_net(cloud: Cloud) -> dict[str, Any]:
    """net1 with web1 on hv1 and web2 on hv2."""
    net = create_network(cloud, "net1", GATEWAY)
    user_data = base64.b64encode(USER_DATA.encode()).decode()
    vms = [deploy(cloud, "web1", net, "hv1", userdata=user_data),
           deploy(cloud, "web2", net, "hv2")]
    assert not cloud.failed_spawns()
    return {"network": net, "vms": vms}


def vlan_of(cloud: Cloud, net: dict[str, Any]) -> int:
    uri = cloud.api.listNetworks(id=net["id"], fetch_list=True)[0]["broadcasturi"]
    scheme, _, number = uri.partition("://")
    assert scheme == "vlan", uri
    return int(number)


def ping(cloud: Cloud, vm: str, address: str) -> bool:
    return bool(cloud.exec(vm, "ping", "-c1", "-W1", address).returncode == 0)


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


def test_vms_get_their_addresses_by_dhcp(cloud: Cloud, vlan_net: dict[str, Any]) -> None:
    for vm in vlan_net["vms"]:
        lease = cloud.lease(vm["id"])
        assert lease["new_ip_address"] == vm["nic"][0]["ipaddress"]
        assert lease["new_routers"] == GATEWAY
        assert lease["new_host_name"] == vm["name"]


def test_vms_on_two_hypervisors_reach_each_other(cloud: Cloud,
                                                   vlan_net: dict[str, Any]) -> None:
    web1, web2 = vlan_net["vms"]
    assert cloud.vm(web1["id"]).host != cloud.vm(web2["id"]).host
    cloud.lease(web1["id"])
    cloud.lease(web2["id"])
    wait_until("web1 to reach web2 across the VLAN", lambda: ping(
        cloud, web1["id"], web2["nic"][0]["ipaddress"]), timeout=10)


def test_source_nat_to_the_internet(cloud: Cloud, vlan_net: dict[str, Any]) -> None:
    web1 = vlan_net["vms"][0]
    cloud.lease(web1["id"])
    source_nat = cloud.api.listPublicIpAddresses(
        associatednetworkid=vlan_net["network"]["id"], issourcenat="true",
        fetch_list=True)[0]["ipaddress"]
    with server_in(cloud.fabric, "up1", 7001):
        wait_until("web1 to reach the internet through source NAT", lambda: connect(
            cloud.fabric, cloud.node(web1["id"]), INTERNET_HOST, 7001) == source_nat,
            timeout=10)


def test_user_data_and_password_are_served(cloud: Cloud, vlan_net: dict[str, Any]) -> None:
    web1 = vlan_net["vms"][0]
    cloud.lease(web1["id"])
    user_data = cloud.exec(web1["id"], "python3", "-c", FETCH,
                           f"http://{GATEWAY}/latest/user-data").stdout
    assert user_data == USER_DATA
    password = cloud.exec(web1["id"], "curl", "-s", "--max-time", "2", "-H",
                          "DomU_Request: send_my_password", f"http://{GATEWAY}:8080/").stdout
    assert password.strip() == web1["password"]


def test_a_port_forward_from_the_internet(cloud: Cloud, vlan_net: dict[str, Any]) -> None:
    api, net = cloud.api, vlan_net["network"]
    web2 = vlan_net["vms"][1]
    cloud.lease(web2["id"])
    forwarded = api.associateIpAddress(networkid=net["id"])["ipaddress"]
    with server_in(cloud.fabric, cloud.node(web2["id"]), 22, name="web2"):
        assert connect(cloud.fabric, "up1", forwarded["ipaddress"], 2222) == ""
        # openfirewall (the default) makes the port forward's ingress rule.
        api.createPortForwardingRule(ipaddressid=forwarded["id"], privateport=22,
                                     publicport=2222, protocol="tcp",
                                     virtualmachineid=web2["id"])
        wait_until("the port forward to carry traffic to web2", lambda: connect(
            cloud.fabric, "up1", forwarded["ipaddress"], 2222) == "web2", timeout=10)
    assert not cloud.failed_spawns()


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
    net = create_network(cloud, "net2", "10.120.0.1")
    vm = deploy(cloud, "web3", net, "hv2")
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
