"""VPCs driven through the CloudStack stand-in with the real `cs` client: every change is a
CloudStack API call, every packet crosses the real fabric.

vpc1 (10.1.0.0/16) has two tiers with a VM each, on different hypervisors; vpc2 reuses
the same CIDRs, down to a VM's private address. The tests prove what a tenant sees: DHCP
leases, routing between tiers, network ACLs, the VPC's source NAT, isolation between the
VPCs, a source NAT change, a restart with cleanup, and a delete that leaves nothing on the
SoftGate. Each test waits for traffic (or for sg1's state), never for the agent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from simulator import leftovers
from simulator.cloud import Cloud
from simulator.evpn_fabric import INTERNET_HOST
from simulator.fabric import FabricError, run, wait_until
from simulator.traffic import connect, server_in
from tests.scenarios.conftest import scenario_cloud

# Generous: the machine has two cores and other simulator runs may share them.
TRAFFIC_TIMEOUT_S = 20.0
SOFTGATE = "sg1"
VPC_CIDR = "10.1.0.0/16"


@dataclass
class Tenant:
    """A VPC as a test built it: its ACL list (allow all, both ways), tiers and VMs."""

    vpc: dict[str, Any]
    acl: dict[str, Any]
    tiers: dict[str, dict[str, Any]]
    vms: dict[str, dict[str, Any]]

    def ip(self, vm: str) -> str:
        return str(self.vms[vm]["nic"][0]["ipaddress"])


@dataclass(frozen=True)
class Footprint:
    """What a VPC had on sg1 and in the service, noted before it was deleted."""

    service_vpc_id: str
    service_network_ids: list[str]
    l3vni: int
    l2vnis: list[int]
    namespace: str
    namespace_inode: int
    public_ips: list[str]


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    yield from scenario_cloud()


@pytest.fixture(scope="module")
def vpc1(cloud: Cloud) -> Tenant:
    """tier1 10.1.1.0/24 with app1 on hv1, tier2 10.1.2.0/24 with db1 on hv2."""
    tenant = create_vpc(cloud, "vpc1", {"tier1": "10.1.1.1", "tier2": "10.1.2.1"})
    deploy(cloud, tenant, "app1", "tier1", "hv1")
    deploy(cloud, tenant, "db1", "tier2", "hv2")
    assert not cloud.failed_spawns()
    return tenant


@pytest.fixture(scope="module")
def vpc2(cloud: Cloud, vpc1: Tenant) -> Tenant:
    """vpc1's CIDRs again: tier1 10.1.1.0/24 with web1, on app1's host and address."""
    tenant = create_vpc(cloud, "vpc2", {"tier1": "10.1.1.1"})
    deploy(cloud, tenant, "web1", "tier1", "hv1", address=vpc1.ip("app1"))
    assert not cloud.failed_spawns()
    return tenant


@pytest.fixture(scope="module")
def deleted_vpc2(cloud: Cloud, vpc2: Tenant) -> Footprint:
    """vpc2 deleted in the order CloudStack requires: VMs expunged, tiers, then the VPC;
    once it was up (a lease), so that it has something on sg1 to leave behind."""
    lease_of(cloud, vpc2.vms["web1"])
    footprint = footprint_of(cloud, vpc2)
    api = cloud.api
    for vm in vpc2.vms.values():
        api.destroyVirtualMachine(id=vm["id"], expunge="true")
    for tier in vpc2.tiers.values():
        api.deleteNetwork(id=tier["id"])
    api.deleteVPC(id=vpc2.vpc["id"])
    assert not cloud.failed_spawns()
    return footprint


# --- one VPC -------------------------------------------------------------------------


def test_tier_vms_get_their_addresses_by_dhcp(cloud: Cloud, vpc1: Tenant) -> None:
    for name, tier in (("app1", "tier1"), ("db1", "tier2")):
        lease = lease_of(cloud, vpc1.vms[name])
        assert lease["new_ip_address"] == vpc1.ip(name)
        assert lease["new_routers"] == vpc1.tiers[tier]["gateway"]
        assert lease["new_subnet_mask"] == "255.255.255.0"
        assert lease["new_host_name"] == name


def test_tiers_on_two_hypervisors_reach_each_other(cloud: Cloud, vpc1: Tenant) -> None:
    app1, db1 = vpc1.vms["app1"], vpc1.vms["db1"]
    assert (host_of(cloud, app1), host_of(cloud, db1)) == ("hv1", "hv2")
    lease_of(cloud, app1)
    lease_of(cloud, db1)
    waited(cloud, "app1 (tier1, hv1) to ping db1 (tier2, hv2)",
           lambda: ping(cloud, app1, vpc1.ip("db1")))
    waited(cloud, "db1 (tier2, hv2) to ping app1 (tier1, hv1)",
           lambda: ping(cloud, db1, vpc1.ip("app1")))


def test_acl_deny_stops_the_ping_until_it_is_deleted(cloud: Cloud, vpc1: Tenant) -> None:
    api, app1, db1 = cloud.api, vpc1.vms["app1"], vpc1.vms["db1"]
    waited(cloud, "app1 to ping db1", lambda: ping(cloud, app1, vpc1.ip("db1")))
    # Numbered before the list's allow-all (#10): ACL items match in number order.
    deny = api.createNetworkACL(aclid=vpc1.acl["id"], protocol="icmp",
                                traffictype="ingress", action="deny", number=5,
                                cidrlist="0.0.0.0/0")["networkacl"]
    waited(cloud, "the ACL deny to stop app1's ping to db1",
           lambda: not ping(cloud, app1, vpc1.ip("db1"), count=3))
    with server_in(cloud.fabric, cloud.node(db1["id"]), 7101):
        # Only ICMP is denied: TCP between the tiers still flows, unNATed.
        waited(cloud, "app1 to reach db1 by TCP while ICMP is denied", lambda: connect(
            cloud.fabric, cloud.node(app1["id"]), vpc1.ip("db1"), 7101) == vpc1.ip("app1"))
    api.deleteNetworkACL(id=deny["id"])
    waited(cloud, "app1's ping to db1 to come back without the deny",
           lambda: ping(cloud, app1, vpc1.ip("db1")))
    assert not cloud.failed_spawns()


def test_vpc_source_nat_to_the_internet(cloud: Cloud, vpc1: Tenant) -> None:
    source_nat = source_nat_of(cloud, vpc1)
    assert source_nat == vpc1.vpc["publicip"]
    with server_in(cloud.fabric, "up1", 7102):
        for vm in vpc1.vms.values():
            lease_of(cloud, vm)
            waited(cloud, f"{vm['name']} to reach the internet as {source_nat}",
                   partial(seen_as, cloud, vm, 7102, source_nat))


# --- two VPCs with the same CIDRs ----------------------------------------------------


def test_second_vpc_reuses_the_cidrs_and_the_address(cloud: Cloud, vpc1: Tenant,
                                                     vpc2: Tenant) -> None:
    assert vpc2.vpc["cidr"] == vpc1.vpc["cidr"] == VPC_CIDR
    lease = lease_of(cloud, vpc2.vms["web1"])
    assert lease["new_ip_address"] == vpc2.ip("web1") == vpc1.ip("app1")
    assert lease["new_routers"] == "10.1.1.1"
    assert host_of(cloud, vpc2.vms["web1"]) == host_of(cloud, vpc1.vms["app1"]) == "hv1"
    assert service_vpc(cloud, vpc2)["l3vni"] != service_vpc(cloud, vpc1)["l3vni"]


def test_second_vpc_stays_isolated(cloud: Cloud, vpc1: Tenant, vpc2: Tenant) -> None:
    app1, db1, web1 = vpc1.vms["app1"], vpc1.vms["db1"], vpc2.vms["web1"]
    for vm in (app1, db1, web1):
        lease_of(cloud, vm)
    waited(cloud, "app1 to ping its gateway", lambda: ping(cloud, app1, "10.1.1.1"))
    waited(cloud, "web1 (vpc2) to ping its gateway", lambda: ping(cloud, web1, "10.1.1.1"))
    fabric = cloud.fabric
    with server_in(fabric, cloud.node(app1["id"]), 7103, "app1"), \
            server_in(fabric, cloud.node(web1["id"]), 7103, "web1"), \
            server_in(fabric, cloud.node(db1["id"]), 7103, "db1"):
        # app1 and web1 share 10.1.1.2: from db1 that address is vpc1's app1 only.
        waited(cloud, "db1 to reach 10.1.1.2 in its own VPC", lambda: connect(
            fabric, cloud.node(db1["id"]), vpc1.ip("app1"), 7103) == "app1")
        assert connect(fabric, cloud.node(web1["id"]), vpc1.ip("db1"), 7103) == ""
    assert not ping(cloud, web1, vpc1.ip("db1"), count=3)


def test_each_vpc_reaches_the_internet_as_its_own_source_nat(
        cloud: Cloud, vpc1: Tenant, vpc2: Tenant) -> None:
    nat1, nat2 = source_nat_of(cloud, vpc1), source_nat_of(cloud, vpc2)
    assert nat1 != nat2
    with server_in(cloud.fabric, "up1", 7104):
        for tenant, vm, source_nat in ((vpc1, "app1", nat1), (vpc2, "web1", nat2)):
            lease_of(cloud, tenant.vms[vm])
            waited(cloud, f"{vm} ({tenant.vpc['name']}) to reach the internet as "
                          f"{source_nat}", partial(seen_as, cloud, tenant.vms[vm], 7104,
                                                   source_nat))


def test_update_vpc_moves_the_source_nat_address(cloud: Cloud, vpc2: Tenant) -> None:
    api, web1 = cloud.api, vpc2.vms["web1"]
    old = source_nat_of(cloud, vpc2)
    new = api.associateIpAddress(vpcid=vpc2.vpc["id"])["ipaddress"]["ipaddress"]
    answer = api.updateVPC(id=vpc2.vpc["id"], sourcenatipaddress=new)["vpc"]
    assert answer["publicip"] == source_nat_of(cloud, vpc2) == new != old
    lease_of(cloud, web1)
    with server_in(cloud.fabric, "up1", 7105):
        waited(cloud, f"web1 to reach the internet as the new source NAT {new}",
               lambda: seen_from_internet(cloud, web1, 7105) == new)
    assert not cloud.failed_spawns()


def test_restart_vpc_with_cleanup_converges(cloud: Cloud, vpc1: Tenant) -> None:
    app1, db1 = vpc1.vms["app1"], vpc1.vms["db1"]
    before = service_vpc(cloud, vpc1), service_segments(cloud, vpc1)
    cloud.api.restartVPC(id=vpc1.vpc["id"], cleanup="true")
    assert not cloud.failed_spawns()
    after = service_vpc(cloud, vpc1), service_segments(cloud, vpc1)
    # The same numbers come back: the hypervisors' VXLAN devices stay valid.
    assert (after[0]["l3vni"], after[1]) == (before[0]["l3vni"], before[1])
    assert after[0]["state"] == "enabled"
    waited(cloud, "app1 to ping db1 after the restart",
           lambda: ping(cloud, app1, vpc1.ip("db1")))
    source_nat = source_nat_of(cloud, vpc1)
    with server_in(cloud.fabric, "up1", 7106):
        waited(cloud, f"db1 to reach the internet as {source_nat} after the restart",
               lambda: seen_from_internet(cloud, db1, 7106) == source_nat)


# --- deleting a VPC ------------------------------------------------------------------


def test_deleted_vpc_leaves_no_dhcp_behind(cloud: Cloud, deleted_vpc2: Footprint) -> None:
    gone = deleted_vpc2
    waited(cloud, "vpc2's dnsmasq directories (config, leases) to go", lambda: not (
        set(gone.service_network_ids) & leftovers.dnsmasq_directories(cloud.fabric)))
    waited(cloud, "no process to hold vpc2's routing-domain namespace",
           lambda: not processes_in_netns(gone.namespace_inode))
    assert not [line for line in command_lines() if any(
        f"/dnsmasq/{network}/" in line for network in gone.service_network_ids)]


def test_deleted_vpc_leaves_nothing_on_the_softgate_or_in_the_service(
        cloud: Cloud, deleted_vpc2: Footprint) -> None:
    gone = deleted_vpc2
    waited(cloud, f"the service to forget vpc2 (GET /v1/vpcs/{gone.service_vpc_id} 404)",
           lambda: cloud.service.call("GET", f"/v1/vpcs/{gone.service_vpc_id}")[0] == 404)
    assert cloud.service.ok("GET", f"/v1/networks?vpc_id={gone.service_vpc_id}") == []
    waited(cloud, f"sg1 to delete {gone.namespace}",
           lambda: gone.namespace not in leftovers.softgate_namespaces(cloud.fabric))
    waited(cloud, f"sg1's FRR to drop vrf {gone.namespace} and VNIs "
                  f"{[gone.l3vni, *gone.l2vnis]}", lambda: not leftovers_in_frr(cloud, gone))
    assert not leftovers_in_softgate_nft(cloud, gone)


def test_the_other_vpc_keeps_working_after_the_delete(cloud: Cloud, vpc1: Tenant,
                                                      deleted_vpc2: Footprint) -> None:
    assert service_vpc(cloud, vpc1)["l3vni"] != deleted_vpc2.l3vni
    app1 = vpc1.vms["app1"]
    waited(cloud, "app1 to ping db1 after vpc2's delete",
           lambda: ping(cloud, app1, vpc1.ip("db1")))
    source_nat = source_nat_of(cloud, vpc1)
    with server_in(cloud.fabric, "up1", 7107):
        waited(cloud, f"app1 to reach the internet as {source_nat} after vpc2's delete",
               lambda: seen_from_internet(cloud, app1, 7107) == source_nat)
    assert not cloud.failed_spawns()


# --- building tenants through the API ------------------------------------------------


def create_vpc(cloud: Cloud, name: str, gateways: dict[str, str]) -> Tenant:
    """A VPC on VPC_CIDR with an allow-all ACL list and a /24 tier per gateway."""
    api, zone = cloud.api, cloud.zone()
    vpc = api.createVPC(name=name, displaytext=name, cidr=VPC_CIDR, zoneid=zone,
                        vpcofferingid=cloud.offering("vxgate-vpc"))["vpc"]
    acl = api.createNetworkACLList(name=f"{name}-open", description="allow all",
                                   vpcid=vpc["id"])["networkacllist"]
    for number, traffic in ((10, "ingress"), (20, "egress")):
        api.createNetworkACL(aclid=acl["id"], protocol="all", traffictype=traffic,
                             action="allow", cidrlist="0.0.0.0/0", number=number)
    tiers = {tier: api.createNetwork(
        name=f"{name}-{tier}", displaytext=tier, zoneid=zone, vpcid=vpc["id"],
        networkofferingid=cloud.offering("vxgate-vpc-tier"), gateway=gateway,
        netmask="255.255.255.0", aclid=acl["id"])["network"]
        for tier, gateway in gateways.items()}
    return Tenant(vpc, acl, tiers, {})


def deploy(cloud: Cloud, tenant: Tenant, name: str, tier: str, host: str,
           address: str = "") -> None:
    extra = {"ipaddress": address} if address else {}
    tenant.vms[name] = cloud.api.deployVirtualMachine(
        zoneid=cloud.zone(), serviceofferingid="small", templateid="debian", name=name,
        networkids=tenant.tiers[tier]["id"], hostid=host_id(cloud, host),
        **extra)["virtualmachine"]


def host_id(cloud: Cloud, name: str) -> str:
    return next(str(host["id"]) for host in cloud.api.listHosts(fetch_list=True)
                if host["name"] == name)


def host_of(cloud: Cloud, vm: dict[str, Any]) -> str:
    return str(cloud.api.listVirtualMachines(id=vm["id"], fetch_list=True)[0]["hostname"])


def source_nat_of(cloud: Cloud, tenant: Tenant) -> str:
    listed = cloud.api.listPublicIpAddresses(vpcid=tenant.vpc["id"], issourcenat="true",
                                             fetch_list=True)
    # The stand-in ignores the issourcenat filter: each answer says what it is.
    found = [ip for ip in listed if ip["issourcenat"]]
    assert len(found) == 1, listed
    return str(found[0]["ipaddress"])


# --- traffic -------------------------------------------------------------------------


def lease_of(cloud: Cloud, vm: dict[str, Any]) -> dict[str, str]:
    try:
        return cloud.lease(vm["id"], timeout=TRAFFIC_TIMEOUT_S)
    except FabricError as error:
        raise AssertionError(f"{error}\n{softgate_diagnostics(cloud)}") from None


def ping(cloud: Cloud, vm: dict[str, Any], address: str, count: int = 1) -> bool:
    """True if any of `count` pings is answered."""
    done = cloud.exec(vm["id"], "ping", "-c", str(count), "-i", "0.2", "-W", "1", address)
    return bool(done.returncode == 0)


def seen_from_internet(cloud: Cloud, vm: dict[str, Any], port: int) -> str:
    """The address the internet host's server at `port` sees the VM connect from."""
    return connect(cloud.fabric, cloud.node(vm["id"]), INTERNET_HOST, port)


