"""Routing-domain state -> the contents of our three nft tables (pure).

Each table has a fixed skeleton (set declarations and chains that never change with
tenant data) and per-tenant data: set and map elements, plus one chain per VPC tier and
direction for its ACL (an ACL is an ordered first-match list, which no set expresses;
the chain is reached through a verdict map, so adding a tier is still elements plus one
chain). netfilter_render turns this into nft text: whole, or as the difference between
two of them.

  inet vxgate_fw  filter: ingress firewall (before DNAT), forwarding, egress, ACLs,
                  and IPv6 (routed, never NATed: fixed chains, guest prefixes in sets)
  ip vxgate_nat   source NAT, static NAT, port forwarding
  ip vxgate_lb    load balancers (DNAT through a slot map, see netfilter_lb)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from agent import netfilter_boxes as boxes
from agent import netfilter_lb, uplink
from agent.conntrackd import SYNC_PORT
from agent.links_state import SYNC_NET
from agent.netfilter_state import (
    ANY_NET,
    AclItem,
    FirewallRule,
    GuestNetwork,
    IPv4,
    Match,
    Net4,
    Net6,
    RoutingDomain,
)

FW: Final = "inet vxgate_fw"
NAT: Final = "ip vxgate_nat"
LB: Final = "ip vxgate_lb"
_PROTO_NUMBERS: Final = {"tcp": 6, "udp": 17}
_PROTO_NAMES: Final = {6: "tcp", 17: "udp"}
_ALL_PORTS: Final = (0, 65535)
_ALL_ICMP: Final = (0, 255)

FW_SKELETON: Final = """\
	set public_ifs { type ifname; }
	# Public interfaces of an isolated network: every new inbound connection needs an
	# ingress rule (upstream routes only our public IPs, or in ROUTED mode our guest
	# networks, to us). Empty for a VPC, whose tiers' ACLs decide instead.
	set guarded_ifs { type ifname; }
	set routed { type ipv4_addr; flags interval; }
	# Ingress allow-lists: daddr . proto . saddr . dport / daddr . saddr . type . code /
	# daddr . saddr (protocol all). Matched before DNAT, on the public address.
	set in_l4 { type ipv4_addr . inet_proto . ipv4_addr . inet_service; flags interval; }
	set in_icmp { type ipv4_addr . ipv4_addr . icmp_type . icmp_code; flags interval; }
	set in_any { type ipv4_addr . ipv4_addr; flags interval; }
	# Egress: a network's default verdict, and the opposite one for its listed rules.
	map egress_default { type ipv4_addr : verdict; flags interval; }
	map egress_listed { type ipv4_addr : verdict; flags interval; }
	set out_l4 { type ipv4_addr . inet_proto . ipv4_addr . inet_service; flags interval; }
	set out_icmp { type ipv4_addr . ipv4_addr . icmp_type . icmp_code; flags interval; }
	set out_any { type ipv4_addr . ipv4_addr; flags interval; }
	# VPC tiers: tier CIDR -> jump to its ACL chain (allow = return, deny = drop).
	map acl_in { type ipv4_addr : verdict; flags interval; }
	map acl_out { type ipv4_addr : verdict; flags interval; }
	# IPv6: the guest prefixes (no new connection in from the uplink), and those whose
	# network's egress default is deny.
	set guest6 { type ipv6_addr; flags interval; }
	set egress_denied6 { type ipv6_addr; flags interval; }
