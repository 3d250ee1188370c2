"""The desired states behind the FRR goldens (tests/golden/frr/<case>.conf).

Each case declares a zone's inventory and tenants through the API and names the device
whose rendered frr.conf is the golden. Public and upstream addresses are RFC 5737.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator.local_service import Request

ZONE = "1"
VXLAN, VLAN = "200", "300"


def _zone(request: Request) -> None:
    request("PUT", f"/v1/zones/{ZONE}", {"name": "golden", "rt_asn": 65000,
                                          "asn_range": "4200000000-4200000999"})
    request("PUT", f"/v1/physical-networks/{VXLAN}", {"zone_id": ZONE, "name": "vxlan"})


def _device(request: Request, name: str, role: str, loopback: str,
            uplinks: tuple[str, ...] = ("uplink",), **extra: Any) -> None:
    request("PUT", f"/v1/devices/{name}", {
        "zone_id": ZONE, "role": role, "loopback": loopback,
        "uplinks": [{"interface": interface} for interface in uplinks], **extra,
    })


def _network(request: Request, network_id: str, cidr: str, physnet: str = VXLAN,
             **extra: Any) -> None:
    gateway = cidr.rsplit(".", 1)[0] + ".1"
    request("PUT", f"/v1/networks/{network_id}", {
        "zone_id": ZONE, "physical_network_id": physnet, "cidr": cidr, "gateway": gateway,
        **extra,
    })


def _vpc(request: Request, vpc_id: str, cidr: str, physnet: str = VXLAN) -> None:
    request("PUT", f"/v1/vpcs/{vpc_id}", {"zone_id": ZONE, "cidr": cidr,
                                          "physical_network_id": physnet})


def _public_ip(request: Request, address: str, **owner: str) -> None:
    request("PUT", f"/v1/zones/{ZONE}/public-ips/{address}",
            {"cidr": "203.0.113.0/24", "gateway": "203.0.113.1", "source_nat": True, **owner})


def _tenants(request: Request) -> None:
    """Networks every case shares, so the hypervisor and spine see a populated zone."""
    _network(request, "net1", "10.100.0.0/24")
    _network(request, "net2", "10.100.1.0/24")


def hypervisor(request: Request) -> str:
    _zone(request)
    _tenants(request)
    _device(request, "hv1", "hypervisor", "10.255.1.1")
    return "hv1"


def spine(request: Request) -> str:
    _zone(request)
    _tenants(request)
    _device(request, "spine1", "spine", "10.255.0.1", ("swp1", "swp2", "swp3"), asn=65000)
    return "spine1"


def leaf(request: Request) -> str:
    _zone(request)
    _tenants(request)
    _device(request, "leaf1", "leaf", "10.255.3.1", ("swp51", "swp52", "swp1", "swp2"))
    return "leaf1"


def leaf_direct_connect(request: Request) -> str:
    _zone(request)
    _tenants(request)
    _device(request, "leaf1", "leaf", "10.255.3.1", ("swp51", "swp52"), vtep=True)
    request("PUT", "/v1/devices/leaf1/direct-connects/swp5/100", {"network_id": "net1"})
    request("PUT", "/v1/devices/leaf1/direct-connects/swp5/200", {"network_id": "net2"})
    request("PUT", "/v1/devices/leaf1/direct-connects/swp6/100", {"network_id": "net2"})
    return "leaf1"


def softgate_isolated(request: Request) -> str:
    _zone(request)
    _network(request, "net1", "10.100.0.0/24")
    _public_ip(request, "203.0.113.10", network_id="net1")
    _device(request, "sg1", "softgate", "10.255.2.1")
    return "sg1"


def softgate_vpcs(request: Request) -> str:
    """Two VPCs with the same tier CIDRs: one VRF each keeps them apart."""
    _zone(request)
    for vpc in ("vpc1", "vpc2"):
        _vpc(request, vpc, "10.1.0.0/16")
        _network(request, f"{vpc}-web", "10.1.1.0/24", vpc_id=vpc)
        _network(request, f"{vpc}-db", "10.1.2.0/24", vpc_id=vpc)
    _public_ip(request, "203.0.113.20", vpc_id="vpc1")
    _public_ip(request, "203.0.113.21", vpc_id="vpc2")
    _device(request, "sg1", "softgate", "10.255.2.1", ("uplink1", "uplink2"))
    return "sg1"


def softgate_routed_upstream(request: Request) -> str:
    _zone(request)
    _network(request, "net1", "10.100.0.0/24")
    _network(request, "routed1", "198.18.10.0/24", mode="routed")
    _public_ip(request, "203.0.113.10", network_id="net1")
    _device(request, "sg1", "softgate", "10.255.2.1", upstream_peers=[
        {"address": "198.51.100.1", "remote_asn": 64496},
        {"address": "198.51.100.3", "remote_asn": 64497, "bfd": False},
    ])
    return "sg1"


def softgate_standby(request: Request) -> str:
    """The standby of a SoftGate pair: the active one's routes, AS path prepended."""
    _zone(request)
    _network(request, "net1", "10.100.0.0/24")
    _public_ip(request, "203.0.113.10", network_id="net1")
    _device(request, "sg1", "softgate", "10.255.2.1",
            upstream_peers=[{"address": "198.51.100.1", "remote_asn": 64496}])
    _device(request, "sg2", "softgate", "10.255.2.2", standby=True,
            upstream_peers=[{"address": "198.51.100.3", "remote_asn": 64496}])
    return "sg2"


