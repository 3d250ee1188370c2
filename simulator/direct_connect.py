"""A bare-metal host behind a VTEP leaf's port, in a VLAN of that port.

On a real site the host's NIC (or its `<nic>.<vlan>`) is cabled to the leaf's switch
port, and the leaf has the port's 802.1Q sub-interface `<port>.<vlan>`, which its vxgate
agent puts into the VNI's bridge when the VLAN is attached (agent/leaf_ports.py). This
kernel has no 802.1Q (`ip link add ... type vlan`: "Unknown device type", lab FINDINGS
§0), so a port's VLAN is modelled as its own veth, as simulator/vlan_switch.py models
a transport VLAN: the host's `eth0` to the leaf's `<port>.<vlan>`. Until the agent puts
that end in a bridge it is a bare link with no address: the host reaches nothing.

The host has a static address in the network's CIDR and a default route via the
network's gateway, as an operator would configure a server joining the network.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.fabric import Fabric

HOST_NIC = "eth0"
MTU = 1500  # the overlay's: the VXLAN devices carry 1500-byte frames


@dataclass(frozen=True)
class BareMetal:
    node: str
    leaf: str
    port: str
    vlan: int
    address: str  # "a.b.c.d/len"
    gateway: str

    @property
    def leaf_member(self) -> str:
        """The leaf's end: the name the port's VLAN sub-interface would have."""
        return f"{self.port}.{self.vlan}"

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


def plug(fabric: Fabric, host: BareMetal) -> None:
    """The host's namespace and its cable to the leaf's port VLAN (not yet attached)."""
    fabric.add_node(host.node, router=False)
    fabric.veth(host.node, HOST_NIC, host.leaf, host.leaf_member, mtu=MTU)
    fabric.ip(host.node, "addr", "add", host.address, "dev", HOST_NIC)
    fabric.ip(host.node, "route", "add", "default", "via", host.gateway)


def ping(fabric: Fabric, host: BareMetal, address: str) -> bool:
    return fabric.exec(host.node, "ping", "-c1", "-W1", address,
                       check=False).returncode == 0
