"""The simulator's fabric as a description: which nodes, how they are wired, and what the
operator declares to the provider service for them. Pure data; cloud_fabric.py builds it.

    spine1 .. spineS           every leaf (or, with no leaves, every host) to every spine
    leaf1 .. leafL             hosts spread over the leaves, one leaf each
    hv1 .. hvH, sg1 .. sgG     the hosts: hypervisors and SoftGates
    up1                        the provider's upstream router; one /31 per SoftGate

Interfaces are named as the service's uplink declarations name them: the upper side of a
fabric link is `to-<lower node>`, the lower side `uplink`, or `uplink1`, `uplink2`, ...
when the node has several upper neighbours (every spine, for a leaf or a leafless host).
The "public" addresses are RFC 5737 documentation prefixes and exist only inside the
fabric's namespaces.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

FABRIC_MTU = 9000  # at least overlay + 50 (lab FINDINGS, gotcha 4)
WAN_MTU = 1500
UPSTREAM = "up1"
WAN_INTERFACE = "wan"
ISOLATIONS = ("vxlan", "vlan")
# Loopbacks are 10.255.<role>.<index>: keeps today's spine1 10.255.0.1, hv1 10.255.1.1,
# sg1 10.255.2.1, and puts leaves in 10.255.3.0/24.
LOOPBACK_BLOCKS = {"spine": 0, "hypervisor": 1, "softgate": 2, "leaf": 3}
MAX_PER_ROLE = 254  # the last octet of a loopback
WAN_BLOCK = ipaddress.IPv4Network("198.51.100.0/24")  # RFC 5737: 128 SoftGate /31s


class TopologyError(ValueError):
    pass


@dataclass(frozen=True)
class Link:
    """A veth pair: `node`'s `interface` to `peer`'s `peer_interface`. Fabric links are
    unnumbered (eBGP over IPv6 link-locals); a WAN link carries a /31 on each side."""

    node: str
    interface: str
    peer: str
    peer_interface: str
    mtu: int = FABRIC_MTU
    address: str = ""  # node side, "a.b.c.d/len"; "" when unnumbered
    peer_address: str = ""


@dataclass(frozen=True)
class Topology:
    spines: int = 1
    leaves: int = 0  # 0: hypervisors and SoftGates hang off every spine directly
    hypervisors: int = 2
    softgates: int = 1
    isolation: str = "vxlan"  # "vlan": a VLAN hand-off physical network
    # Leaves declared `vtep: true`: their agents build the direct connects' VNIs (leaf.json).
    vtep_leaves: tuple[str, ...] = ()
    zone_id: str = "1"
    physical_network_id: str = "200"
    physical_network_name: str = "guest"
    rt_asn: int = 65000
    # The service's own defaults, declared explicitly so the fabric does not drift if
    # they change.
    l2vni_range: tuple[int, int] = (10_000, 4_999_999)
    l3vni_range: tuple[int, int] = (5_000_000, 5_999_999)
    vlan_range: tuple[int, int] = (3000, 4094)
    public_pool: str = "203.0.113.0/24"  # RFC 5737
    upstream_asn: int = 64496  # RFC 5398 documentation ASN
    internet_host: str = "192.0.2.1"  # RFC 5737, on up1's lo: "the internet"

    def __post_init__(self) -> None:
        for what, count, low in (("spines", self.spines, 1), ("leaves", self.leaves, 0),
                                 ("hypervisors", self.hypervisors, 1),
                                 ("softgates", self.softgates, 1)):
            if not low <= count <= MAX_PER_ROLE:
                raise TopologyError(f"{what}: {count} is not in {low}..{MAX_PER_ROLE}")
        if self.softgates > WAN_BLOCK.num_addresses // 2:
            raise TopologyError(f"softgates: at most {WAN_BLOCK.num_addresses // 2} "
                                f"(one /31 of {WAN_BLOCK} each)")
        unknown = sorted(set(self.vtep_leaves) - set(self.leaf_names))
        if unknown:
            raise TopologyError(f"vtep_leaves: {', '.join(unknown)} not among the leaves")
        if self.isolation not in ISOLATIONS:
            raise TopologyError(f"isolation: {self.isolation!r} is not one of {ISOLATIONS}")

    @classmethod
    def small(cls, isolation: str = "vxlan") -> Topology:
        """The scenarios' fabric: spine1 over hv1, hv2 and sg1, with up1 upstream; the
        guest physical network's isolation as given ("vlan": a VLAN hand-off site)."""
        return cls(spines=1, leaves=0, hypervisors=2, softgates=1, isolation=isolation)

    # --- nodes -------------------------------------------------------------------------

    @property
    def spine_names(self) -> tuple[str, ...]:
        return _names("spine", self.spines)

    @property
    def leaf_names(self) -> tuple[str, ...]:
        return _names("leaf", self.leaves)

    @property
    def hypervisor_names(self) -> tuple[str, ...]:
        return _names("hv", self.hypervisors)

    @property
    def softgate_names(self) -> tuple[str, ...]:
        return _names("sg", self.softgates)

    @property
    def hosts(self) -> tuple[str, ...]:
        """The VTEPs: hypervisors, then SoftGates."""
        return self.hypervisor_names + self.softgate_names

    @property
    def fabric_nodes(self) -> tuple[str, ...]:
        """The provider's devices, each running FRR and the vxgate agent, in declaration
        order (which is also the order the zone allocates their ASNs in)."""
        return self.spine_names + self.leaf_names + self.hosts

    @property
    def frr_nodes(self) -> tuple[str, ...]:
        return (*self.fabric_nodes, UPSTREAM)

    def role(self, node: str) -> str:
        for role, names in (("spine", self.spine_names), ("leaf", self.leaf_names),
                            ("hypervisor", self.hypervisor_names),
                            ("softgate", self.softgate_names)):
            if node in names:
                return role
        raise TopologyError(f"{node} is not a device of this topology")

    def loopback(self, node: str) -> str:
        return f"10.255.{LOOPBACK_BLOCKS[self.role(node)]}.{_index(node)}"

    def loopbacks(self) -> dict[str, str]:
        return {node: self.loopback(node) for node in self.fabric_nodes}

    # --- links -------------------------------------------------------------------------

    def upper_neighbours(self, node: str) -> tuple[str, ...]:
        """The switches a node's uplinks go to: every spine for a leaf and for a host of
        a leafless fabric; else the host's one leaf (hosts dealt round-robin, SoftGates
        after the hypervisors, so consecutive SoftGates land on different leaves)."""
        role = self.role(node)
        if role == "spine":
            return ()
        if role == "leaf" or not self.leaves:
            return self.spine_names
        return (self.leaf_names[self.hosts.index(node) % self.leaves],)

    def uplink_interface(self, node: str, upper: str) -> str:
        uppers = self.upper_neighbours(node)
        return "uplink" if len(uppers) == 1 else f"uplink{uppers.index(upper) + 1}"

    def fabric_links(self) -> tuple[Link, ...]:
        """Every fabric link, lower node first: leaves, then hypervisors, then SoftGates."""
        return tuple(
            Link(node, self.uplink_interface(node, upper), upper, f"to-{node}")
            for node in self.leaf_names + self.hosts
            for upper in self.upper_neighbours(node)
        )

    def wan_links(self) -> tuple[Link, ...]:
        """Each SoftGate's `wan` to up1, numbered from its own /31 (SoftGate even, up1
        odd): 198.51.100.0/31, .2/31, ..."""
        subnets = WAN_BLOCK.subnets(new_prefix=31)
        return tuple(
            Link(softgate, WAN_INTERFACE, UPSTREAM, f"to-{softgate}", mtu=WAN_MTU,
                 address=f"{subnet[0]}/31", peer_address=f"{subnet[1]}/31")
            for softgate, subnet in zip(self.softgate_names, subnets, strict=False)
        )

    def links(self) -> tuple[Link, ...]:
        return self.fabric_links() + self.wan_links()

    def fabric_ports(self, node: str) -> tuple[Link, ...]:
        """The fabric links a node has an end of, seen from that node (`node` == it)."""
        ports = []
        for link in self.fabric_links():
            if link.node == node:
                ports.append(link)
            elif link.peer == node:
                ports.append(Link(node, link.peer_interface, link.node, link.interface))
        # Upper ports first, as a device lists them: uplinks, then ports to lower nodes.
        return tuple(sorted(ports, key=lambda port: not port.interface.startswith("uplink")))

    def upstream_address(self, softgate: str) -> str:
        """up1's address on the SoftGate's WAN link: the SoftGate's upstream peer."""
        link = next(link for link in self.wan_links() if link.node == softgate)
        return link.peer_address.split("/")[0]

    # --- the operator's declarations -------------------------------------------------

    def zone_body(self) -> dict[str, Any]:
        return {"name": "sim", "rt_asn": self.rt_asn}

    def physical_network_body(self) -> dict[str, Any]:
        return {"zone_id": self.zone_id, "name": self.physical_network_name,
                "isolation_method": self.isolation,
                "l2vni_range": _range(self.l2vni_range),
                "l3vni_range": _range(self.l3vni_range),
                "vlan_range": _range(self.vlan_range)}

    def device_body(self, node: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "zone_id": self.zone_id, "role": self.role(node), "loopback": self.loopback(node),
            "uplinks": [{"interface": port.interface, "peer_device": port.peer,
                         "peer_interface": port.peer_interface}
                        for port in self.fabric_ports(node)],
        }
        if node in self.vtep_leaves:
            body["vtep"] = True
        if self.role(node) == "softgate":
            body["upstream_peers"] = [{"address": self.upstream_address(node),
                                       "remote_asn": self.upstream_asn}]
            # sg1 is the active SoftGate of the zone; any other is its standby.
            body["standby"] = node != self.softgate_names[0]
        return body

    def inventory(self) -> tuple[tuple[str, dict[str, Any]], ...]:
        """(path, body) of every PUT that declares the operator's part: zone, physical
        network, devices. No tenants: those come from CloudStack (or a test)."""
        return (
            (f"/v1/zones/{self.zone_id}", self.zone_body()),
            (f"/v1/physical-networks/{self.physical_network_id}",
             self.physical_network_body()),
            *((f"/v1/devices/{node}", self.device_body(node)) for node in self.fabric_nodes),
        )


def _names(stem: str, count: int) -> tuple[str, ...]:
    return tuple(f"{stem}{index}" for index in range(1, count + 1))


def _index(node: str) -> int:
    stem = node.rstrip("0123456789")
    return int(node[len(stem):])


def _range(span: tuple[int, int]) -> str:
    return f"{span[0]}-{span[1]}"
