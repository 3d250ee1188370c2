"""A small EVPN fabric run on configs the provider service renders.

spine1 with hypervisors hv1 and hv2 and SoftGate sg1 under it, and up1, the provider's
upstream router, peering with sg1. The service holds the desired state: an isolated
network, a VPC with two tiers and a ROUTED network, and a public IP. Every fabric node
runs the vxgate agent, which applies what `GET /v1/devices/<name>/config` returns: the
FRR config everywhere, and on sg1 also softgate.json (routing domains as namespaces,
bridges, VXLAN, uplinks, nftables, dnsmasq, metadata). Only up1, which is not ours, has
a hand-written config.

On the hypervisors the kernel side stands in for what CloudStack's KVM agent builds: one
bridge and VXLAN device per VNI, VMs plugged into them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.service import running_service
from simulator.fabric import Fabric, run, wait_until
from simulator.kvm import bridge_name, segment_commands
from simulator.local_service import Request

ZONE, PHYSNET = "1", "200"
RT_ASN = 65000
UPSTREAM_ASN = 64496
PUBLIC_POOL = "203.0.113.0/24"  # RFC 5737
ROUTED_CIDR = "198.18.10.0/24"  # RFC 2544 benchmarking space: never routed outside
FABRIC_NODES = ("spine1", "hv1", "hv2", "sg1")
LOOPBACKS = {"spine1": "10.255.0.1", "hv1": "10.255.1.1", "hv2": "10.255.1.2",
             "sg1": "10.255.2.1"}
GATEWAY_MAC = "02:00:5e:00:00:01"
INTERNET_HOST = "192.0.2.1"  # RFC 5737, on up1: "the internet"


@dataclass
class Segment:
    network_id: str
    vni: int
    l3vni: int
    cidr: str
    gateway: str


@dataclass
class SmallFabric:
    fabric: Fabric
    request: Request
    configs: dict[str, str] = field(default_factory=dict)  # node -> rendered frr.conf
    segments: list[Segment] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def l3vnis(self) -> list[int]:
        return sorted({segment.l3vni for segment in self.segments})


def declare_state(request: Request) -> list[Segment]:
    """Zone, devices and tenants in the service; returns the segments it allocated."""
    declare_inventory(request)
    return declare_tenants(request)


def declare_inventory(request: Request) -> None:
    """The operator's part: the zone, its guest physical network and the devices."""
    request("PUT", f"/v1/zones/{ZONE}", {"name": "sim", "rt_asn": RT_ASN})
    request("PUT", f"/v1/physical-networks/{PHYSNET}", {"zone_id": ZONE, "name": "guest"})
    spine_ports = [{"interface": f"to-{node}", "peer_device": node, "peer_interface": "uplink"}
                   for node in FABRIC_NODES[1:]]
    request("PUT", "/v1/devices/spine1", {"zone_id": ZONE, "role": "spine",
                                          "loopback": LOOPBACKS["spine1"],
                                          "uplinks": spine_ports})
    for node, role in (("hv1", "hypervisor"), ("hv2", "hypervisor"), ("sg1", "softgate")):
        body: dict[str, Any] = {
            "zone_id": ZONE, "role": role, "loopback": LOOPBACKS[node],
            "uplinks": [{"interface": "uplink", "peer_device": "spine1",
                         "peer_interface": f"to-{node}"}],
        }
        if role == "softgate":
            body["upstream_peers"] = [{"address": "198.51.100.1", "remote_asn": UPSTREAM_ASN}]
        request("PUT", f"/v1/devices/{node}", body)