def seen_as(cloud: Cloud, vm: dict[str, Any], port: int, address: str) -> bool:
    return seen_from_internet(cloud, vm, port) == address


def waited(cloud: Cloud, what: str, condition: Callable[[], bool]) -> None:
    """wait_until, failing with sg1's EVPN and routing state (zebra can miss a new
    network's devices: that evidence tells it from a tenant-level fault)."""
    try:
        wait_until(what, condition, timeout=TRAFFIC_TIMEOUT_S)
    except FabricError as error:
        raise AssertionError(f"{error}\n{softgate_diagnostics(cloud)}") from None


def softgate_diagnostics(cloud: Cloud) -> str:
    fabric = cloud.fabric
    return (f"--- {SOFTGATE}: show evpn vni\n{fabric.vtysh(SOFTGATE, 'show evpn vni')}"
            f"--- {SOFTGATE}: show ip route vrf all\n"
            f"{fabric.vtysh(SOFTGATE, 'show ip route vrf all')}")


# --- what a VPC leaves on sg1 and in the service -------------------------------------


def service_vpc(cloud: Cloud, tenant: Tenant) -> dict[str, Any]:
    answer: dict[str, Any] = cloud.service.ok(
        "GET", f"/v1/vpcs/{service_vpc_id(cloud, tenant)}")
    return answer


