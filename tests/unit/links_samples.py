"""Desired `links` JSON for the links tests and bench: n domains of k segments each."""

from __future__ import annotations

from typing import Any

GATEWAY_MAC = "02:00:5e:00:00:01"
VTEP = "10.255.2.1"


def domain_json(index: int, segments: int = 2, *, l3vni: bool = True) -> dict[str, Any]:
    """Domain `index` (1-based): L3VNI 5000000+index*10, segment VNIs right after it,
    guest subnets 10.<index>.<k>.0/24 and 2001:db8:<index>:<k>::/64."""
    vni = 5_000_000 + index * 10
    number = vni if l3vni else 4000 + index
    hi, lo = divmod(index, 256)
    return {
        "netns": f"vxr{number}",
        "uplink": {"root": f"vxp{number}", "domain": "vxpub"},
        "l3vni": {"vni": vni, "bridge": f"vxb{vni}", "vxlan": f"vxv{vni}"} if l3vni else None,
        "routes": [f"198.18.{index % 256}.0/24"] if index < 256 else [],
        "routes6": [f"2001:db8:{index:x}::/48"],
        "segments": [segment_json(index, k, vni + 1 + k, hi, lo) for k in range(segments)],
    }


def segment_json(index: int, k: int, vni: int, hi: int, lo: int) -> dict[str, Any]:
    return {"network": f"net-{index}-{k}", "bridge": f"vxb{vni}", "vxlan": f"vxv{vni}",
            "vni": vni, "vlan": None, "gateway": f"10.{hi * 16 + k}.{lo}.1/24",
            "gateway6": f"2001:db8:{index:x}:{k}::1/64"}


def vlan_segment_json(network: str, vlan: int, gateway: str) -> dict[str, Any]:
    return {"network": network, "bridge": f"vxl{vlan}", "vxlan": None, "vni": None,
            "vlan": vlan, "gateway": gateway, "gateway6": None}


def links_json(domains: int, segments: int = 2, *, blackholes: tuple[str, ...] = (
        "203.0.113.0/24",)) -> dict[str, Any]:
    return {"vtep_address": VTEP, "gateway_mac": GATEWAY_MAC, "blackholes": list(blackholes),
            "domains": [domain_json(i, segments) for i in range(1, domains + 1)]}
