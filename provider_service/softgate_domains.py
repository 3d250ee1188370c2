"""The routing domains a SoftGate serves, and the names of their kernel objects.

Shared by the three sections of softgate.json (softgate_state.py: links,
softgate_netfilter.py, softgate_dhcp.py), so that every section names a namespace, a
bridge or a network the same way. Names follow docs/softgate-state.md; they all start
with `vx`, fit 15 characters, and are the only objects the agent garbage-collects.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

from provider_service import tenancy
from provider_service.frr_intent import vrf_name

# MAC of every guest bridge: FRR's advertise-default-gw announces the gateway with it,
# and the simulator's fabric uses the same (simulator/evpn_fabric.GATEWAY_MAC).
GATEWAY_MAC: Final = "02:00:5e:00:00:01"
UPLINK_PREFIX: Final = "vxp"  # + L3VNI: the SoftGate side of a domain's uplink veth
UPLINK_DOMAIN_SIDE: Final = "vxpub"  # the same name in every domain's namespace
BRIDGE_PREFIX: Final = "vxb"  # + VNI (L2VNI or L3VNI)
VXLAN_PREFIX: Final = "vxv"  # + VNI
VLAN_BRIDGE_PREFIX: Final = "vxl"  # + VLAN (VLAN hand-off)
# The strictest id the agent accepts (agent/netfilter_state._ID_RE; the DHCP parser's is
# wider). Our own ids (validation._ID_RE) may also hold '_', '.', ':' and 64 characters.
_AGENT_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}")


@dataclass(frozen=True)
class Domain:
    """A routing domain: one VPC with its live tiers, or one isolated network."""

    l3vni: int
    kind: str  # "vpc" or "isolated"
    mode: str  # "natted" or "routed"
    vpc_id: str | None
    networks: tuple[tenancy.NetworkView, ...]  # sorted by id; no tombstoned tiers

    @property
    def netns(self) -> str:
        return vrf_name(self.l3vni)

    @property
    def network_ids(self) -> frozenset[str]:
        return frozenset(network.id for network in self.networks)


def softgate_domains(networks: list[tenancy.NetworkView],
                     vpcs: list[tenancy.VpcView]) -> list[Domain]:
    """Every VPC (also one without tiers: FRR has its VRF) and every network outside a VPC,
    sorted by namespace name. A tier CloudStack destroyed (tenancy.TOMBSTONE) is left out:
    it keeps its numbers only so that a re-implement gets them back."""
    live = [network for network in networks if network.state != tenancy.TOMBSTONE]
    tiers: dict[str, list[tenancy.NetworkView]] = {vpc.id: [] for vpc in vpcs}
    domains = []
    for network in live:
        if network.vpc_id is None:
            domains.append(Domain(network.l3vni, "isolated", network.mode, None, (network,)))
        else:
            tiers.setdefault(network.vpc_id, []).append(network)
    domains += [Domain(vpc.l3vni, "vpc", vpc.mode, vpc.id,
                       tuple(sorted(tiers[vpc.id], key=lambda n: n.id))) for vpc in vpcs]
    return sorted(domains, key=lambda domain: domain.netns)


def uplink_name(l3vni: int) -> str:
    return f"{UPLINK_PREFIX}{l3vni}"


def bridge_name(network: tenancy.NetworkView) -> str:
    """The bridge that carries a guest network's gateway address."""
    if network.segment_kind == "vlan":
        return f"{VLAN_BRIDGE_PREFIX}{network.segment_id}"
    return vni_bridge_name(network.segment_id)


def vni_bridge_name(vni: int) -> str:
    return f"{BRIDGE_PREFIX}{vni}"


def vxlan_name(vni: int) -> str:
    return f"{VXLAN_PREFIX}{vni}"


def agent_id(object_id: str) -> str:
    """An id as the agent accepts it: ours when it fits, else a stable stand-in.

    CloudStack's ids (numbers, UUIDs) always fit; an id only the API could have accepted
    ('net_1', 'a.b', 64 characters) maps to 'x' + 39 hex digits of its SHA-256, so one odd
    id cannot make the agent refuse a whole routing domain.
    """
    if _AGENT_ID_RE.fullmatch(object_id):
        return object_id
    return "x" + hashlib.sha256(object_id.encode()).hexdigest()[:39]
