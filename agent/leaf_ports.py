"""leaf.json: a VTEP leaf's direct connects in its kernel (observe, diff, apply).

For each VNI of a direct connect: bridge `dcbr<VNI>` and VXLAN device `dcvx<VNI>` (local:
the leaf's VTEP address, no learning, ARP/ND suppression: FRR installs remote MACs and
neighbours, as on a hypervisor). For each (port, VLAN): the port's VLAN member
`<port>.<VLAN>` goes into its VNI's bridge. FRR's `advertise-all-vni` (frr.conf) finds
the VXLAN device and announces the VNI and the bare-metal MACs the bridge learns.

The VLAN member is the port's 802.1Q sub-interface, made by the leaf's own network
configuration (the switch's port config): the agent only enslaves it, and on detach only
takes it out of the bridge, so an untagged port or a trunk stays as the operator set it.
On a kernel without 802.1Q (the simulator's) the member is a veth standing for that
VLAN of the port (simulator/direct_connect.py).

Only `dcbr*` and `dcvx*` links are ever deleted; a port member in a `dcbr*` bridge that
leaf.json no longer names is released.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

from agent.ipr import IprApi, Link, LinkError, Vxlan
from agent.status import ARTIFACT, ObjectStatus

LEAF_JSON: Final = "leaf.json"
FORMAT: Final = 1
BRIDGE_RE: Final = re.compile(r"dcbr([0-9]{1,8})")
VXLAN_RE: Final = re.compile(r"dcvx([0-9]{1,8})")
KIND: Final = "direct-connect"  # reports: one per port VLAN, id "<port>.<vlan>"
SEGMENT: Final = "segment"  # and one per VNI, id the VNI


def bridge_name(vni: int) -> str:
    return f"dcbr{vni}"


def vxlan_name(vni: int) -> str:
    return f"dcvx{vni}"


def member_name(interface: str, vlan: int) -> str:
    return f"{interface}.{vlan}"


class LeafStateError(ValueError):
    """leaf.json is not what this agent understands; one line."""


@dataclass(frozen=True)
class PortVlan:
    interface: str
    vlan: int
    vni: int

    @property
    def member(self) -> str:
        return member_name(self.interface, self.vlan)


@dataclass(frozen=True)
class LeafState:
    vtep_address: str
    ports: tuple[PortVlan, ...]

    @property
    def vnis(self) -> list[int]:
        return sorted({port.vni for port in self.ports})

    @classmethod
    def parse(cls, content: str) -> LeafState:
        try:
            data = json.loads(content)
            if data.get("format") != FORMAT:
                raise LeafStateError(f"leaf.json format {data.get('format')!r}, "
                                     f"this agent knows {FORMAT}")
            ports = tuple(PortVlan(str(p["interface"]), int(p["vlan"]), int(p["vni"]))
                          for p in data["ports"])
            return cls(str(data["vtep_address"]), ports)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LeafStateError(f"leaf.json: {exc}") from None


class LeafPortsArtifact:
    """The applier of leaf.json, in the agent's own namespace (the leaf's)."""

    def __init__(self, ipr: IprApi) -> None:
        self.ipr = ipr

    def apply(self, content: str) -> list[ObjectStatus]:
        try:
            state = LeafState.parse(content)
        except LeafStateError as exc:
            return [ObjectStatus(ARTIFACT, LEAF_JSON, "error", str(exc))]
        try:
            self._remove_stale(state)
        except LinkError as exc:
            return [ObjectStatus(ARTIFACT, LEAF_JSON, "error", str(exc))]
        links = self.ipr.links(None)
        reports = [self._segment(links, state.vtep_address, vni) for vni in state.vnis]
        failed = {int(r.id) for r in reports if r.state == "error"}
        return reports + [self._member(port, port.vni in failed) for port in state.ports]

    def _remove_stale(self, state: LeafState) -> None:
        """Members first (out of bridges that stay), then whole segments no longer named."""
        links = self.ipr.links(None)
        wanted = {port.member: bridge_name(port.vni) for port in state.ports}
        for link in links.values():
            if link.master is not None and BRIDGE_RE.fullmatch(link.master) \
                    and not VXLAN_RE.fullmatch(link.name) \
                    and wanted.get(link.name) != link.master:
                self.ipr.release(None, link.name)
        vnis = {str(vni) for vni in state.vnis}
        stale = [name for name in links
                 if (found := BRIDGE_RE.fullmatch(name) or VXLAN_RE.fullmatch(name))
                 and found.group(1) not in vnis]
        if stale:
            self.ipr.delete_links(None, sorted(stale))

    def _segment(self, links: dict[str, Link], local: str, vni: int) -> ObjectStatus:
        """Changes only what differs: an apply that finds all in place changes nothing."""
        bridge, vxlan, spec = bridge_name(vni), vxlan_name(vni), Vxlan(vni, local)
        have_bridge, have_vxlan = links.get(bridge), links.get(vxlan)
        try:
            if have_bridge is None or not have_bridge.up:
                self.ipr.add_bridge(None, bridge, up=True)
            if have_bridge is None or have_bridge.mcast_snooping is not False:
                self.ipr.set_bridge(None, bridge, mcast_snooping=False)
            if have_vxlan is not None and have_vxlan.vxlan != spec:
                self.ipr.delete_link(None, vxlan)  # a new VTEP address: made anew
                have_vxlan = None
            if have_vxlan is None or have_vxlan.master != bridge:
                self.ipr.add_vxlan(vxlan, spec, None, master=bridge)
                have_vxlan = None
            if have_vxlan is None or have_vxlan.learning is not False \
                    or not have_vxlan.neigh_suppress or not have_vxlan.up:
                self.ipr.set_port(None, vxlan, learning=False, neigh_suppress=True, up=True)
        except LinkError as exc:
            return ObjectStatus(SEGMENT, str(vni), "error", str(exc))
        return ObjectStatus(SEGMENT, str(vni), "ok")

    def _member(self, port: PortVlan, segment_failed: bool) -> ObjectStatus:
        if segment_failed:
            return ObjectStatus(KIND, port.member, "error", f"VNI {port.vni} is not built")
        link = self.ipr.link(None, port.member)
        if link is None:
            return ObjectStatus(KIND, port.member, "error",
                                f"no link {port.member}: the port's VLAN {port.vlan} "
                                "sub-interface is missing")
        try:
            if link.master != bridge_name(port.vni):
                self.ipr.set_link(None, port.member, master=bridge_name(port.vni), up=True)
            elif not link.up:
                self.ipr.set_link(None, port.member, up=True)
        except LinkError as exc:
            return ObjectStatus(KIND, port.member, "error", str(exc))
        return ObjectStatus(KIND, port.member, "ok")
