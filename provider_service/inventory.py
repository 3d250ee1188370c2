"""Zones, physical networks and devices: the operator's inventory.

Specs are plain data parsed and validated before any database work; `apply_*` functions
take a spec and a session and are idempotent: applying the same spec twice changes
nothing the second time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service import allocation
from provider_service.errors import BadRequest, Conflict, NotFound
from provider_service.models import (
    Device,
    DeviceUplink,
    NumberPool,
    PhysicalNetwork,
    UpstreamPeer,
    Zone,
)
from provider_service.models.fabric import POOL_SPACES, ZONE_SCOPE
from provider_service.sql import Sql

DEFAULT_L2VNI_RANGE = (10_000, 4_999_999)
DEFAULT_L3VNI_RANGE = (5_000_000, 5_999_999)
DEFAULT_VLAN_RANGE = (3000, 4094)
DEFAULT_ASN_RANGE = (4_200_000_000, 4_200_999_999)  # RFC 6996 private 4-byte ASNs
PHYSNET_POOLS = ("l2vni", "l3vni", "vlan")
Row = TypeVar("Row")
Spec = TypeVar("Spec")


@dataclass(frozen=True)
class ZoneSpec:
    id: str
    name: str = ""
    rt_asn: int = 65000
    asn_range: tuple[int, int] = DEFAULT_ASN_RANGE


@dataclass(frozen=True)
class PhysicalNetworkSpec:
    id: str
    zone_id: str
    name: str = ""
    isolation_method: str = "vxlan"
    l2vni_range: tuple[int, int] = DEFAULT_L2VNI_RANGE
    l3vni_range: tuple[int, int] = DEFAULT_L3VNI_RANGE
    vlan_range: tuple[int, int] = DEFAULT_VLAN_RANGE
    service_url: str = ""
    token: str | None = None  # kept only as a digest

    def ranges(self) -> dict[str, tuple[int, int]]:
        return {"l2vni": self.l2vni_range, "l3vni": self.l3vni_range, "vlan": self.vlan_range}


@dataclass(frozen=True)
class UplinkSpec:
    interface: str
    peer_device: str = ""
    peer_interface: str = ""


@dataclass(frozen=True)
class UpstreamPeerSpec:
    address: str
    remote_asn: int
    bfd: bool = True


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    zone_id: str
    role: str
    loopback: str
    vtep_address: str = ""
    management_address: str = ""
    fixed_asn: int | None = None
    uplinks: tuple[UplinkSpec, ...] = field(default_factory=tuple)
    vrf_backend: str = "netns"
    vtep: bool = False
    upstream_peers: tuple[UpstreamPeerSpec, ...] = field(default_factory=tuple)
    standby: bool = False


def apply_zone(session: Session, spec: ZoneSpec) -> Zone:
    zone = session.get(Zone, spec.id)
    if zone is None:
        zone = Zone(id=spec.id)
        session.add(zone)
    zone.name, zone.rt_asn = spec.name, spec.rt_asn
    session.flush()
    allocation.configure_pool(session, spec.id, ZONE_SCOPE, "asn", *spec.asn_range)
    return zone


def get_zone(session: Session, zone_id: str, *, lock: bool = False) -> Zone:
    # FOR NO KEY UPDATE: writers of the zone take turns, rows pointing at it go on.
    zone = session.get(Zone, zone_id, with_for_update={"key_share": True} if lock else None)
    if zone is None:
        raise NotFound(f"unknown zone {zone_id}")
    return zone


def apply_physical_network(session: Session, spec: PhysicalNetworkSpec) -> PhysicalNetwork:
    # The zone row is locked (PostgreSQL) so that physical network writes of one zone take
    # turns: the name and range checks below see each other's results.
    get_zone(session, spec.zone_id, lock=True)
    physnet = session.get(PhysicalNetwork, spec.id)
    if physnet is None:
        physnet = PhysicalNetwork(id=spec.id, zone_id=spec.zone_id)
        session.add(physnet)
    elif physnet.zone_id != spec.zone_id:
        raise Conflict(f"physical network {spec.id} belongs to zone {physnet.zone_id}")
    _check_unique_name(session, spec)
    _check_ranges_apart(session, spec)
    physnet.name = spec.name
    physnet.isolation_method = spec.isolation_method
    physnet.service_url = spec.service_url
    if spec.token is not None:
        physnet.token_sha256 = hashlib.sha256(spec.token.encode()).hexdigest()
    session.flush()
    for purpose, (first, last) in spec.ranges().items():
        allocation.configure_pool(session, spec.zone_id, spec.id, purpose, first, last)
    return physnet


def _check_unique_name(session: Session, spec: PhysicalNetworkSpec) -> None:
    """CloudStack names a network's physical network by name only: names are unique in a
    zone (an empty name is "not given")."""
    if not spec.name:
        return
    other = session.scalars(
        select(PhysicalNetwork.id).where(
            PhysicalNetwork.zone_id == spec.zone_id, PhysicalNetwork.name == spec.name,
            PhysicalNetwork.id != spec.id,
        ).limit(1)
    ).first()
    if other is not None:
        raise Conflict(f"name: physical network {other} of zone {spec.zone_id} "
                       f"is already called {spec.name!r}")


def _check_ranges_apart(session: Session, spec: PhysicalNetworkSpec) -> None:
    """The pools a physical network allocates from may not overlap those of another
    physical network of the zone in the same number space (L2 and L3 VNIs share one):
    numbers the other pool holds are out of reach, and such a pool runs dry early.

    A pool the isolation method leaves idle (the VLAN pool of a VXLAN network, the L2VNI
    pool of a VLAN one) is not checked, so defaults stay usable; changing the method
    checks the pool it puts to use.
    """
    mine = {purpose: span for purpose, span in spec.ranges().items()
            if purpose in _pools_in_use(spec.isolation_method)}
    others = session.execute(
        select(PhysicalNetwork.id, PhysicalNetwork.isolation_method, NumberPool.purpose,
               NumberPool.first_number, NumberPool.last_number)
        .join(NumberPool, (NumberPool.zone_id == PhysicalNetwork.zone_id)
              & (NumberPool.scope == PhysicalNetwork.id))
        .where(PhysicalNetwork.zone_id == spec.zone_id, PhysicalNetwork.id != spec.id)
        .order_by(PhysicalNetwork.id, NumberPool.purpose)
    ).all()
    for purpose, (first, last) in mine.items():
        for other, method, other_purpose, other_first, other_last in others:
            if (other_purpose in _pools_in_use(method)
                    and POOL_SPACES[other_purpose] == POOL_SPACES[purpose]
                    and first <= other_last and other_first <= last):
                raise BadRequest(
                    f"{purpose}_range: {first}-{last} overlaps the {other_purpose} range "
                    f"{other_first}-{other_last} of physical network {other}"
                )


def _pools_in_use(isolation_method: str) -> tuple[str, ...]:
    """The pools networks on a physical network take numbers from: a segment, an L3VNI."""
    return ("l2vni" if isolation_method == "vxlan" else "vlan", "l3vni")


def physnet_pools(session: Session, physnet: PhysicalNetwork) -> dict[str, NumberPool]:
    pools = session.scalars(
        select(NumberPool).where(
            NumberPool.zone_id == physnet.zone_id, NumberPool.scope == physnet.id
        )
    )
    return {pool.purpose: pool for pool in pools}


def apply_device(session: Session, spec: DeviceSpec) -> Device:
    get_zone(session, spec.zone_id)
    device = session.get(Device, spec.name)
    if device is None:
        device = Device(name=spec.name, zone_id=spec.zone_id)
        session.add(device)
    elif device.zone_id != spec.zone_id:
        raise Conflict(f"device {spec.name} belongs to zone {device.zone_id}")
    device.role = spec.role
    device.loopback = spec.loopback
    device.vtep_address = spec.vtep_address or spec.loopback
    device.management_address = spec.management_address
    device.vrf_backend, device.vtep = spec.vrf_backend, spec.vtep
    device.standby = spec.standby
    _apply_asn(session, device, spec.fixed_asn)
    _apply_uplinks(device, spec.uplinks)
    _apply_upstream_peers(device, spec.upstream_peers)
    session.flush()
    return device


def delete_device(session: Session, name: str) -> None:
    device = session.get(Device, name)
    if device is None:
        return
    asn = device.asn_allocation_id
    session.delete(device)
    session.flush()
    if asn is not None:
        allocation.release(Sql(session), asn)


def _apply_asn(session: Session, device: Device, fixed_asn: int | None) -> None:
    device.fixed_asn = fixed_asn
    if fixed_asn is None and device.asn_allocation_id is None:
        sql = Sql(session)
        pool = allocation.pool(sql, device.zone_id, ZONE_SCOPE, "asn")
        device.asn_allocation_id = allocation.allocate(sql, pool).id
    elif fixed_asn is not None and device.asn_allocation_id is not None:
        old = device.asn_allocation_id
        device.asn_allocation_id = None
        allocation.release(Sql(session), old)
    session.flush()
    session.expire(device, ["asn_allocation"])  # set through its id, reload on use


def _apply_uplinks(device: Device, uplinks: tuple[UplinkSpec, ...]) -> None:
    def update(link: DeviceUplink, spec: UplinkSpec) -> None:
        link.peer_device, link.peer_interface = spec.peer_device, spec.peer_interface

    device.uplinks = _reconciled(
        device.uplinks, {spec.interface: spec for spec in uplinks},
        key=lambda link: link.interface, create=lambda name: DeviceUplink(interface=name),
        update=update)


def _apply_upstream_peers(device: Device, peers: tuple[UpstreamPeerSpec, ...]) -> None:
    def update(peer: UpstreamPeer, spec: UpstreamPeerSpec) -> None:
        peer.remote_asn, peer.bfd = spec.remote_asn, spec.bfd

    device.upstream_peers = _reconciled(
        device.upstream_peers, {spec.address: spec for spec in peers},
        key=lambda peer: peer.address, create=lambda address: UpstreamPeer(address=address),
        update=update)


def _reconciled(rows: list[Row], wanted: dict[str, Spec], *, key: Callable[[Row], str],
                create: Callable[[str], Row], update: Callable[[Row, Spec], None]) -> list[Row]:
    """A device's child rows made to match `wanted`, keyed by `key`: rows not wanted are
    dropped (delete-orphan deletes them), kept rows are updated in place, new ones made."""
    have = {key(row): row for row in rows if key(row) in wanted}
    result = []
    for name, spec in wanted.items():
        row = have.get(name) or create(name)
        update(row, spec)
        result.append(row)
    return result