@CHAINS@
	chain ingress_filter {
		type filter hook prerouting priority mangle; policy accept;
		iifname != @public_ifs accept
		meta nfproto != ipv4 accept
		ct state established,related accept
		iifname @guarded_ifs jump ingress_rules
	}

	chain ingress_rules {
		ip daddr . meta l4proto . ip saddr . th dport @in_l4 accept
		ip daddr . ip saddr . icmp type . icmp code @in_icmp accept
		ip daddr . ip saddr @in_any accept
		drop
	}

	chain input_filter {
		type filter hook input priority filter; policy accept;
		# Conntrack sync (agent.conntrackd) only from a sync address, and only on the way
		# the route back to it takes (the L3VNI): a guest cannot forge connection state.
		udp dport @SYNC_PORT@ ip saddr != @SYNC_NET@ drop
		udp dport @SYNC_PORT@ fib saddr . iif oif missing drop
		iifname != @public_ifs accept
		ct state established,related accept
		meta l4proto icmp accept
		# Neighbour discovery with the uplink's fe80:: next hop, and IPv6 ping.
		meta l4proto ipv6-icmp accept
		drop
	}

	chain forwarding {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct state invalid drop
		meta nfproto ipv6 jump forward6
		iifname @public_ifs jump from_public
		iifname != @public_ifs jump from_guest
	}

	# IPv6 is routed, never NATed. Firewall rules and ACL items are IPv4 in the contract
	# (no IPv6 rules yet), so each guest prefix gets the default policy: nothing new in
	# from the uplink, egress as its network's egress_default_allow says, nothing between
	# VPC tiers (an ACL's terminal deny). ICMPv6 errors pass both ways (RFC 4890 4.3.1:
	# path MTU discovery lives on packet-too-big); ct related already passes most.
	chain forward6 {
		icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, \
parameter-problem } accept
		iifname @public_ifs jump from_public6
		oifname @public_ifs jump to_public6
		drop
	}

	chain from_public6 {
		ip6 daddr @guest6 icmpv6 type echo-request accept
		drop
	}

	chain to_public6 {
		ip6 saddr != @guest6 drop
		ip6 saddr @egress_denied6 drop
		accept
	}

	chain from_public {
		ct status & dnat == 0 ip daddr != @routed drop
		ip daddr vmap @acl_in
		accept
	}

	chain from_guest {
		ip saddr vmap @acl_out
		oifname @public_ifs ip saddr . meta l4proto . ip daddr . th dport @out_l4 \
ip saddr vmap @egress_listed
		oifname @public_ifs ip saddr . ip daddr . icmp type . icmp code @out_icmp \
ip saddr vmap @egress_listed
		oifname @public_ifs ip saddr . ip daddr @out_any ip saddr vmap @egress_listed
		oifname @public_ifs ip saddr vmap @egress_default
		ip daddr vmap @acl_in
		accept
	}
""".replace("@SYNC_PORT@", str(SYNC_PORT)).replace("@SYNC_NET@", str(SYNC_NET))

NAT_SKELETON: Final = """\
	set public_ifs { type ifname; }
	# Single ports, and port ranges whose private ports differ (one element per port).
	map pf_port { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
	# Port ranges forwarded to the same port numbers: one element, ports kept.
	map pf_range { type ipv4_addr . inet_proto . inet_service : ipv4_addr; flags interval; }
	map static_in { type ipv4_addr : ipv4_addr; }
	map static_out { type ipv4_addr : ipv4_addr; }
	map source_nat { type ipv4_addr : ipv4_addr; flags interval; }
@CHAINS@
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname != @public_ifs accept
		meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @pf_port
		meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @pf_range
		dnat ip to ip daddr map @static_in
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname != @public_ifs accept
		snat ip to ip saddr map @static_out
		snat ip to ip saddr map @source_nat
	}
"""

# Before vxgate_nat's DNAT: the first NAT chain that maps a connection wins.
LB_SKELETON: Final = f"""\
	set public_ifs {{ type ifname; }}
	# VIPs whose algorithm is source: the slot is a hash of the client address.
	set hashed {{ type ipv4_addr . inet_proto . inet_service; }}
	map slots {{
		typeof ip daddr . meta l4proto . th dport . numgen inc mod {netfilter_lb.SLOTS} : \
ip daddr . th dport
	}}
@CHAINS@
	chain prerouting {{
		type nat hook prerouting priority dstnat - 10; policy accept;
		iifname != @public_ifs accept
		meta l4proto != {{ tcp, udp }} accept
		ip daddr . meta l4proto . th dport @hashed dnat ip to ip daddr . meta l4proto \
. th dport . jhash ip saddr mod {netfilter_lb.SLOTS} map @slots
		dnat ip to ip daddr . meta l4proto . th dport . numgen inc mod \
{netfilter_lb.SLOTS} map @slots
	}}
