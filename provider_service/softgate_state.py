"""softgate.json: what the agent on a SoftGate applies besides frr.conf, as plain data.

`compile_softgate_state` reads the desired state of the SoftGate's zone (a SoftGate
serves every network and VPC of its zone, as in frr_intent) and returns the document of
docs/softgate-state.md: `links` (namespaces, veths, bridges, VXLAN devices, routes),
`netfilter` (softgate_netfilter.py) and `dhcp` (softgate_dhcp.py); a links domain's
`sync` names the peer SoftGate to share connection tracking with (softgate_sync.py).
Everything is sorted, so the same state always renders the same text, and so the same
generation.

A routing domain is a VPC or an isolated network (softgate_domains.py); its namespace is
its FRR VRF name, and whether it has an L3VNI device is decided by frr_intent's own rule
on frr_intent's own input, so links and frr.conf can never disagree about it.
"""

from __future__ import annotations

import json
from typing import Any, Final

from sqlalchemy.orm import Session

from provider_service import frr_intent, tenancy
from provider_service.models import Device
from provider_service.softgate_dhcp import compile_dhcp
from provider_service.softgate_domains import (
    GATEWAY_MAC,
    UPLINK_DOMAIN_SIDE,
    Domain,
    agent_id,
    bridge_name,
    softgate_domains,
    uplink_name,
    vni_bridge_name,
    vxlan_name,
)
from provider_service.softgate_netfilter import (
    ZoneRules,
    compile_domain,
    domain_public_ips,
    load_zone_rules,
)
from provider_service.softgate_sync import SyncPair, sync_pair
from provider_service.sql import Sql

FORMAT: Final = 1
Json = dict[str, Any]


def compile_softgate_state(session: Session, device: Device) -> dict[str, Any]:
    """The softgate.json document of a device of role `softgate`."""
    assert device.role == "softgate", "only SoftGates apply softgate.json"
    zone_id, sql = device.zone_id, Sql(session)
    networks = tenancy.network_views(sql, zone_id=zone_id)
    vpcs = tenancy.vpc_views(sql, zone_id=zone_id)
    domains = softgate_domains(networks, vpcs)
    rules = load_zone_rules(session, zone_id)
    # frr_intent's rule on frr_intent's input (tombstoned tiers included), so an L3VNI
    # device exists exactly when frr.conf has the VRF's VNI.
    evpn = frr_intent.evpn_domains(networks, vpcs)
    pair = sync_pair(session, device)
    return {
        "format": FORMAT,
        "links": {
            "vtep_address": device.vtep_address,
            "gateway_mac": GATEWAY_MAC,
            "blackholes": frr_intent.public_pools(session, zone_id),
            "domains": [_link_domain(domain, evpn[domain.l3vni], rules, pair)
                        for domain in domains],
        },
        "netfilter": {"domains": [compile_domain(domain, rules) for domain in domains]},
        "dhcp": compile_dhcp(session, zone_id, domains),
    }


def render_softgate_state(state: dict[str, Any]) -> str:
    """The document as text: keys sorted, one item per line (readable diffs), newline."""
    return json.dumps(state, sort_keys=True, indent=1) + "\n"


# --- links -----------------------------------------------------------------------------


def _link_domain(domain: Domain, evpn: bool, rules: ZoneRules, pair: SyncPair | None
                 ) -> Json:
    # Routed into the domain through its uplink: each public address it holds, and the
    # guest CIDRs of its ROUTED networks (the same ones frr_intent announces upstream).
    routes = [f"{address}/32" for address in domain_public_ips(domain, rules)]
    routes += [network.cidr for network in domain.networks if network.mode == "routed"]
    routes6 = [network.ip6_cidr for network in domain.networks if network.ip6_cidr]
    return {
        "netns": domain.netns,
        "uplink": {"root": uplink_name(domain.l3vni), "domain": UPLINK_DOMAIN_SIDE},
        "l3vni": {"vni": domain.l3vni, "bridge": vni_bridge_name(domain.l3vni),
                  "vxlan": vxlan_name(domain.l3vni)} if evpn else None,
        "routes": _prefixes(routes),
        "routes6": _prefixes(routes6),
        "segments": sorted((_segment(network) for network in domain.networks),
                           key=lambda segment: str(segment["bridge"])),
        # Conntrack sync with the zone's other SoftGate, over the domain's L3VNI.
        "sync": {"address": pair.address, "peer": pair.peer}
        if pair is not None and evpn else None,
    }


def _segment(network: tenancy.NetworkView) -> Json:
    vni = network.segment_id if network.segment_kind == "vni" else None
    return {
        "network": agent_id(network.id),
        "bridge": bridge_name(network),
        "vxlan": None if vni is None else vxlan_name(vni),
        "vni": vni,
        "vlan": network.segment_id if network.segment_kind == "vlan" else None,
        "gateway": _interface(network.gateway, network.cidr),
        "gateway6": _interface(network.ip6_gateway, network.ip6_cidr)
        if network.ip6_cidr else None,
    }


def _prefixes(cidrs: list[str]) -> list[str]:
    """Sorted by address, each once (the common single item is not parsed at all)."""
    return sorted(set(cidrs), key=frr_intent.prefix_key) if len(cidrs) > 1 else cidrs


def _interface(address: str, cidr: str) -> str:
    """'10.1.0.1/24': the gateway address with its network's prefix length (the stored
    CIDR is normalised: its text after '/' is the length)."""
    return f"{address}/{cidr.rsplit('/', 1)[1]}"
