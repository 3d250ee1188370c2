"""The `netfilter` section of softgate.json: one RoutingDomain JSON per routing domain.

The output is exactly what agent/netfilter_state.RoutingDomain.from_json accepts. The
agent refuses a whole domain for one bad field, so anything the database may hold but the
agent would refuse is decided here, each case with its reason:

- IPv4 only: firewall and ACL CIDR lists lose their IPv6 entries (the guest's IPv6
  firewall is fed by `ipv6_cidr`); a rule that named only IPv6 networks matches no IPv4
  packet and is left out (an empty list would mean "anywhere").
- ROUTED mode has no NAT (CloudStack's own rule; the agent refuses it): source NAT,
  static NAT, port forwards and load balancers of a routed domain are not emitted.
- An ingress rule opens a public IP in a NATTED network and guest addresses in a ROUTED
  one: its destination CIDRs clipped to the network, the whole network when it names
  none. A rule that does not fit its network's mode now (the mode changed after it was
  written) is left out: it would open the wrong thing.
- A VPC has no firewall on its public IPs (its tiers' ACLs govern; the agent refuses
  firewall rules in a VPC): firewall rules stored for a tier are not emitted.
- Ambiguity the database does not forbid (two static NATs to one guest address, one
  rule id on two tiers) keeps the first in sort order.

Every row is read per zone, one query per kind of rule: no query per domain or network.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload

from provider_service import tenancy
from provider_service.models import Network, PublicIp
from provider_service.models.rules import (
    AclItem,
    FirewallRule,
    LbBackend,
    LbRule,
    PortForward,
    StaticNat,
)
from provider_service.softgate_domains import UPLINK_DOMAIN_SIDE, Domain, agent_id

Json = dict[str, Any]


@dataclass(frozen=True)
class ZoneRules:
    """A zone's public IPs and rules as plain JSON-ready data, keyed by what owns them."""

    # (address, source_nat) of the zone's public IPs by owner: ("network", id) or ("vpc", id)
    public_ips: dict[tuple[str, str], list[tuple[str, bool]]]
    egress_default_allow: dict[str, bool]  # by network id
    static_nats: dict[str, list[Json]]  # by network id
    port_forwards: dict[str, list[Json]]
    firewall_rules: dict[str, list[Json]]
    acl_items: dict[str, list[Json]]
    load_balancers: dict[str, list[Json]]


def load_zone_rules(session: Session, zone_id: str) -> ZoneRules:
    return ZoneRules(
        public_ips=_public_ips(session, zone_id),
        egress_default_allow={network_id: allow for network_id, allow in session.execute(
            select(Network.id, Network.default_egress_allow).where(Network.zone_id == zone_id))},
        static_nats=_static_nats(session, zone_id),
        port_forwards=_port_forwards(session, zone_id),
        firewall_rules=_firewall_rules(session, zone_id),
        acl_items=_acl_items(session, zone_id),
        load_balancers=_load_balancers(session, zone_id),
    )


# --- compiling one domain --------------------------------------------------------------


def compile_domain(domain: Domain, rules: ZoneRules) -> Json:
    """One domain as agent/netfilter_state.RoutingDomain.from_json reads it."""
    natted = domain.mode == "natted"

    def gathered(table: dict[str, list[Json]]) -> list[Json]:
        # In network id order, so that sorting (stable) breaks ties the same way each time.
        return [item for network in domain.networks for item in table.get(network.id, [])]

    static_nats = sorted(gathered(rules.static_nats), key=lambda s: _ip(s["public_ip"]))
    forwards = sorted(gathered(rules.port_forwards), key=lambda p: (
        _ip(p["public_ip"]), p["protocol"], _first_port(p["public_port"])))
    balancers = sorted(gathered(rules.load_balancers), key=lambda lb: int(lb["id"]))
    return {
        "id": domain.netns,
        "kind": domain.kind,
        "mode": domain.mode,
        "public_interface": UPLINK_DOMAIN_SIDE,
        "networks": [_guest_network(domain, network, rules) for network in domain.networks],
        "source_nat_ip": _domain_source_nat(domain, rules) if natted else None,
        "static_nats": _first_of_each(static_nats, "private_ip") if natted else [],
        "port_forwards": forwards if natted else [],
        "firewall_rules": (sorted(gathered(rules.firewall_rules), key=lambda r: int(r["id"]))
                           if domain.kind == "isolated" else []),
        "load_balancers": _first_of_each(balancers, "id") if natted else [],
    }