"""

SKELETONS: Final = {FW: FW_SKELETON, NAT: NAT_SKELETON, LB: LB_SKELETON}


@dataclass(frozen=True)
class TableData:
    """The tenant data of one table: elements per set/map (key -> value; None for a
    set) and the per-tenant chains (name -> rules, in order)."""

    name: str
    elements: dict[str, dict[str, str | None]]
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def skeleton(self) -> str:
        return SKELETONS[self.name]


def compile_domain(domain: RoutingDomain) -> tuple[TableData, ...]:
    return (_fw_table(domain), _nat_table(domain), _lb_table(domain))


def _new(name: str) -> TableData:
    declared = [line.split()[1] for line in SKELETONS[name].splitlines()
                if line.strip().startswith(("set ", "map "))]
    return TableData(name, {set_name: {} for set_name in declared})


# ---------------------------------------------------------------- text of values

def _ifname(name: str) -> str:
    return f'"{name}"'  # validated: letters, digits, '_', '.', '-'


def _net(net: Net4) -> str:
    return str(net.network_address) if net.prefixlen == 32 else str(net)


def _ip_range(low: int, high: int) -> str:
    nets = list(ipaddress.summarize_address_range(IPv4(low), IPv4(high)))
    return _net(nets[0]) if len(nets) == 1 else f"{IPv4(low)}-{IPv4(high)}"


def _range(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def _span(net: Net4) -> tuple[int, int]:
    return int(net.network_address), int(net.broadcast_address)


# ---------------------------------------------------------------- inet vxgate_fw

def _fw_table(domain: RoutingDomain) -> TableData:
    table = _new(FW)
    table.elements["public_ifs"][_ifname(domain.public_interface)] = None
    if domain.kind == "isolated":
        table.elements["guarded_ifs"][_ifname(domain.public_interface)] = None
    if not domain.natted:
        for network in domain.networks:
            table.elements["routed"][_net(network.cidr)] = None
    by_id = {n.id: n for n in domain.networks}
    ingress = [r for r in domain.firewall_rules if r.direction == "ingress"]
    # NAT: a public IP. ROUTED: guest addresses, within the rule's network.
    _add_boxes(table, "in", [_rule_boxes(r, r.destinations if domain.natted else
                                         _within(r.destinations, by_id[r.network].cidr),
                                         r.sources) for r in ingress])
    egress = [(r, by_id[r.network]) for r in domain.firewall_rules if r.direction == "egress"]
    _add_boxes(table, "out", [_rule_boxes(r, _within(r.sources, n.cidr), r.destinations)
                              for r, n in egress])
    for network in domain.networks:
        if network.acl is None:
            _egress_policy(table, network)
        else:
            _acl_chains(table, network, network.acl)
        if network.ipv6_cidr is not None:
            _ipv6_policy(table, network, network.ipv6_cidr)
    return table


def _ipv6_policy(table: TableData, network: GuestNetwork, prefix: Net6) -> None:
    """A guest prefix is in guest6 (ingress: deny new; egress: only guest sources leave)
    and, when its network denies egress by default, in egress_denied6. For a VPC tier as
    for an isolated network: its ACL items are IPv4 and say nothing about IPv6."""
    table.elements["guest6"][str(prefix)] = None
    if not network.egress_default_allow:
        table.elements["egress_denied6"][str(prefix)] = None


def _within(sources: tuple[Net4, ...], cidr: Net4) -> tuple[Net4, ...]:
    """Addresses clipped to a network (absent, i.e. anywhere, means the network)."""
    if sources == (ANY_NET,):
        return (cidr,)
    return tuple(s if s.subnet_of(cidr) else cidr for s in sources if s.overlaps(cidr))


BoxesByKind = dict[str, list[boxes.Box]]


def _rule_boxes(rule: FirewallRule, first: Iterable[Net4], second: Iterable[Net4]
                ) -> BoxesByKind:
    """A rule's boxes per set kind: l4 (addr . proto . addr . port), icmp, any."""
    pairs = [(_span(a), _span(b)) for a in first for b in second]
    match = rule.match
    if match.protocol in _PROTO_NUMBERS:
        proto = _PROTO_NUMBERS[str(match.protocol)]
        ports = (match.ports.start, match.ports.end) if match.ports else _ALL_PORTS
        return {"l4": [(a, (proto, proto), b, ports) for a, b in pairs]}
    if match.protocol == "icmp":
        return {"icmp": [(a, b, _icmp_span(match.icmp_type), _icmp_span(match.icmp_code))
                         for a, b in pairs]}
    return {"any": [(a, b) for a, b in pairs]}


def _icmp_span(value: int | None) -> tuple[int, int]:
    return _ALL_ICMP if value is None else (value, value)


def _add_boxes(table: TableData, prefix: str, per_rule: list[BoxesByKind]) -> None:
    for kind in ("l4", "icmp", "any"):
        union = [box for rule in per_rule for box in rule.get(kind, [])]
        for box in boxes.disjoint(union):
            table.elements[f"{prefix}_{kind}"][_box_text(kind, box)] = None


def _box_text(kind: str, box: boxes.Box) -> str:
    if kind == "l4":
        first, proto, second, ports = box
        return (f"{_ip_range(*first)} . {_PROTO_NAMES[proto[0]]} . {_ip_range(*second)}"
                f" . {_range(*ports)}")
    if kind == "icmp":
        first, second, icmp_type, code = box
        return f"{_ip_range(*first)} . {_ip_range(*second)} . {_range(*icmp_type)} . " \
               f"{_range(*code)}"
    return " . ".join(_ip_range(*dim) for dim in box)


def _egress_policy(table: TableData, network: GuestNetwork) -> None:
    default, listed = ("accept", "drop") if network.egress_default_allow else ("drop", "accept")
    table.elements["egress_default"][_net(network.cidr)] = default
    table.elements["egress_listed"][_net(network.cidr)] = listed


