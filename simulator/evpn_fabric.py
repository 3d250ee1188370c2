"""A small EVPN fabric run on configs the provider service renders.

spine1 with hypervisors hv1 and hv2 and SoftGate sg1 under it, and up1, the provider's
upstream router, peering with sg1: `Topology.small()`, built by simulator/cloud_fabric.py,
which declares the operator's part (zone, physical network, devices) and runs FRR and
the vxgate agent on every fabric node. Here the tenants come on top, declared directly
through the service's API before any daemon starts: an isolated network, a VPC with two
tiers and a ROUTED network, and a public IP. The agents apply what
`GET /v1/devices/<name>/config` returns: the FRR config everywhere, and on sg1 also
softgate.json (routing domains as namespaces, bridges, VXLAN, uplinks, nftables,
dnsmasq, metadata). Only up1, which is not ours, has a hand-written config.

On the hypervisors the kernel side stands in for what CloudStack's KVM agent builds: one
bridge and VXLAN device per VNI, VMs plugged into them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from simulator.cloud_fabric import (
    CloudFabric,
    running_fabric,
    running_service_for_agents,
)
from simulator.fabric import Fabric, run
from simulator.kvm import bridge_name, segment_commands
from simulator.local_service import Request
from simulator.topology import Topology

SMALL = Topology.small()
ZONE, PHYSNET = SMALL.zone_id, SMALL.physical_network_id
RT_ASN = SMALL.rt_asn
UPSTREAM_ASN = SMALL.upstream_asn
PUBLIC_POOL = SMALL.public_pool
ROUTED_CIDR = "198.18.10.0/24"  # RFC 2544 benchmarking space: never routed outside
FABRIC_NODES = SMALL.fabric_nodes
LOOPBACKS = SMALL.loopbacks()
GATEWAY_MAC = "02:00:5e:00:00:01"
INTERNET_HOST = SMALL.internet_host  # RFC 5737, on up1: "the internet"
VMS = ("vm1", "vm2", "vm3")


@dataclass
class Segment:
    network_id: str
    vni: int
    l3vni: int
    cidr: str
    gateway: str


@dataclass
class SmallFabric:
    cloud: CloudFabric
    segments: list[Segment] = field(default_factory=list)
    configs: dict[str, str] = field(default_factory=dict)  # node -> rendered frr.conf

    @property
    def fabric(self) -> Fabric:
        return self.cloud.fabric

    @property
    def request(self) -> Request:
        return self.cloud.request

    @property
    def timings(self) -> dict[str, float]:
        return self.cloud.timings

    @property
    def l3vnis(self) -> list[int]:
        return sorted({segment.l3vni for segment in self.segments})


def declare_tenants(request: Request) -> list[Segment]:
    """The tenants in the service; returns the segments it allocated."""
    request("PUT", "/v1/vpcs/vpc1", {"zone_id": ZONE, "cidr": "10.1.0.0/16",
                                     "physical_network_id": PHYSNET})
    networks = [
        ("net1", {"cidr": "10.100.0.0/24", "gateway": "10.100.0.1"}),
        ("tier1", {"cidr": "10.1.1.0/24", "gateway": "10.1.1.1", "vpc_id": "vpc1"}),
        ("tier2", {"cidr": "10.1.2.0/24", "gateway": "10.1.2.1", "vpc_id": "vpc1"}),
        ("routed1", {"cidr": ROUTED_CIDR, "gateway": "198.18.10.1", "mode": "routed"}),
    ]
    segments = []
    for network_id, fields in networks:
        answer = request("PUT", f"/v1/networks/{network_id}",
                         {"zone_id": ZONE, "physical_network_id": PHYSNET, **fields})
        segments.append(Segment(network_id, answer["segment"]["id"], answer["l3vni"],
                                fields["cidr"], fields["gateway"]))
    request("PUT", f"/v1/zones/{ZONE}/public-ips/203.0.113.10",
            {"network_id": "net1", "cidr": PUBLIC_POOL, "gateway": "203.0.113.1",
             "source_nat": True})
    return segments


def rendered_config(request: Request, device: str) -> str:
    answer = request("GET", f"/v1/devices/{device}/config", None)
    text: str = answer["artifacts"]["frr.conf"]["content"]
    return text


@contextmanager
def running(workers: int = 1) -> Iterator[SmallFabric]:
    """The service under gunicorn (also on a Unix socket, for the agents in their
    namespaces) and the built fabric, converged: every session up and every expected
    route present. Everything stopped and removed afterwards, also on failure."""
    built: list[SmallFabric] = []  # made by the prepare step, once the fabric exists

    def declare_tenants_and_plug_vms(cloud: CloudFabric) -> None:
        small = SmallFabric(cloud, declare_tenants(cloud.request))
        small.configs = {node: rendered_config(cloud.request, node) for node in FABRIC_NODES}
        for vm in VMS:
            cloud.fabric.add_node(vm, router=False)
        _hypervisors(small)
        built.append(small)

    converged = {"all routes present": lambda: missing_routes(built[0])}
    with (running_service_for_agents(workers) as (service, agent_service_url),
          running_fabric(SMALL, service.ok, agent_service_url, extra_checks=converged,
                         prepare=declare_tenants_and_plug_vms)):
        yield built[0]


def _hypervisors(small: SmallFabric) -> None:
    """What CloudStack's KVM agent builds (modifyvxlan.sh names: brvx-<vni>,
    vxlan<vni>): net1 on both hypervisors with a VM each, tier1 on hv1 with vm3."""
    fabric = small.fabric
    net1, tier1 = small.segments[0], small.segments[1]
    placements = {"hv1": [(net1, "vm1", 11), (tier1, "vm3", 13)], "hv2": [(net1, "vm2", 12)]}
    built: set[tuple[str, int]] = set()
    for hv, vms in placements.items():
        for segment, vm, host in vms:
            if (hv, segment.vni) not in built:
                fabric.ip_batch(hv, segment_commands(segment.vni, LOOPBACKS[hv]))
                built.add((hv, segment.vni))
            bridge = bridge_name(segment.vni)
            prefix = segment.cidr.rsplit(".", 1)[0]
            _plug_vm(fabric, vm, hv, bridge, f"{prefix}.{host}/24", segment.gateway, host)


def _plug_vm(fabric: Fabric, vm: str, hv: str, bridge: str, address: str, gateway: str,
             host: int) -> None:
    run(["ip", "link", "add", "eth0", "netns", fabric.ns(vm), "address",
         f"02:00:00:00:01:{host:02x}", "type", "veth", "peer", "name", vm, "netns",
         fabric.ns(hv)])
    fabric.ip(hv, "link", "set", vm, "master", bridge, "up")
    fabric.ip_batch(vm, [f"addr add {address} dev eth0", "link set eth0 up",
                         f"route add default via {gateway}"])


# --- convergence ---------------------------------------------------------------------------


def evpn_routes(fabric: Fabric, node: str, route_type: str) -> set[str]:
    """The EVPN prefixes of one type (macip, multicast, prefix) a node has."""
    return {prefix for prefix, _ in evpn_paths(fabric, node, route_type)}


def evpn_paths(fabric: Fabric, node: str, route_type: str) -> set[tuple[str, str]]:
    """(prefix, next hop) of every path of one EVPN route type a node has: a prefix as
    FRR prints it, "[2]:[0]:[48]:[<mac>]:[32]:[<ip>]" for a MAC/IP route."""
    table = fabric.vtysh_json(node, f"show bgp l2vpn evpn route type {route_type} json")
    return {(prefix, hop["ip"])
            for rd, routes in table.items() if isinstance(routes, dict) and ":" in rd
            for prefix, entry in routes.items() if prefix.startswith("[")
            for paths in entry.get("paths", ()) for path in paths
            for hop in path.get("nexthops", ())}


def missing_routes(small: SmallFabric) -> list[str]:
    """What a converged fabric must show and does not yet (empty when converged)."""
    fabric = small.fabric
    net1 = small.segments[0]
    missing = []
    vteps = fabric.vtysh_json("hv1", f"show evpn vni {net1.vni} json")
    # FRR 8.4 lists the remote VTEPs' addresses under this (misleading) key.
    remote_ips = set(vteps.get("numRemoteVteps", []))
    wanted_vteps = {LOOPBACKS["hv2"], LOOPBACKS["sg1"]}
    if not wanted_vteps <= remote_ips:
        missing.append(f"type-3 on hv1 for VNI {net1.vni}: have {sorted(remote_ips)}")
    macs = evpn_routes(fabric, "hv1", "macip")
    for mac in ("02:00:00:00:01:0c", GATEWAY_MAC):
        if not any(mac in prefix for prefix in macs):
            missing.append(f"type-2 for {mac} on hv1")
    prefixes = evpn_routes(fabric, "hv1", "prefix")
    for cidr in ("0.0.0.0/0", *(segment.cidr for segment in small.segments)):
        address, length = cidr.split("/")
        if not any(f"[{length}]:[{address}]" in prefix for prefix in prefixes):
            missing.append(f"type-5 {cidr} on hv1")
    upstream = fabric.vtysh_json("up1", "show ip bgp json").get("routes", {})
    for cidr in (PUBLIC_POOL, ROUTED_CIDR):
        if cidr not in upstream:
            missing.append(f"{cidr} on up1")
    return missing