def domain_public_ips(domain: Domain, rules: ZoneRules) -> list[str]:
    """The public addresses a domain holds: its own (a VPC's) and its networks'."""
    return sorted((address for address, _ in _held(domain, rules)), key=_ip)


def _held(domain: Domain, rules: ZoneRules) -> list[tuple[str, bool]]:
    owners = [("network", network.id) for network in domain.networks]
    if domain.vpc_id is not None:
        owners.append(("vpc", domain.vpc_id))
    return [ip for owner in owners for ip in rules.public_ips.get(owner, [])]


def _guest_network(domain: Domain, network: tenancy.NetworkView, rules: ZoneRules) -> Json:
    out: Json = {
        "id": agent_id(network.id),
        "cidr": network.cidr,
        "gateway": network.gateway,
        "egress_default_allow": rules.egress_default_allow.get(network.id, True),
        # A VPC tier is always under an ACL: CloudStack gives every tier one (default_deny
        # when none is chosen) and sends all its items with apply-network-acl. A tier with
        # no items stored (its ACL is empty, or has not arrived yet) gets [], which the
        # agent applies as the virtual router does an empty ACL: terminal deny. Failing
        # closed is the safe side. An isolated network has no ACL: null.
        "acl": rules.acl_items.get(network.id, []) if domain.kind == "vpc" else None,
    }
    # A tier holding a source-NAT address of its own (possible through the API; CloudStack
    # gives a VPC one) leaves through that address instead of the VPC's.
    if domain.kind == "vpc" and domain.mode == "natted":
        own = _lowest_source_nat(rules.public_ips.get(("network", network.id), []))
        if own is not None:
            out["source_nat_ip"] = own
    if network.ip6_cidr:
        out["ipv6_cidr"] = network.ip6_cidr
    return out


def _domain_source_nat(domain: Domain, rules: ZoneRules) -> str | None:
    """An isolated network's source-NAT address, or its VPC's; the lowest if the database
    holds several (nothing there forbids it)."""
    if domain.vpc_id is not None:
        return _lowest_source_nat(rules.public_ips.get(("vpc", domain.vpc_id), []))
    return _lowest_source_nat(_held(domain, rules))


def _lowest_source_nat(ips: list[tuple[str, bool]]) -> str | None:
    return min((address for address, source_nat in ips if source_nat), key=_ip, default=None)


def _first_of_each(items: list[Json], field: str) -> list[Json]:
    """The first item of each value of `field`: the agent refuses two static NATs to one
    guest address and two rules with one id, which the database allows across networks."""
    seen: set[Any] = set()
    kept = []
    for item in items:
        if item[field] not in seen:
            seen.add(item[field])
            kept.append(item)
    return kept


def _ip(address: str) -> tuple[int, ...]:
    """Sort key of a stored (normalised) IPv4 address; ipaddress would take ten times as
    long, which shows at thousands of domains."""
    return tuple(int(octet) for octet in address.split("."))


def _first_port(ports: int | str) -> int:
    return int(str(ports).split("-")[0])


# --- loading the zone's rules ----------------------------------------------------------


def _public_ips(session: Session, zone_id: str) -> dict[tuple[str, str], list[tuple[str, bool]]]:
    table: dict[tuple[str, str], list[tuple[str, bool]]] = defaultdict(list)
    for address, network_id, vpc_id, source_nat in session.execute(
            select(PublicIp.address, PublicIp.network_id, PublicIp.vpc_id, PublicIp.source_nat)
            .where(PublicIp.zone_id == zone_id)):
        owner = vpc_id or network_id
        assert owner is not None, "a check constraint gives each address one owner"
        table[("vpc" if vpc_id else "network", owner)].append((address, source_nat))
    return dict(table)