def softgate_active(request: Request) -> str:
    """The active SoftGate of a pair, on two fabric ports: its upstream announcements wait
    for a route learned on either of them."""
    _zone(request)
    _network(request, "net1", "10.100.0.0/24")
    _public_ip(request, "203.0.113.10", network_id="net1")
    _device(request, "sg1", "softgate", "10.255.2.1", ("uplink1", "uplink2"),
            upstream_peers=[{"address": "198.51.100.1", "remote_asn": 64496}])
    _device(request, "sg2", "softgate", "10.255.2.2", ("uplink1", "uplink2"), standby=True,
            upstream_peers=[{"address": "198.51.100.3", "remote_asn": 64496}])
    return "sg1"


def softgate_vlan_handoff(request: Request) -> str:
    """An 802.1Q transport: no fabric BGP, no EVPN; routing domains and upstream only."""
    _zone(request)
    request("PUT", f"/v1/physical-networks/{VLAN}", {"zone_id": ZONE, "name": "vlan",
                                                     "isolation_method": "vlan",
                                                     "l3vni_range": "6000000-6999999"})
    _network(request, "net1", "10.100.0.0/24", physnet=VLAN)
    _vpc(request, "vpc1", "10.1.0.0/16", physnet=VLAN)
    _network(request, "vpc1-web", "10.1.1.0/24", physnet=VLAN, vpc_id="vpc1")
    _public_ip(request, "203.0.113.10", network_id="net1")
    _device(request, "sg1", "softgate", "10.255.2.1", (),
            upstream_peers=[{"address": "198.51.100.1", "remote_asn": 64496}])
    return "sg1"


def softgate_kernel_vrf(request: Request) -> str:
    _zone(request)
    _network(request, "net1", "10.100.0.0/24")
    _vpc(request, "vpc1", "10.1.0.0/16")
    _network(request, "vpc1-web", "10.1.1.0/24", vpc_id="vpc1")
    _device(request, "sg1", "softgate", "10.255.2.1", vrf_backend="vrf")
    return "sg1"


def nothing_assigned(request: Request) -> str:
    """A hypervisor registered before its uplinks are cabled and before any network."""
    _zone(request)
    _device(request, "hv9", "hypervisor", "10.255.1.9", ())
    return "hv9"


CASES: dict[str, Callable[[Request], str]] = {
    function.__name__: function
    for function in (hypervisor, spine, leaf, leaf_direct_connect, softgate_isolated,
                     softgate_vpcs, softgate_routed_upstream, softgate_standby,
                     softgate_active, softgate_vlan_handoff,
                     softgate_kernel_vrf, nothing_assigned)
}
