"""A network's firewall, network ACL and load balancers: each a full rule set.

CloudStack sends these as whole sets (apply-fw-rules re-reads every rule of the network;
apply-network-acl and apply-lb-rules pass the full list), so each `apply_*` replaces the
network's set. Rows that are already as wanted are left alone, so a replay writes
nothing; the rest is deleted and inserted anew, which keeps one code path for "new" and
"changed" and never trips a unique key half-way through a swap. The network row is
locked first: two replacements of one set serialise instead of interleaving.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service import nat
from provider_service.errors import BadRequest, Conflict, NotFound
from provider_service.models import Base, Network, PublicIp
from provider_service.models.rules import AclItem, FirewallRule, LbBackend, LbRule

RowT = TypeVar("RowT", bound=Base)


@dataclass(frozen=True, kw_only=True)
class TrafficMatchSpec:
    """What firewall rules and ACL items both match (models.rules.TrafficMatch)."""

    direction: str
    protocol: str
    port_start: int | None = None
    port_end: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    source_cidrs: str = ""  # validated, comma-joined


@dataclass(frozen=True, kw_only=True)
class FirewallRuleSpec(TrafficMatchSpec):
    rule_id: int
    public_ip: str | None = None  # ingress rules of a NATTED network only
    # Egress: destinations. ROUTED ingress: the guest addresses opened ("": the network).
    dest_cidrs: str = ""


@dataclass(frozen=True)
class FirewallSpec:
    network_id: str
    default_egress_allow: bool
    cidr: str | None  # the guest CIDR CloudStack believes the network has
    rules: tuple[FirewallRuleSpec, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AclItemSpec(TrafficMatchSpec):
    number: int
    action: str


@dataclass(frozen=True)
class AclSpec:
    network_id: str
    items: tuple[AclItemSpec, ...] = ()


@dataclass(frozen=True)
class LbBackendSpec:
    ip: str
    port: int


@dataclass(frozen=True)
class LbRuleSpec:
    rule_id: int
    name: str
    public_ip: str
    public_port: int
    private_port: int
    protocol: str
    algorithm: str
    backends: tuple[LbBackendSpec, ...] = ()


@dataclass(frozen=True)
class LbSpec:
    network_id: str
    rules: tuple[LbRuleSpec, ...] = ()


_RULE_COLUMNS = ("port_start", "port_end", "icmp_type", "icmp_code", "source_cidrs")
_FIREWALL_COLUMNS = ("rule_id", "direction", "protocol", "public_ip_id", "dest_cidrs",
                     *_RULE_COLUMNS)
_ACL_COLUMNS = ("number", "action", "direction", "protocol", *_RULE_COLUMNS)
_LB_COLUMNS = ("rule_id", "name", "public_ip_id", "public_port", "private_port", "protocol",
               "algorithm")


# --- firewall --------------------------------------------------------------------------


def apply_firewall(session: Session, spec: FirewallSpec) -> Network:
    network = locked_network(session, spec.network_id)
    if spec.cidr is not None and ipaddress.ip_network(spec.cidr) != _cidr(network):
        raise Conflict(f"cidr: {spec.cidr} is not network {network.id}'s CIDR {network.cidr}")
    for index, rule in enumerate(spec.rules):
        if rule.direction == "ingress":
            _check_ingress(network, rule, f"rules[{index}]")
    ips = _public_ips(session, network, [rule.public_ip for rule in spec.rules])
    wanted = [_firewall_row(network, rule, ips) for rule in spec.rules]
    network.default_egress_allow = spec.default_egress_allow
    _replace(session, firewall_rules(session, network.id), wanted, _columns(_FIREWALL_COLUMNS))
    return network


def firewall_rules(session: Session, network_id: str) -> Sequence[FirewallRule]:
    return session.scalars(
        select(FirewallRule).where(FirewallRule.network_id == network_id)
        .order_by(FirewallRule.rule_id)
    ).all()


def _check_ingress(network: Network, rule: FirewallRuleSpec, where: str) -> None:
    """A NATTED network's ingress rule guards one of its public IPs. A ROUTED network has
    no NAT: its ingress rules (CloudStack's routing firewall rules) open guest addresses,
    their destCidrs (none: the whole network), and name no public IP."""
    mode = _mode(network)
    if mode != "routed":
        if rule.public_ip is None:
            raise BadRequest(f"{where}.publicIp: network {network.id} is {mode.upper()}: "
                             "its ingress rules need a public IP")
        return
    if rule.public_ip is not None:
        raise BadRequest(f"{where}.publicIp: network {network.id} is ROUTED, without NAT: "
                         "its ingress rules open guest addresses (destCidrs), not a public IP")
    cidr = ipaddress.IPv4Network(network.cidr)  # a network's CIDR is IPv4
    for text in filter(None, rule.dest_cidrs.split(",")):
        dest = ipaddress.ip_network(text)
        # IPv6 entries are left to the IPv6 firewall (not in the agent's contract yet).
        if isinstance(dest, ipaddress.IPv4Network) and not dest.overlaps(cidr):
            raise BadRequest(f"{where}.destCidrs: {dest} is outside network {network.id}'s "
                             f"CIDR {cidr}")


def _mode(network: Network) -> str:
    """natted or routed: a VPC tier's is its VPC's."""
    return network.vpc.mode if network.vpc is not None else network.mode


def _firewall_row(
    network: Network, rule: FirewallRuleSpec, ips: dict[str, PublicIp]
) -> FirewallRule:
    return FirewallRule(
        network_id=network.id, rule_id=rule.rule_id, direction=rule.direction,
        protocol=rule.protocol, port_start=rule.port_start, port_end=rule.port_end,
        icmp_type=rule.icmp_type, icmp_code=rule.icmp_code,
        public_ip_id=None if rule.public_ip is None else ips[rule.public_ip].id,
        source_cidrs=rule.source_cidrs, dest_cidrs=rule.dest_cidrs,
    )


# --- network ACL -----------------------------------------------------------------------


def apply_acl(session: Session, spec: AclSpec) -> Network:
    network = locked_network(session, spec.network_id)
    if network.vpc_id is None:
        raise BadRequest(f"network {network.id} is not a VPC tier; network ACLs apply to tiers")
    wanted = [
        AclItem(
            network_id=network.id, number=item.number, action=item.action,
            direction=item.direction, protocol=item.protocol, port_start=item.port_start,
            port_end=item.port_end, icmp_type=item.icmp_type, icmp_code=item.icmp_code,
            source_cidrs=item.source_cidrs,
        )
        for item in spec.items
    ]
    _replace(session, acl_items(session, network.id), wanted, _columns(_ACL_COLUMNS))
    return network


def acl_items(session: Session, network_id: str) -> Sequence[AclItem]:
    return session.scalars(
        select(AclItem).where(AclItem.network_id == network_id).order_by(AclItem.number)
    ).all()


# --- load balancers --------------------------------------------------------------------


def apply_load_balancers(session: Session, spec: LbSpec) -> Network:
    network = locked_network(session, spec.network_id)
    ips = _public_ips(session, network, [rule.public_ip for rule in spec.rules])
    wanted = [_lb_row(session, network, index, rule, ips[rule.public_ip])
              for index, rule in enumerate(spec.rules)]
    _replace(session, lb_rules(session, network.id), wanted, _lb_fingerprint)
    return network


def lb_rules(session: Session, network_id: str) -> Sequence[LbRule]:
    return session.scalars(
        select(LbRule).where(LbRule.network_id == network_id).order_by(LbRule.rule_id)
    ).all()


def _lb_row(
    session: Session, network: Network, index: int, rule: LbRuleSpec, ip: PublicIp
) -> LbRule:
    nat.check_ports_free(session, ip, rule.protocol, (rule.public_port, rule.public_port),
                         own_network=network.id, field=f"rules[{index}].publicIp")
    for number, backend in enumerate(rule.backends):
        nat.check_in_network(backend.ip, network, f"rules[{index}].backends[{number}].ip")
    return LbRule(
        network_id=network.id, rule_id=rule.rule_id, name=rule.name, public_ip_id=ip.id,
        public_port=rule.public_port, private_port=rule.private_port, protocol=rule.protocol,
        algorithm=rule.algorithm,
        backends=[LbBackend(ip=backend.ip, port=backend.port) for backend in rule.backends],
    )


def _lb_fingerprint(rule: LbRule) -> Hashable:
    members = tuple(sorted((backend.ip, backend.port) for backend in rule.backends))
    return (*_columns(_LB_COLUMNS)(rule), members)


# --- shared ----------------------------------------------------------------------------


def locked_network(session: Session, network_id: str) -> Network:
    # FOR UPDATE OF networks only: the eager joins to its allocations are outer joins,
    # which PostgreSQL refuses to lock.
    network = session.scalars(
        select(Network).where(Network.id == network_id).with_for_update(of=Network)
    ).unique().one_or_none()
    if network is None:
        raise NotFound(f"unknown network {network_id}")
    return network


def _public_ips(
    session: Session, network: Network, addresses: Sequence[str | None]
) -> dict[str, PublicIp]:
    """The public IPs the rules name, each checked and locked once, in address order:
    requests that lock several addresses (two tiers of a VPC) cannot deadlock."""
    first_use: dict[str, int] = {}
    for index, address in enumerate(addresses):
        if address is not None:
            first_use.setdefault(address, index)
    return {
        address: nat.owned_public_ip(session, network, address, f"rules[{index}].publicIp")
        for address, index in sorted(first_use.items())
    }


def _cidr(network: Network) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(network.cidr)


def _columns(names: tuple[str, ...]) -> Callable[[Base], tuple[object, ...]]:
    def fingerprint(row: Base) -> tuple[object, ...]:
        return tuple(getattr(row, name) for name in names)

    return fingerprint


def _replace(
    session: Session,
    current: Sequence[RowT],
    wanted: Sequence[RowT],
    fingerprint: Callable[[RowT], Hashable],
) -> None:
    """Make the table hold exactly `wanted` (transient rows) in place of `current`."""
    missing = {fingerprint(row): row for row in wanted}
    stale = [row for row in current if missing.pop(fingerprint(row), None) is None]
    for row in stale:
        session.delete(row)
    # Deletes first: a changed rule takes over the key or the port of the row it replaces.
    session.flush()
    session.add_all(missing.values())
    session.flush()
