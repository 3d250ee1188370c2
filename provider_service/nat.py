"""Public IPs and what points at them: static NAT and port forwards.

CloudStack sends one call per address or rule (assign-ip, add-static-nat,
add-port-forward, ...). Every `apply_*` is idempotent and every `delete_*` of something
that is not there is a no-op, because CloudStack replays calls after failures and
restarts. A public address takes one kind of listener: static NAT (every port), or port
forwards and load balancers on distinct ports; the checks here keep the data plane's
DNAT maps free of ambiguous entries. Changes to one address lock its row, so two
requests for the same address serialise on PostgreSQL as they do on SQLite.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service import validation as v
from provider_service.errors import BadRequest, Conflict, NotFound
from provider_service.inventory import get_zone
from provider_service.models import Network, PublicIp
from provider_service.models.rules import LbRule, PortForward, StaticNat
from provider_service.tenancy import get_network, get_vpc


@dataclass(frozen=True)
class PublicIpSpec:
    zone_id: str
    address: str
    cidr: str  # the public range in network form, e.g. 203.0.113.0/24
    gateway: str
    vlan: str = ""
    source_nat: bool = False
    network_id: str | None = None  # exactly one of network_id and vpc_id
    vpc_id: str | None = None


@dataclass(frozen=True)
class StaticNatSpec:
    zone_id: str
    address: str
    network_id: str
    private_ip: str


@dataclass(frozen=True)
class PortForwardSpec:
    zone_id: str
    address: str
    protocol: str
    public_ports: tuple[int, int]
    network_id: str
    private_ip: str
    private_ports: tuple[int, int]


# --- public IPs ------------------------------------------------------------------------


def apply_public_ip(session: Session, spec: PublicIpSpec) -> PublicIp:
    get_zone(session, spec.zone_id)
    _check_owner_exists(session, spec)
    ip = _find(session, spec.zone_id, spec.address, lock=True)
    if ip is None:
        ip = PublicIp(zone_id=spec.zone_id, address=spec.address,
                      network_id=spec.network_id, vpc_id=spec.vpc_id)
        session.add(ip)
    elif (ip.network_id, ip.vpc_id) != (spec.network_id, spec.vpc_id):
        wanted = f"network {spec.network_id}" if spec.network_id else f"VPC {spec.vpc_id}"
        raise Conflict(f"public IP {ip.address} is assigned to {owner_of(ip)}, not {wanted}")
    elif spec.source_nat and not ip.source_nat and static_nat_of(session, ip) is not None:
        raise Conflict(f"source_nat: public IP {ip.address} has static NAT; disable it first")
    ip.cidr, ip.gateway, ip.vlan = spec.cidr, spec.gateway, spec.vlan
    ip.source_nat = spec.source_nat
    session.flush()
    return ip


def delete_public_ip(session: Session, zone_id: str, address: str) -> None:
    """Release an address; the database drops its static NAT, port forwards and rules."""
    ip = _find(session, zone_id, address, lock=True)
    if ip is not None:
        session.delete(ip)
        session.flush()


def get_public_ip(session: Session, zone_id: str, address: str, *, lock: bool = False) -> PublicIp:
    ip = _find(session, zone_id, address, lock=lock)
    if ip is None:
        raise NotFound(f"unknown public IP {address} in zone {zone_id}")
    return ip


def list_public_ips(
    session: Session, zone_id: str, network_id: str | None = None, vpc_id: str | None = None
) -> Sequence[PublicIp]:
    get_zone(session, zone_id)
    query = select(PublicIp).where(PublicIp.zone_id == zone_id)
    if network_id is not None:
        query = query.where(PublicIp.network_id == network_id)
    if vpc_id is not None:
        query = query.where(PublicIp.vpc_id == vpc_id)
    ips = session.scalars(query).all()
    return sorted(ips, key=lambda ip: ipaddress.ip_address(ip.address))


def owner_of(ip: PublicIp) -> str:
    return f"network {ip.network_id}" if ip.network_id else f"VPC {ip.vpc_id}"


def owned_public_ip(session: Session, network: Network, address: str, field: str) -> PublicIp:
    """The locked address `field` names, which `network` (or its VPC) must hold."""
    ip = _find(session, network.zone_id, address, lock=True)
    if ip is None:
        raise NotFound(f"{field}: unknown public IP {address} in zone {network.zone_id}")
    check_owner(ip, network, field)
    return ip


def check_owner(ip: PublicIp, network: Network, field: str) -> None:
    """Rules on an address belong to the network holding it, or to a tier of its VPC."""
    held_by_vpc = ip.vpc_id is not None and ip.vpc_id == network.vpc_id
    if ip.network_id != network.id and not held_by_vpc:
        raise Conflict(
            f"{field}: public IP {ip.address} is assigned to {owner_of(ip)}, not to network "
            f"{network.id}" + (f" or its VPC {network.vpc_id}" if network.vpc_id else "")
        )


def check_in_network(address: str, network: Network, field: str) -> None:
    """A guest address NAT or a load balancer may send traffic to."""
    guest = ipaddress.ip_address(address)
    v.gateway_in_cidr(guest, ipaddress.ip_network(network.cidr), field)
    if address == network.gateway:
        raise BadRequest(f"{field}: {address} is the gateway of network {network.id}")


def _check_owner_exists(session: Session, spec: PublicIpSpec) -> None:
    if spec.network_id is not None:
        zone_id, what = get_network(session, spec.network_id).zone_id, "network_id"
    else:
        assert spec.vpc_id is not None, "the API asks for exactly one owner"
        zone_id, what = get_vpc(session, spec.vpc_id).zone_id, "vpc_id"
    if zone_id != spec.zone_id:
        raise BadRequest(f"{what}: the owner is in zone {zone_id}, not {spec.zone_id}")


def _find(session: Session, zone_id: str, address: str, *, lock: bool) -> PublicIp | None:
    query = select(PublicIp).where(PublicIp.zone_id == zone_id, PublicIp.address == address)
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


# --- static NAT ------------------------------------------------------------------------


def apply_static_nat(session: Session, spec: StaticNatSpec) -> StaticNat:
    ip = get_public_ip(session, spec.zone_id, spec.address, lock=True)
    network = get_network(session, spec.network_id)
    check_owner(ip, network, "network_id")
    check_in_network(spec.private_ip, network, "private_ip")
    if ip.source_nat:
        raise Conflict(f"public IP {ip.address} is a source NAT address; it cannot take static NAT")
    _check_no_port_listeners(session, ip)
    nat = static_nat_of(session, ip)
    if nat is None:
        nat = StaticNat(public_ip=ip)
        session.add(nat)
    nat.network_id, nat.private_ip = spec.network_id, spec.private_ip
    session.flush()
    return nat


def delete_static_nat(session: Session, zone_id: str, address: str) -> None:
    ip = _find(session, zone_id, address, lock=True)
    nat = None if ip is None else static_nat_of(session, ip)
    if nat is not None:
        session.delete(nat)
        session.flush()


def static_nat_of(session: Session, ip: PublicIp) -> StaticNat | None:
    return session.get(StaticNat, ip.id)


def static_nats(session: Session, ips: Sequence[PublicIp]) -> dict[int, StaticNat]:
    """The static NAT of each of `ips` that has one, by public IP id, in one query."""
    found = session.scalars(
        select(StaticNat).where(StaticNat.public_ip_id.in_([ip.id for ip in ips]))
    )
    return {nat.public_ip_id: nat for nat in found}


def get_static_nat(session: Session, zone_id: str, address: str) -> StaticNat:
    nat = static_nat_of(session, get_public_ip(session, zone_id, address))
    if nat is None:
        raise NotFound(f"public IP {address} has no static NAT")
    return nat


def _check_no_port_listeners(session: Session, ip: PublicIp) -> None:
    everything = (1, 65535)
    for protocol in ("tcp", "udp"):
        forwards = overlapping_port_forwards(session, ip, protocol, everything)
        balancers = overlapping_lb_rules(session, ip, protocol, everything)
        if forwards or balancers:
            used = (
                f"port forward {port_text(forwards[0])}" if forwards
                else f"load balancer {balancers[0].rule_id} of network {balancers[0].network_id}"
            )
            raise Conflict(f"public IP {ip.address} is used by {used}; it cannot take static NAT")


# --- port forwards ---------------------------------------------------------------------


def apply_port_forward(session: Session, spec: PortForwardSpec) -> PortForward:
    ip = get_public_ip(session, spec.zone_id, spec.address, lock=True)
    network = get_network(session, spec.network_id)
    check_owner(ip, network, "network_id")
    check_in_network(spec.private_ip, network, "private_ip")
    check_ports_free(session, ip, spec.protocol, spec.public_ports, own_forward=True)
    forward = _find_forward(session, ip, spec.protocol, spec.public_ports[0])
    if forward is None:
        forward = PortForward(public_ip=ip, protocol=spec.protocol,
                              public_port_start=spec.public_ports[0])
        session.add(forward)
    forward.public_port_end = spec.public_ports[1]
    forward.private_ip, forward.network_id = spec.private_ip, spec.network_id
    forward.private_port_start, forward.private_port_end = spec.private_ports
    session.flush()
    return forward


def delete_port_forward(
    session: Session, zone_id: str, address: str, protocol: str, ports: tuple[int, int]
) -> None:
    ip = _find(session, zone_id, address, lock=True)
    forward = None if ip is None else _find_forward(session, ip, protocol, ports[0])
    # Only the exact range: deleting 80-90 must not remove a forward of 80 alone.
    if forward is not None and forward.public_port_end == ports[1]:
        session.delete(forward)
        session.flush()


def list_port_forwards(session: Session, zone_id: str, address: str) -> Sequence[PortForward]:
    ip = get_public_ip(session, zone_id, address)
    return session.scalars(
        select(PortForward).where(PortForward.public_ip_id == ip.id)
        .order_by(PortForward.protocol, PortForward.public_port_start)
    ).all()


def get_port_forward(
    session: Session, zone_id: str, address: str, protocol: str, ports: tuple[int, int]
) -> PortForward:
    ip = get_public_ip(session, zone_id, address)
    forward = _find_forward(session, ip, protocol, ports[0])
    if forward is None or forward.public_port_end != ports[1]:
        raise NotFound(f"public IP {address} has no port forward {protocol}/{ranged(ports)}")
    return forward


def check_ports_free(
    session: Session,
    ip: PublicIp,
    protocol: str,
    ports: tuple[int, int],
    *,
    own_forward: bool = False,
    own_network: str | None = None,
    field: str = "public_ports",
) -> None:
    """409 unless `ports` are free on `ip`: no static NAT, no other forward or balancer.

    `own_forward` skips the forward the caller is replacing (same start port);
    `own_network` skips that network's balancers, which the caller is replacing.
    """
    nat = static_nat_of(session, ip)
    if nat is not None:
        raise Conflict(f"{field}: public IP {ip.address} has static NAT to {nat.private_ip}")
    for forward in overlapping_port_forwards(session, ip, protocol, ports):
        if not (own_forward and forward.public_port_start == ports[0]):
            raise Conflict(f"{field}: {protocol}/{ranged(ports)} on {ip.address} overlaps "
                           f"port forward {port_text(forward)}")
    for rule in overlapping_lb_rules(session, ip, protocol, ports):
        if rule.network_id != own_network:
            raise Conflict(f"{field}: {protocol}/{ranged(ports)} on {ip.address} is used by "
                           f"load balancer {rule.rule_id} of network {rule.network_id}")


def overlapping_port_forwards(
    session: Session, ip: PublicIp, protocol: str, ports: tuple[int, int]
) -> Sequence[PortForward]:
    return session.scalars(
        select(PortForward).where(
            PortForward.public_ip_id == ip.id, PortForward.protocol == protocol,
            PortForward.public_port_start <= ports[1], PortForward.public_port_end >= ports[0],
        ).order_by(PortForward.public_port_start)
    ).all()


def overlapping_lb_rules(
    session: Session, ip: PublicIp, protocol: str, ports: tuple[int, int]
) -> Sequence[LbRule]:
    return session.scalars(
        select(LbRule).where(
            LbRule.public_ip_id == ip.id, LbRule.protocol == protocol,
            LbRule.public_port.between(*ports),
        ).order_by(LbRule.public_port)
    ).all()


def ranged(ports: tuple[int, int]) -> str:
    """CloudStack's text form of a port range: '80' or '8000-8100'."""
    return str(ports[0]) if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}"


def port_text(forward: PortForward) -> str:
    return f"{forward.protocol}/{ranged((forward.public_port_start, forward.public_port_end))}"


def _find_forward(session: Session, ip: PublicIp, protocol: str, start: int) -> PortForward | None:
    return session.scalars(
        select(PortForward).where(
            PortForward.public_ip_id == ip.id, PortForward.protocol == protocol,
            PortForward.public_port_start == start,
        )
    ).one_or_none()