def _static_nats(session: Session, zone_id: str) -> dict[str, list[Json]]:
    rows = session.execute(
        select(StaticNat.network_id, PublicIp.address, StaticNat.private_ip)
        .join(PublicIp, PublicIp.id == StaticNat.public_ip_id)
        .where(PublicIp.zone_id == zone_id))
    return _by_network((network_id, {"public_ip": address, "private_ip": private_ip})
                       for network_id, address, private_ip in rows)


def _port_forwards(session: Session, zone_id: str) -> dict[str, list[Json]]:
    rows = session.execute(
        select(PortForward.network_id, PortForward.id, PublicIp.address, PortForward.protocol,
               PortForward.public_port_start, PortForward.public_port_end,
               PortForward.private_ip, PortForward.private_port_start,
               PortForward.private_port_end)
        .join(PublicIp, PublicIp.id == PortForward.public_ip_id)
        .where(PublicIp.zone_id == zone_id))
    return _by_network((network_id, {
        # The row id: stable while the forward exists, and an id the agent accepts.
        "id": str(row_id),
        "public_ip": address,
        "protocol": protocol,
        "public_port": _ports(public_start, public_end),
        "private_ip": private_ip,
        "private_port": _ports(private_start, private_end),
    }) for (network_id, row_id, address, protocol, public_start, public_end, private_ip,
            private_start, private_end) in rows)


def _firewall_rules(session: Session, zone_id: str) -> dict[str, list[Json]]:
    # Firewall rules reach isolated domains only (compile_domain), whose mode is their
    # network's.
    rows = session.execute(
        select(FirewallRule, PublicIp.address, Network.mode, Network.cidr)
        .options(lazyload(FirewallRule.public_ip))  # the address comes with the row
        .outerjoin(PublicIp, PublicIp.id == FirewallRule.public_ip_id)
        .join(Network, Network.id == FirewallRule.network_id)
        .where(Network.zone_id == zone_id))
    return _by_network(
        (rule.network_id, item) for rule, address, mode, cidr in rows
        if (item := _firewall_rule(rule, address, cidr if mode == "routed" else None))
        is not None)


def _firewall_rule(rule: FirewallRule, public_ip: str | None, routed_cidr: str | None
                   ) -> Json | None:
    """`routed_cidr`: the network's CIDR if it is ROUTED, None if it is NATTED."""
    sources = _ipv4_cidrs(rule.source_cidrs)
    target = _target(rule, public_ip, routed_cidr)
    if sources is None or target is None:
        return None
    out: Json = {"id": str(rule.rule_id), "direction": rule.direction,
                 "network": agent_id(rule.network_id), **_match(rule), **target}
    if sources:
        out["source_cidrs"] = sources
    return out


def _target(rule: FirewallRule, public_ip: str | None, routed_cidr: str | None
            ) -> Json | None:
    """Where a rule lets traffic go, as the agent reads it ({}: anywhere); None when it
    can let nothing go, so that it is left out."""
    if rule.direction == "egress":
        destinations = _ipv4_cidrs(rule.dest_cidrs)
        if destinations is None:
            return None
        return {"dest_cidrs": destinations} if destinations else {}
    if routed_cidr is None:
        # NATTED: the destination is the public IP; CloudStack's destination CIDRs do
        # not apply (the agent refuses both together). None: written while ROUTED.
        return None if public_ip is None else {"public_ip": public_ip}
    guests = _guest_destinations(rule.dest_cidrs, routed_cidr)
    if public_ip is not None or guests is None:
        return None  # written for NAT before the network turned ROUTED, or opens nothing
    return {"dest_cidrs": guests}


def _guest_destinations(stored: str, cidr: str) -> list[str] | None:
    """What a ROUTED ingress rule opens: its IPv4 destinations clipped to the network (a
    supernet means the whole network), or the whole network when it names none. None
    when none of them is in the network: the agent reads no destinations as anywhere."""
    network = ipaddress.IPv4Network(cidr)
    wanted = _ipv4_cidrs(stored)
    if wanted is None:
        return None
    nets = [ipaddress.IPv4Network(text) for text in wanted] or [network]
    clipped = [net if net.subnet_of(network) else network for net in nets
               if net.overlaps(network)]
    return [str(net) for net in ipaddress.collapse_addresses(clipped)] or None


