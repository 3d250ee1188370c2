"""VPCs and networks: the segments and routing domains CloudStack asks us for.

A network keeps its segment (L2VNI or VLAN) and its routing domain's L3VNI from its first
implement until it is destroyed: shutdown, garbage collection and re-implementation get
the same numbers back (CloudStack issue #14077 loses the broadcast URI; we must not).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sqlalchemy.orm import Session

from provider_service import allocation
from provider_service.errors import BadRequest, Conflict, NotFound
from provider_service.inventory import physnet_pools, resolve_physical_network
from provider_service.models import Network, NumberPool, PhysicalNetwork, RoutingDomain, Vpc


@dataclass(frozen=True)
class PhysnetRef:
    """How a request names its physical network (CloudStack sends only the name)."""

    id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class VpcSpec:
    id: str
    zone_id: str
    cidr: str
    physnet: PhysnetRef = PhysnetRef()
    mode: str = "natted"
    state: str = ""


@dataclass(frozen=True)
class NetworkSpec:
    id: str
    zone_id: str
    cidr: str
    gateway: str
    physnet: PhysnetRef = PhysnetRef()
    vpc_id: str | None = None
    guest_type: str = "isolated"
    mode: str = "natted"
    ip6_cidr: str = ""
    ip6_gateway: str = ""
    state: str = ""
    extension_ip: str = ""


def apply_vpc(session: Session, spec: VpcSpec) -> Vpc:
    vpc = session.get(Vpc, spec.id)
    if vpc is None:
        physnet = _physnet(session, spec.zone_id, spec.physnet)
        vpc = Vpc(id=spec.id, zone_id=spec.zone_id, physical_network=physnet)
        vpc.routing_domain = _new_routing_domain(session, physnet_pools(session, physnet))
        session.add(vpc)
    elif vpc.zone_id != spec.zone_id:
        raise Conflict(f"VPC {spec.id} belongs to zone {vpc.zone_id}")
    else:
        _check_tiers_fit(vpc, spec.cidr)
    vpc.cidr, vpc.mode, vpc.state = spec.cidr, spec.mode, spec.state
    session.flush()
    return vpc


def delete_vpc(session: Session, vpc_id: str) -> None:
    vpc = session.get(Vpc, vpc_id)
    if vpc is None:
        return
    if vpc.tiers:
        raise Conflict(f"VPC {vpc_id} still has tiers: {', '.join(t.id for t in vpc.tiers)}")
    domain = vpc.routing_domain
    session.delete(vpc)
    session.flush()
    _delete_routing_domain(session, domain)


def apply_network(session: Session, spec: NetworkSpec) -> Network:
    network = session.get(Network, spec.id)
    vpc = _vpc_of(session, spec)
    if vpc is not None:
        _check_tier_cidr(vpc, spec.id, spec.cidr)
    if network is None:
        network = _create_network(session, spec, vpc)
    elif (network.zone_id, network.vpc_id) != (spec.zone_id, spec.vpc_id):
        raise Conflict(
            f"network {spec.id} exists in zone {network.zone_id}"
            + (f", VPC {network.vpc_id}" if network.vpc_id else "")
        )
    _copy_fields(network, spec)
    session.flush()
    return network


def delete_network(session: Session, network_id: str) -> None:
    network = session.get(Network, network_id)
    if network is None:
        return
    segment = network.segment_allocation
    own_domain = network.routing_domain if network.vpc_id is None else None
    session.delete(network)
    session.flush()
    allocation.release(session, segment)
    if own_domain is not None:
        _delete_routing_domain(session, own_domain)


def get_network(session: Session, network_id: str) -> Network:
    network = session.get(Network, network_id)
    if network is None:
        raise NotFound(f"unknown network {network_id}")
    return network


def get_vpc(session: Session, vpc_id: str) -> Vpc:
    vpc = session.get(Vpc, vpc_id)
    if vpc is None:
        raise NotFound(f"unknown VPC {vpc_id}")
    return vpc


def _create_network(session: Session, spec: NetworkSpec, vpc: Vpc | None) -> Network:
    physnet = vpc.physical_network if vpc else _physnet(session, spec.zone_id, spec.physnet)
    pools = physnet_pools(session, physnet)
    segment_purpose = "l2vni" if physnet.isolation_method == "vxlan" else "vlan"
    segment = allocation.allocate(session, pools[segment_purpose])
    domain = vpc.routing_domain if vpc else _new_routing_domain(session, pools)
    network = Network(
        id=spec.id, zone_id=spec.zone_id, physical_network=physnet, vpc=vpc,
        segment_allocation=segment, routing_domain=domain,
    )
    session.add(network)
    return network


def _copy_fields(network: Network, spec: NetworkSpec) -> None:
    network.guest_type, network.mode = spec.guest_type, spec.mode
    network.cidr, network.gateway = spec.cidr, spec.gateway
    network.ip6_cidr, network.ip6_gateway = spec.ip6_cidr, spec.ip6_gateway
    network.state = spec.state
    network.extension_ip = spec.extension_ip


def _vpc_of(session: Session, spec: NetworkSpec) -> Vpc | None:
    if spec.vpc_id is None:
        return None
    vpc = get_vpc(session, spec.vpc_id)
    if vpc.zone_id != spec.zone_id:
        raise BadRequest(f"zone_id: VPC {vpc.id} is in zone {vpc.zone_id}, not {spec.zone_id}")
    return vpc


def _physnet(session: Session, zone_id: str, ref: PhysnetRef) -> PhysicalNetwork:
    return resolve_physical_network(session, zone_id, ref.id, ref.name)


def _new_routing_domain(session: Session, pools: dict[str, NumberPool]) -> RoutingDomain:
    l3vni = allocation.allocate(session, pools["l3vni"])
    return RoutingDomain(zone_id=l3vni.zone_id, l3vni_allocation=l3vni)


def _delete_routing_domain(session: Session, domain: RoutingDomain) -> None:
    l3vni = domain.l3vni_allocation
    session.delete(domain)
    session.flush()
    allocation.release(session, l3vni)


def _check_tier_cidr(vpc: Vpc, network_id: str, cidr: str) -> None:
    tier = ipaddress.ip_network(cidr)
    vpc_cidr = ipaddress.ip_network(vpc.cidr)
    if not tier.subnet_of(vpc_cidr):  # type: ignore[arg-type]
        raise BadRequest(f"cidr: tier {tier} is outside VPC {vpc.id}'s {vpc_cidr}")
    for other in vpc.tiers:
        if other.id != network_id and tier.overlaps(ipaddress.ip_network(other.cidr)):
            raise BadRequest(f"cidr: {tier} overlaps tier {other.id} ({other.cidr})")


def _check_tiers_fit(vpc: Vpc, cidr: str) -> None:
    vpc_cidr = ipaddress.ip_network(cidr)
    for tier in vpc.tiers:
        if not ipaddress.ip_network(tier.cidr).subnet_of(vpc_cidr):  # type: ignore[arg-type]
            raise BadRequest(f"cidr: {vpc_cidr} would leave tier {tier.id} ({tier.cidr}) outside")

