"""The 802.1Q transport of a VLAN hand-off site, on a kernel without 802.1Q.

On a real site every hypervisor and SoftGate has a trunk to the switches: the KVM agent
(modifyvlan.sh) puts `<pif>.<vlan>` into the VLAN's bridge on the hypervisor, and the
SoftGate's agent puts `<trunk>.<vlan>` into the segment bridge `vxl<vlan>` of its routing
domain. This kernel has no VLAN sub-interfaces (lab FINDINGS §0), so each transport VLAN
is modelled as its own L2 segment instead: one bridge `vlan<id>` per VLAN in a switch
namespace of the run, with a veth to every host that has the VLAN:

    hypervisor: br<pif>-<vlan> ── vl<vlan> ═══ <hv>-<vlan> ─┐
                                                           ├─ vlan<vlan> (switch node)
    SoftGate:   vxl<vlan> (in vxr<N>) ── sw<vlan> ═══ <sg>-<vlan> ─┘

The hypervisor side is plugged by the KVM agent (kvm.py) when it builds the VLAN's
bridge. The SoftGate side plays the trunk: `SoftGateTrunk` watches the SoftGates' routing
domains and plugs `sw<vlan>` into every `vxl<vlan>` bridge the agent made, again when a
namespace or bridge is made anew. The agent deletes only links named as its own
(vxp/vxpub/vxb/vxv/vxl), so it leaves `sw<vlan>` alone.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from simulator.fabric import Fabric, FabricError, run

SWITCH_NODE = "vlansw"
SEGMENT_BRIDGE_RE = re.compile(r"vxl([0-9]{1,4})")  # the SoftGate agent's VLAN segments
TRUNK_PORT_RE = re.compile(r"sw([0-9]{1,4})")
DOMAIN_PREFIX = "vxr"  # the SoftGate agent's routing-domain namespaces
TRUNK_POLL_S = 0.2


def switch_bridge(vlan: int) -> str:
    return f"vlan{vlan}"


def switch_port(node: str, vlan: int) -> str:
    """The switch's port toward a node, e.g. hv1-3000 (at most 15 characters)."""
    return f"{node}-{vlan}"


def host_port(vlan: int) -> str:
    """The hypervisor's end, in the place of modifyvlan.sh's `<pif>.<vlan>`."""
    return f"vl{vlan}"


def trunk_port(vlan: int) -> str:
    """The SoftGate's end, in the routing domain, in the place of `<trunk>.<vlan>`."""
    return f"sw{vlan}"


class VlanSwitch:
    """The switch node with one bridge per VLAN. Thread-safe: the KVM agent (in the
    stand-in's job threads) and the trunk (its own thread) both plug ports."""

    def __init__(self, fabric: Fabric, node: str = SWITCH_NODE) -> None:
        self.fabric = fabric
        self.node = node
        self._lock = threading.Lock()
        self._vlans: set[int] = set()
        self._made = False

    def connect(self, vlan: int, port: str, peer: str, peer_port: str,
                peer_netns: str) -> None:
        """A veth from the VLAN's bridge (`port`) to `peer_port` in `peer_netns` (a
        namespace name or path); the peer end is left down and unplugged."""
        with self._lock:
            self._ensure_vlan(vlan)
            run(["ip", "-n", self.fabric.ns(self.node), "link", "add", port, "type", "veth",
                 "peer", "name", peer_port, "netns", peer_netns])
            self.fabric.ip(self.node, "link", "set", port, "master", switch_bridge(vlan), "up")

    def disconnect(self, port: str) -> None:
        """Deletes the switch's end of a veth (the peer goes with it); no error if gone."""
        with self._lock:
            if self._made:
                run(["ip", "-n", self.fabric.ns(self.node), "link", "del", port], check=False)

    def _ensure_vlan(self, vlan: int) -> None:
        if not self._made:
            self.fabric.add_node(self.node, router=False)
            self._made = True
        if vlan not in self._vlans:
            bridge = switch_bridge(vlan)
            self.fabric.ip_batch(self.node, [
                f"link add {bridge} type bridge stp_state 0 mcast_snooping 0",
                f"link set {bridge} up"])
            self._vlans.add(vlan)