def declare_tenants(request: Request) -> list[Segment]:
    """Networks, a VPC and a public IP, straight through the REST API."""
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
    namespaces) and a built fabric; everything stopped and removed afterwards."""
    # A short path: a Unix socket's name is limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="vxsvc") as scratch:
        socket_path = Path(scratch) / "service.sock"
        with running_service(workers=workers, unix_socket=socket_path) as service:
            small = build(service.ok, f"unix://{socket_path}")
            try:
                yield small
            finally:
                small.fabric.down()


def build(request: Request, agent_service_url: str) -> SmallFabric:
    """Declare the state, build the kernel side, start FRR and every fabric node's agent
    (which applies the node's rendered config) and wait until every session is up and
    every expected route is present. `agent_service_url` is where the agents reach the
    service from inside their namespaces (unix:///path). Tears the fabric down if any
    step fails."""
    segments = declare_state(request)
    small = SmallFabric(Fabric(), request, segments=segments)
    try:
        _build(small, request, agent_service_url)
    except BaseException:
        small.fabric.down()
        raise
    return small


def _build(small: SmallFabric, request: Request, agent_service_url: str) -> None:
    fabric = small.fabric
    small.configs = {node: rendered_config(request, node) for node in FABRIC_NODES}
    for node in ("vm1", "vm2", "vm3"):
        fabric.add_node(node, router=False)
    start = build_fabric(fabric, request, agent_service_url, small.timings,
                         before_daemons=lambda: _hypervisors(small))
    small.timings["all routes present"] = start_offset(
        start, lambda: not missing_routes(small))


def build_fabric(fabric: Fabric, request: Request, agent_service_url: str,
                 timings: dict[str, float],
                 before_daemons: Callable[[], None] = lambda: None) -> float:
    """The declared devices as namespaces: links, FRR, every node's agent and up1's
    config; returns when every BGP session is up (the start time, for timings)."""
    for node in (*FABRIC_NODES, "up1"):
        fabric.add_node(node)
    for node in FABRIC_NODES:
        fabric.ip(node, "addr", "add", f"{LOOPBACKS[node]}/32", "dev", "lo")
    for node in FABRIC_NODES[1:]:
        fabric.veth("spine1", f"to-{node}", node, "uplink")
    fabric.veth("sg1", "wan", "up1", "to-sg1", mtu=1500)
    fabric.ip("sg1", "addr", "add", "198.51.100.0/31", "dev", "wan")
    fabric.ip("up1", "addr", "add", "198.51.100.1/31", "dev", "to-sg1")
    fabric.ip("up1", "addr", "add", f"{INTERNET_HOST}/32", "dev", "lo")
    before_daemons()
    start = time.monotonic()
    for node in (*FABRIC_NODES, "up1"):
        # sg1's agent makes its routing domains as namespaces: FRR's netns VRF backend.
        fabric.start_zebra(node, netns_vrfs=node == "sg1")
    for node in (*FABRIC_NODES, "up1"):
        fabric.start_daemon(node, "bgpd")
        fabric.start_daemon(node, "bfdd")
    for node in FABRIC_NODES:
        token = request("POST", f"/v1/devices/{node}/token", None)["token"]
        fabric.start_agent(node, agent_service_url, token, softgate=node == "sg1")
    fabric.load_config("up1", UPSTREAM_CONFIG)
    timings["daemons started and configured"] = time.monotonic() - start
    timings["all sessions established"] = start_offset(
        start, lambda: all(sessions_established(fabric, node)
                           for node in (*FABRIC_NODES, "up1")))
    return start


def start_offset(start: float, condition: Callable[[], bool]) -> float:
    wait_until("the fabric to converge", condition, timeout=60)
    return time.monotonic() - start


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


def sessions_established(fabric: Fabric, node: str) -> bool:
    summary = fabric.vtysh_json(node, "show bgp summary json")
    families = [family for family in ("ipv4Unicast", "l2VpnEvpn") if family in summary]
    return bool(families) and all(
        peer.get("state") == "Established"
        for family in families for peer in summary[family].get("peers", {}).values()
    ) and all(summary[family].get("peers") for family in families)


def evpn_routes(fabric: Fabric, node: str, route_type: str) -> set[str]:
    """The EVPN prefixes of one type (macip, multicast, prefix) a node has."""
    table = fabric.vtysh_json(node, f"show bgp l2vpn evpn route type {route_type} json")
    prefixes: set[str] = set()
    for rd, routes in table.items():
        if isinstance(routes, dict) and ":" in rd:
            prefixes.update(key for key in routes if key.startswith("["))
    return prefixes


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


# The provider's upstream router, not a vxgate device: it offers a default route and
# takes what the SoftGate announces.
UPSTREAM_CONFIG = f"""frr defaults datacenter
hostname up1
log syslog informational
!
router bgp {UPSTREAM_ASN}
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