def service_segments(cloud: Cloud, tenant: Tenant) -> dict[str, Any]:
    """The service's tiers of the VPC: network id -> segment."""
    networks = cloud.service.ok("GET", f"/v1/networks?vpc_id={service_vpc_id(cloud, tenant)}")
    return {str(network["id"]): network["segment"] for network in networks}


def service_vpc_id(cloud: Cloud, tenant: Tenant) -> str:
    """The service knows a VPC by CloudStack's internal id, which the API never shows."""
    vpc = cloud.sim.db.vpcs.by_uuid(tenant.vpc["id"])
    assert vpc is not None
    return str(vpc.db_id)


def footprint_of(cloud: Cloud, tenant: Tenant) -> Footprint:
    vpc_id = service_vpc_id(cloud, tenant)
    l3vni = int(cloud.service.ok("GET", f"/v1/vpcs/{vpc_id}")["l3vni"])
    networks = cloud.service.ok("GET", f"/v1/networks?vpc_id={vpc_id}")
    namespace = f"vxr{l3vni}"
    assert namespace in leftovers.softgate_namespaces(cloud.fabric)
    public_ips = [ip["ipaddress"] for ip in cloud.api.listPublicIpAddresses(
        vpcid=tenant.vpc["id"], fetch_list=True)]
    return Footprint(vpc_id, [str(n["id"]) for n in networks], l3vni,
                     [int(n["segment"]["id"]) for n in networks], namespace,
                     namespace_inode(cloud, namespace), public_ips)