def acl_chain_name(direction: str, network_id: str) -> str:
    # Ids hold no '_' (netfilter_state), so mapping '-' to '_' stays one-to-one.
    return f"acl_{direction}_{network_id.replace('-', '_')}"


def _acl_chains(table: TableData, network: GuestNetwork, acl: tuple[AclItem, ...]) -> None:
    for direction, short in (("ingress", "in"), ("egress", "out")):
        name = acl_chain_name(short, network.id)
        rules = [_acl_rule(item) for item in acl if item.direction == direction]
        table.chains[name] = (*rules, "drop")  # CloudStack's terminal deny
        table.elements[f"acl_{short}"][_net(network.cidr)] = f"jump {name}"


def _acl_rule(item: AclItem) -> str:
    parts: list[str] = []
    if item.cidrs != (ANY_NET,):
        # Ingress items name sources; egress items name destinations (as the VR does).
        field_name = "ip saddr" if item.direction == "ingress" else "ip daddr"
        nets = ", ".join(_net(n) for n in ipaddress.collapse_addresses(item.cidrs))
        parts.append(f"{field_name} {{ {nets} }}")
    parts.extend(_match_text(item.match))
    parts.append("return" if item.action == "allow" else "drop")
    parts.append(f'comment "acl item {item.number}"')
    return " ".join(parts)


def _match_text(match: Match) -> list[str]:
    if match.protocol == "all":
        return []
    if isinstance(match.protocol, int):
        return [f"meta l4proto {match.protocol}"]
    parts = [f"meta l4proto {match.protocol}"]
    if match.ports is not None:
        parts.append(f"th dport {_range(match.ports.start, match.ports.end)}")
    if match.icmp_type is not None:
        parts.append(f"icmp type {match.icmp_type}")
    if match.icmp_code is not None:
        parts.append(f"icmp code {match.icmp_code}")
    return parts


# ---------------------------------------------------------------- ip vxgate_nat

def _nat_table(domain: RoutingDomain) -> TableData:
    table = _new(NAT)
    table.elements["public_ifs"][_ifname(domain.public_interface)] = None
    own = _own_source(domain)
    if own is not None:
        table.elements["source_nat"][f"{uplink.DOMAIN_V4.ip}"] = str(own)
    if not domain.natted:
        return table
    for network in domain.networks:
        snat_ip = network.source_nat_ip or domain.source_nat_ip
        if snat_ip is not None:
            table.elements["source_nat"][_net(network.cidr)] = str(snat_ip)
    for static in domain.static_nats:
        table.elements["static_in"][str(static.public_ip)] = str(static.private_ip)
        table.elements["static_out"][str(static.private_ip)] = str(static.public_ip)
    for pf in domain.port_forwards:
        pub, priv = pf.public_ports, pf.private_ports
        if pub.size > 1 and pub == priv:
            key = f"{pf.public_ip} . {pf.protocol} . {pub.start}-{pub.end}"
            table.elements["pf_range"][key] = str(pf.private_ip)
            continue
        # Shifted ranges: the kernel's NAT would pick any port of a target range, not
        # the one at the same offset, so each port gets its own element.
        for offset in range(pub.size):
            key = f"{pf.public_ip} . {pf.protocol} . {pub.start + offset}"
            table.elements["pf_port"][key] = f"{pf.private_ip} . {priv.start + offset}"
    return table


def _own_source(domain: RoutingDomain) -> IPv4 | None:
    """The address the domain's own traffic (dnsmasq forwarding a guest's query to
    CloudStack's resolvers) leaves with, instead of the uplink's 169.254.253.1 that every
    domain has: the source NAT address, or, in a ROUTED domain, which has none and whose
    guest prefixes are announced upstream, its first network's gateway."""
    if domain.natted:
        return domain.source_nat_ip or next(
            (n.source_nat_ip for n in domain.networks if n.source_nat_ip is not None), None)
    return domain.networks[0].gateway if domain.networks else None


# ---------------------------------------------------------------- ip vxgate_lb

def _lb_table(domain: RoutingDomain) -> TableData:
    table = _new(LB)
    table.elements["public_ifs"][_ifname(domain.public_interface)] = None
    for lb in domain.load_balancers:
        vip = f"{lb.public_ip} . {lb.protocol} . {lb.public_port}"
        if lb.algorithm == "source":
            table.elements["hashed"][vip] = None
        for slot, backend in enumerate(netfilter_lb.slot_owners(lb.backends)):
            table.elements["slots"][f"{vip} . {slot}"] = f"{backend.ip} . {backend.port}"
    return table
