"""Live migration through the CloudStack stand-in: migrateVirtualMachine moves a running
VM (its namespace, MAC and address) to the other hypervisor; QEMU's self-announce
(simulator/kvm.py) and EVPN's MAC mobility make it reachable there.

The outage is the longest gap in two 20 ms ping streams, one from a VM on hv1 (east-west)
and one from the internet host through the VM's static NAT address (north-south), across
a migration each way. The goal is 2 s (issue 7); this test fails only past twice that,
and `python -m bench.cloud --migrations N` prints the figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.cloud import MIGRATION_GOAL_S as GOAL_S
from bench.cloud import migration_gaps
from simulator.cloud import Cloud
from simulator.kvm import port_name
from tests.scenarios.conftest import scenario_cloud


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    yield from scenario_cloud()


@pytest.fixture(scope="module")
def vms(cloud: Cloud) -> dict[str, Any]:
    """pinger on hv1 and mover on hv2 in net1; mover behind a static NAT address open to
    ICMP."""
    api, zone = cloud.api, cloud.zone()
    hosts = {h["name"]: h["id"] for h in api.listHosts(fetch_list=True)}
    net = api.createNetwork(name="net1", displaytext="net1", zoneid=zone,
                            networkofferingid=cloud.offering("vxgate-isolated-natted"),
                            gateway="10.100.0.1", netmask="255.255.255.0")["network"]
    placed = {name: api.deployVirtualMachine(
        zoneid=zone, serviceofferingid="small", templateid="debian", name=name,
        networkids=net["id"], hostid=hosts[host])["virtualmachine"]
        for name, host in (("pinger", "hv1"), ("mover", "hv2"))}
    static = api.associateIpAddress(networkid=net["id"])["ipaddress"]
    api.enableStaticNat(ipaddressid=static["id"], virtualmachineid=placed["mover"]["id"])
    api.createFirewallRule(ipaddressid=static["id"], protocol="icmp", icmptype=-1,
                           icmpcode=-1, cidrlist="0.0.0.0/0")
    for vm in placed.values():
        cloud.lease(vm["id"])
    return {**placed, "hosts": hosts, "public": static["ipaddress"]}


def migrated(cloud: Cloud, vms: dict[str, Any], target: str) -> dict[str, float]:
    return migration_gaps(cloud, vms["pinger"], vms["mover"], vms["public"],
                          vms["hosts"][target])


def host_port_on(cloud: Cloud, vm: dict[str, Any]) -> str:
    """The hypervisor whose namespace holds the VM's NIC's host end (vnet<nic id>)."""
    port = port_name(cloud.vm(vm["id"]).nics[0])
    [host] = [hv for hv in ("hv1", "hv2") if port in cloud.fabric.ip(hv, "-br", "link")]
    return host


def nic_mac(cloud: Cloud, vm: dict[str, Any]) -> str:
    """eth0's MAC, as the guest sees it (`ip -br link`: name, state, MAC, flags)."""
    return str(cloud.exec(vm["id"], "ip", "-br", "link", "show", "eth0").stdout.split()[2])


def test_a_migrated_vm_keeps_its_address_and_mac(cloud: Cloud, vms: dict[str, Any]) -> None:
    mover = vms["mover"]
    before = nic_mac(cloud, mover)
    gaps = migrated(cloud, vms, "hv1")
    print(f"migration hv2 -> hv1: longest gaps {gaps}")
    assert host_port_on(cloud, mover) == "hv1"
    listed = cloud.api.listVirtualMachines(id=mover["id"], fetch_list=True)[0]
    assert listed["hostname"] == "hv1"
    assert nic_mac(cloud, mover) == before == mover["nic"][0]["macaddress"]
    assert mover["nic"][0]["ipaddress"] in cloud.exec(mover["id"], "ip", "-br", "addr").stdout
    assert all(gap <= 2 * GOAL_S for gap in gaps.values()), gaps


def test_migrating_back_across_the_fabric(cloud: Cloud, vms: dict[str, Any]) -> None:
    gaps = migrated(cloud, vms, "hv2")
    print(f"migration hv1 -> hv2: longest gaps {gaps}")
    assert host_port_on(cloud, vms["mover"]) == "hv2"
    assert cloud.api.listVirtualMachines(id=vms["mover"]["id"], fetch_list=True)[0][
        "hostname"] == "hv2"
    assert all(gap <= 2 * GOAL_S for gap in gaps.values()), gaps
    assert not cloud.failed_spawns()
