"""What a network leaves on the fabric, as the kernel and FRR show it: what a deleted
network must no longer have anywhere."""

from __future__ import annotations

import re

from simulator.fabric import Fabric


def softgate_namespaces(fabric: Fabric, node: str = "sg1") -> set[str]:
    """The routing-domain namespaces of a SoftGate (in its private /run/netns)."""
    return {entry.name for entry in fabric.private_netns_dir(node).iterdir()}


def evpn_vnis(fabric: Fabric, node: str) -> set[int]:
    """Every VNI (L2 and L3) the node's zebra has."""
    return {int(vni) for vni in fabric.vtysh_json(node, "show evpn vni json")}


def vrf_lines(fabric: Fabric, node: str) -> set[str]:
    """The VRFs the node's running FRR config names."""
    return set(re.findall(r"^vrf (\S+)$", fabric.vtysh(node, "show running-config"),
                          re.MULTILINE))


def bridges(fabric: Fabric, node: str) -> set[str]:
    """The bridges of a node's own namespace (a hypervisor's brvx-<VNI>)."""
    listing = fabric.ip(node, "-o", "link", "show", "type", "bridge")
    return {line.split(":")[1].strip().split("@")[0] for line in listing.splitlines()}


def dnsmasq_directories(fabric: Fabric, node: str = "sg1") -> set[str]:
    """The networks the SoftGate agent keeps dnsmasq files for (config, leases, pid)."""
    directory = fabric.node_dir(node) / "agent" / "dnsmasq"
    return {entry.name for entry in directory.iterdir()} if directory.is_dir() else set()


def nft_ruleset(fabric: Fabric, node: str = "sg1") -> str:
    """The nftables ruleset of the SoftGate's own namespace."""
    return str(fabric.exec(node, "nft", "list", "ruleset").stdout)