def in_softgate_mounts(cloud: Cloud, *argv: str, network: bool = False) -> str:
    """A command in sg1 zebra's mount namespace (its private /run/netns, where the agent
    makes the routing domains), and in its network namespace if `network`."""
    pid = str(cloud.fabric.pid(SOFTGATE, "zebra"))
    return run(["nsenter", "-t", pid, "-m", *(["-n"] if network else []), *argv]).stdout


def namespace_inode(cloud: Cloud, namespace: str) -> int:
    return (cloud.fabric.private_netns_dir(SOFTGATE) / namespace).stat().st_ino


def leftovers_in_frr(cloud: Cloud, gone: Footprint) -> list[str]:
    vnis = cloud.fabric.vtysh_json(SOFTGATE, "show evpn vni json")
    config = cloud.fabric.vtysh(SOFTGATE, "show running-config")
    return [f"VNI {vni}" for vni in (gone.l3vni, *gone.l2vnis) if str(vni) in vnis] + \
        [line for line in config.splitlines() if line.strip() in (
            f"vrf {gone.namespace}", f"vni {gone.l3vni}",
            *(f"vni {vni}" for vni in gone.l2vnis))]


def leftovers_in_softgate_nft(cloud: Cloud, gone: Footprint) -> list[str]:
    """Lines of sg1's own nft ruleset naming the VPC's domain or public addresses (its
    domain's own tables went with its namespace)."""
    ruleset = in_softgate_mounts(cloud, "nft", "list", "ruleset", network=True)
    marks = (gone.namespace, f"vxp{gone.l3vni}", *gone.public_ips)
    return [line for line in ruleset.splitlines() if any(mark in line for mark in marks)]


def processes_in_netns(inode: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):  # gone meanwhile
                if os.readlink(entry / "ns" / "net") == f"net:[{inode}]":
                    found.append(int(entry.name))
    return found


def command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):  # gone meanwhile
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return lines