def _acl_items(session: Session, zone_id: str) -> dict[str, list[Json]]:
    rows = session.scalars(
        select(AclItem).join(Network, Network.id == AclItem.network_id)
        .where(Network.zone_id == zone_id).order_by(AclItem.network_id, AclItem.number))
    return _by_network((item.network_id, out) for item in rows
                       if (out := _acl_item(item)) is not None)


def _acl_item(item: AclItem) -> Json | None:
    cidrs = _ipv4_cidrs(item.source_cidrs)
    if cidrs is None:
        return None
    # `cidrs` are sources for ingress and destinations for egress, as CloudStack's
    # virtual router reads an item's one CIDR list.
    out: Json = {"number": item.number, "action": item.action, "direction": item.direction,
                 **_match(item)}
    if cidrs:
        out["cidrs"] = cidrs
    return out


def _load_balancers(session: Session, zone_id: str) -> dict[str, list[Json]]:
    members: dict[tuple[str, int], set[str]] = defaultdict(set)
    for network_id, rule_id, ip in session.execute(
            select(LbBackend.network_id, LbBackend.rule_id, LbBackend.ip)
            .join(Network, Network.id == LbBackend.network_id)
            .where(Network.zone_id == zone_id)):
        members[(network_id, rule_id)].add(ip)
    rows = session.execute(
        select(LbRule.network_id, LbRule.rule_id, PublicIp.address, LbRule.public_port,
               LbRule.private_port, LbRule.protocol, LbRule.algorithm)
        .join(PublicIp, PublicIp.id == LbRule.public_ip_id)
        .where(PublicIp.zone_id == zone_id))
    return _by_network((network_id, {
        "id": str(rule_id), "public_ip": address,
        "public_port": public_port, "protocol": protocol, "algorithm": algorithm,
        # Every member listens on the rule's private port, as CloudStack's LbDestination
        # (its default port) says; one entry per member address.
        "backends": [{"ip": ip, "port": private_port}
                     for ip in sorted(members[(network_id, rule_id)], key=_ip)],
    }) for network_id, rule_id, address, public_port, private_port, protocol, algorithm
        in rows)


# --- shared ----------------------------------------------------------------------------


def _by_network(items: Iterable[tuple[str, Json]]) -> dict[str, list[Json]]:
    table: dict[str, list[Json]] = defaultdict(list)
    for network_id, item in items:
        table[network_id].append(item)
    return dict(table)


def _match(rule: FirewallRule | AclItem) -> Json:
    """Protocol, with ports for tcp/udp and ICMP type/code for icmp (the API refuses them
    elsewhere; the agent would refuse them too). An ACL's protocol number becomes an int."""
    protocol: str | int = int(rule.protocol) if rule.protocol.isdigit() else rule.protocol
    out: Json = {"protocol": protocol}
    if protocol in ("tcp", "udp") and rule.port_start is not None:
        out["port_start"], out["port_end"] = rule.port_start, rule.port_end
    if protocol == "icmp":
        if rule.icmp_type is not None:
            out["icmp_type"] = rule.icmp_type
        if rule.icmp_code is not None:
            out["icmp_code"] = rule.icmp_code
    return out


def _ipv4_cidrs(stored: str) -> list[str] | None:
    """A stored CIDR list's IPv4 networks, sorted; [] for the empty list (anywhere); None
    when it named only IPv6 networks, so the rule can match no IPv4 packet at all."""
    if not stored:
        return []
    networks = [ipaddress.ip_network(text) for text in stored.split(",")]
    ipv4 = sorted({net for net in networks if isinstance(net, ipaddress.IPv4Network)})
    return [str(net) for net in ipv4] or None


def _ports(start: int, end: int) -> int | str:
    """A single port as a number, a range as CloudStack writes it: '8000-8100'."""
    return start if start == end else f"{start}-{end}"
