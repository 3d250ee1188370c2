"""The CloudStack stand-in against the real provider service, through the real `cs`
client and the real entry-point: what each API call makes CloudStack spawn, and what
the service then holds. No fabric here (tests/scenarios has the packets)."""

from __future__ import annotations

import glob
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cs
import pytest

from bench.service import Service, running_service
from simulator.cloudstack.cloud import CloudStackSim, Site
from simulator.cloudstack.operator import install_entry_points, register
from simulator.cloudstack.server import RunningCloudStack, running_cloudstack


@dataclass
class Cloud:
    service: Service
    stand_in: RunningCloudStack
    api: cs.CloudStack
    zone: str
    offerings: dict[str, str]

    @property
    def sim(self) -> CloudStackSim:
        return self.stand_in.sim

    def commands(self) -> list[str]:
        return [s.command for s in self.sim.spawns()]

    def failed(self) -> list[str]:
        return [f"{s.command}: {s.output}" for s in self.sim.spawns() if s.code != 0]


@contextmanager
def stand_in_cloud(prefix: str) -> Iterator[Cloud]:
    """A real service with one zone and physical network, the CloudStack stand-in with
    vxgate registered on it, and the `cs` client (no network fabric)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch, \
            running_service(workers=1) as service:
        service.ok("PUT", "/v1/zones/1", {"name": "zone1"})
        service.ok("PUT", "/v1/physical-networks/200", {
            "zone_id": "1", "name": "guest", "l2vni_range": "10000-10999",
            "l3vni_range": "50000-50999"})
        extensions = Path(scratch) / "extensions"
        install_entry_points(extensions)
        token = Path(scratch) / "token"
        token.write_text(service.token)
        with running_cloudstack(CloudStackSim(Site(), extensions_dir=extensions)) as stand_in:
            lines = register(stand_in, "guest", f"http://{service.host}:{service.port}", token)
            assert lines[0].startswith("created extension vxgate")
            api = cs.CloudStack(endpoint=stand_in.endpoint, key=stand_in.api_key,
                                secret=stand_in.secret_key, fetch_result=True,
                                poll_interval=0.05, method="post")
            offerings = {o["name"]: o["id"] for o in
                         api.listNetworkOfferings(fetch_list=True) +
                         api.listVPCOfferings(fetch_list=True)}
            yield Cloud(service, stand_in, api, api.listZones(fetch_list=True)[0]["id"],
                        offerings)


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with stand_in_cloud("vxcs-") as made:
        yield made


def create_network(cloud: Cloud, name: str, gateway: str, **extra: Any) -> dict[str, Any]:
    offering = "vxgate-vpc-tier" if "vpcid" in extra else "vxgate-isolated-natted"
    answer: dict[str, Any] = cloud.api.createNetwork(
        name=name, displaytext=name, networkofferingid=cloud.offerings[offering],
        zoneid=cloud.zone, gateway=gateway, netmask="255.255.255.0", **extra)["network"]
    return answer


def deploy(cloud: Cloud, name: str, network: str, **extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = cloud.api.deployVirtualMachine(
        zoneid=cloud.zone, serviceofferingid="small", templateid="debian", name=name,
        networkids=network, **extra)["virtualmachine"]
    return answer


def test_registration_is_idempotent(cloud: Cloud, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(cloud.service.token)
    url = f"http://{cloud.service.host}:{cloud.service.port}"
    lines = register(cloud.stand_in, "guest", url, token)
    assert lines and all(line.startswith("unchanged") for line in lines), lines


def test_first_vm_implements_the_network_as_cloudstack_does(cloud: Cloud) -> None:
    network = create_network(cloud, "net1", "10.100.0.1")
    assert network["state"] == "Allocated" and "broadcasturi" not in network
    before = len(cloud.commands())
    vm = deploy(cloud, "vm1", network["id"], userdata="aGVsbG8=")
    spawned = cloud.commands()[before:]
    # protocol.md §3: the explicit ensure, ensure + implement, ensure + SNAT assign-ip,
    # the firewall re-applied, then the NIC's prepare sequence, each after its ensure.
    assert spawned[:6] == ["ensure-network-device", "ensure-network-device",
                           "implement-network", "ensure-network-device", "assign-ip",
                           "ensure-network-device"]
    assert [c for c in spawned[6:] if c != "ensure-network-device"] == [
        "apply-fw-rules", "prepare-nic", "add-dhcp-entry", "config-dns-subnet",
        "add-dns-entry", "save-vm-data"]
    assert not cloud.failed()
    listed = cloud.api.listNetworks(id=network["id"], fetch_list=True)[0]
    served = cloud.service.ok("GET", "/v1/networks/204")
    assert listed["broadcasturi"] == served["broadcast_uri"] == "vxlan://10000"
    assert listed["state"] == "Implemented"
    assert vm["nic"][0]["ipaddress"] == "10.100.0.2" and vm["password"]
    source_nat = cloud.api.listPublicIpAddresses(associatednetworkid=network["id"],
                                                 fetch_list=True)
    assert [ip["issourcenat"] for ip in source_nat] == [True]


def test_rules_reach_the_service_and_leave_with_the_network(cloud: Cloud) -> None:
    network = create_network(cloud, "net2", "10.101.0.1")
    vm = deploy(cloud, "vm2", network["id"])
    api = cloud.api
    ip = api.associateIpAddress(networkid=network["id"])["ipaddress"]
    api.createPortForwardingRule(ipaddressid=ip["id"], privateport=22, publicport=2222,
                                 protocol="tcp", virtualmachineid=vm["id"])
    lb = api.createLoadBalancerRule(publicipid=ip["id"], name="web", publicport=80,
                                    privateport=8080, algorithm="roundrobin")["loadbalancer"]
    api.assignToLoadBalancerRule(id=lb["id"], virtualmachineids=vm["id"])
    static = api.associateIpAddress(networkid=network["id"])["ipaddress"]
    api.enableStaticNat(ipaddressid=static["id"], virtualmachineid=vm["id"])
    assert not cloud.failed()
    network_id = str(cloud.sim.db.networks.by_uuid(network["id"]).db_id)  # type: ignore[union-attr]
    forwards = cloud.service.ok("GET", f"/v1/zones/1/public-ips/{ip['ipaddress']}"
                                "/port-forwards")
    assert [(f["public_ports"], f["private_ip"]) for f in forwards] == [("2222", "10.101.0.2")]
    api.destroyVirtualMachine(id=vm["id"])
    api.deleteNetwork(id=network["id"])
    assert not cloud.failed()
    status, _ = cloud.service.call("GET", f"/v1/networks/{network_id}")
    assert status == 404
    assert not glob.glob(f"{tempfile.gettempdir()}/cs-extnet-*.payload")


def test_vpc_tiers_are_ensured_at_vpc_level(cloud: Cloud) -> None:
    api = cloud.api
    vpc = api.createVPC(name="vpc1", displaytext="vpc1", cidr="10.1.0.0/16",
                        vpcofferingid=cloud.offerings["vxgate-vpc"], zoneid=cloud.zone)["vpc"]
    acl = api.createNetworkACLList(name="open", vpcid=vpc["id"])["networkacllist"]
    api.createNetworkACL(aclid=acl["id"], protocol="all", traffictype="ingress")
    tier = create_network(cloud, "tier1", "10.1.1.1", vpcid=vpc["id"], aclid=acl["id"])
    deploy(cloud, "vm3", tier["id"])
    scopes = {s.scope for s in cloud.sim.spawns()
              if s.command == "implement-network" and s.scope.startswith("vpc:")}
    assert scopes == {f"vpc:{cloud.sim.db.vpcs.by_uuid(vpc['id']).db_id}"}  # type: ignore[union-attr]
    api.createNetworkACL(aclid=acl["id"], protocol="tcp", startport=22, traffictype="ingress",
                         action="deny", number=5)
    assert "apply-network-acl" in cloud.commands()[-2:]
    assert not cloud.failed()


def test_a_refusal_is_one_line_and_changes_nothing(cloud: Cloud) -> None:
    with pytest.raises(cs.CloudStackApiException) as refused:
        cloud.api.createNetwork(name="bad", displaytext="bad", zoneid=cloud.zone,
                                networkofferingid=cloud.offerings["vxgate-isolated-natted"],
                                gateway="10.102.0.1", netmask="255.0.255.0")
    assert "Invalid gateway/netmask" in str(refused.value)
    assert "bad" not in [n["name"] for n in cloud.api.listNetworks(fetch_list=True)]