# --- the SoftGates' trunks ---------------------------------------------------------------


@dataclass(frozen=True)
class DomainLinks:
    """What a routing-domain namespace holds that the trunk cares about."""

    bridges: dict[int, str]  # VLAN -> its segment bridge's name (vxl<vlan>)
    ports: dict[int, str]  # VLAN -> the master of sw<vlan> ("" when it has none)


def domain_links(links: Iterable[Mapping[str, object]]) -> DomainLinks:
    """From `ip -j link show` of a routing domain."""
    bridges: dict[int, str] = {}
    ports: dict[int, str] = {}
    for link in links:
        name = str(link.get("ifname", ""))
        if (match := SEGMENT_BRIDGE_RE.fullmatch(name)) is not None:
            bridges[int(match.group(1))] = name
        elif (match := TRUNK_PORT_RE.fullmatch(name)) is not None:
            ports[int(match.group(1))] = str(link.get("master", ""))
    return DomainLinks(bridges, ports)


class SoftGateTrunk:
    """Keeps every SoftGate's routing domains plugged into the switch: `sw<vlan>` in each
    `vxl<vlan>` bridge, and no `sw<vlan>` whose bridge is gone. Reconciles on a poll
    (`reconcile` once, or `running` in the background), as a cable that is always in."""

    def __init__(self, fabric: Fabric, switch: VlanSwitch, softgates: Sequence[str]) -> None:
        self.fabric = fabric
        self.switch = switch
        self.softgates = tuple(softgates)
        self.errors: list[str] = []  # the last reconcile's failures, for a test to show

    def domain_path(self, softgate: str, netns: str) -> str:
        """A routing domain's namespace as seen from the root mount namespace: the agent
        makes it inside zebra's private mount namespace (fabric.start_zebra)."""
        return f"{self.fabric.private_netns_dir(softgate)}/{netns}"

    def domains(self, softgate: str) -> list[str]:
        names = os.listdir(self.fabric.private_netns_dir(softgate))
        return sorted(name for name in names if name.startswith(DOMAIN_PREFIX))

    def in_domain(self, softgate: str, netns: str, *argv: str, check: bool = True) -> str:
        return run(["nsenter", f"--net={self.domain_path(softgate, netns)}", *argv],
                   check=check).stdout

    def reconcile(self) -> None:
        errors = []
        for softgate in self.softgates:
            try:
                for netns in self.domains(softgate):
                    self._reconcile_domain(softgate, netns)
            # A namespace or link going away under us (the agent, or the fabric going
            # down): the next round sees what is there then.
            except (FabricError, OSError, ValueError) as error:
                errors.append(f"{softgate}: {error}")
        self.errors = errors

    def _reconcile_domain(self, softgate: str, netns: str) -> None:
        found = domain_links(json.loads(self.in_domain(softgate, netns, "ip", "-j", "link",
                                                       "show") or "[]"))
        for vlan in sorted(set(found.ports) - set(found.bridges)):
            self.in_domain(softgate, netns, "ip", "link", "del", trunk_port(vlan), check=False)
        for vlan, bridge in sorted(found.bridges.items()):
            master = found.ports.get(vlan)
            if master == bridge:
                continue
            if master is None:
                # A new domain, or one made anew: the old pair died with the old namespace.
                self.switch.disconnect(switch_port(softgate, vlan))
                self.switch.connect(vlan, switch_port(softgate, vlan), softgate,
                                    trunk_port(vlan), self.domain_path(softgate, netns))
            self.in_domain(softgate, netns, "ip", "link", "set", trunk_port(vlan), "master",
                           bridge, "up")

    @contextmanager
    def running(self, interval: float = TRUNK_POLL_S) -> Iterator[SoftGateTrunk]:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                self.reconcile()

        thread = threading.Thread(target=loop, name="softgate-trunk", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
