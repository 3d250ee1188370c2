"""VPCs and networks: the segments and routing domains CloudStack asks us for.

A network keeps its segment (L2VNI or VLAN) and its routing domain's L3VNI from its first
implement until it is destroyed: shutdown, garbage collection and re-implementation get
the same numbers back (CloudStack issue #14077 loses the broadcast URI; we must not).

Writes and their answers are plain SQL (sql.py says why); `get_network`/`get_vpc` give
the ORM objects the rule and NIC modules navigate.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy.orm import Session

from provider_service import allocation
from provider_service.errors import BadRequest, Conflict, NotFound
from provider_service.models import Network, Vpc
from provider_service.sql import Sql


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


# The state of a VPC tier CloudStack destroyed but whose VPC lives on (tombstone_tier).
TOMBSTONE = "destroyed"
# Columns a PUT may change; everything else is fixed at creation.
NETWORK_FIELDS = ("guest_type", "mode", "cidr", "gateway", "ip6_cidr", "ip6_gateway", "state",
                  "extension_ip")
VPC_FIELDS = ("cidr", "mode", "state")
# Fields NICs and rules are checked against when they are written: they may change only
# while the network has none of them, or those would be left outside the network.
ADDRESS_FIELDS = ("cidr", "gateway", "ip6_cidr", "ip6_gateway", "extension_ip")


@dataclass(frozen=True)
class NetworkView:
    """A network with its numbers, as the API and CloudStack see it."""

    id: str
    zone_id: str
    physical_network_id: str
    vpc_id: str | None
    guest_type: str
    mode: str
    cidr: str
    gateway: str
    ip6_cidr: str
    ip6_gateway: str
    state: str
    extension_ip: str
    segment_kind: str  # 'vni' or 'vlan'
    segment_id: int
    l3vni: int
    rt_asn: int


@dataclass(frozen=True)
class VpcView:
    id: str
    zone_id: str
    physical_network_id: str
    cidr: str
    mode: str
    state: str
    l3vni: int
    rt_asn: int


_NETWORK_SELECT = (
    "SELECT n.id, n.zone_id, n.physical_network_id, n.vpc_id, "
    + ", ".join(f"n.{name}" for name in NETWORK_FIELDS)
    + ", seg.space, seg.number, l3.number, z.rt_asn FROM networks n"
    " JOIN allocations seg ON seg.id = n.segment_allocation_id"
    " JOIN routing_domains rd ON rd.id = n.routing_domain_id"
    " JOIN allocations l3 ON l3.id = rd.l3vni_allocation_id"
    " JOIN zones z ON z.id = n.zone_id"
)
_VPC_SELECT = (
    "SELECT v.id, v.zone_id, v.physical_network_id, v.cidr, v.mode, v.state, l3.number,"
    " z.rt_asn FROM vpcs v JOIN routing_domains rd ON rd.id = v.routing_domain_id"
    " JOIN allocations l3 ON l3.id = rd.l3vni_allocation_id JOIN zones z ON z.id = v.zone_id"
)


# --- networks --------------------------------------------------------------------------


def apply_network(sql: Sql, spec: NetworkSpec) -> NetworkView:
    current = _network(sql, spec.id)
    if current is None:
        if spec.vpc_id is not None:
            _check_tier(sql, spec)
        return _create_network(sql, spec)
    if (current.zone_id, current.vpc_id) != (spec.zone_id, spec.vpc_id):
        raise Conflict(
            f"network {spec.id} exists in zone {current.zone_id}"
            + (f", VPC {current.vpc_id}" if current.vpc_id else "")
        )
    wanted = {name: getattr(spec, name) for name in NETWORK_FIELDS}
    if all(getattr(current, name) == value for name, value in wanted.items()):
        return current  # a replay: nothing to write
    if spec.vpc_id is not None:
        _check_tier(sql, spec)
    changed = [name for name in ADDRESS_FIELDS if getattr(current, name) != wanted[name]]
    if changed:
        _check_addresses_free(sql, spec.id, changed[0])
    sql.run("UPDATE networks SET " + ", ".join(f"{name} = :{name}" for name in wanted)
            + ", updated_at = CURRENT_TIMESTAMP WHERE id = :id", id=spec.id, **wanted)
    return replace(current, **wanted)


def find_network(sql: Sql, network_id: str) -> NetworkView | None:
    return _network(sql, network_id)


def network_view(sql: Sql, network_id: str) -> NetworkView:
    view = _network(sql, network_id)
    if view is None:
        raise NotFound(f"unknown network {network_id}")
    return view


def network_views(sql: Sql, *, zone_id: str | None = None,
                  vpc_id: str | None = None) -> list[NetworkView]:
    query, params = _filtered(_NETWORK_SELECT, "n", zone_id=zone_id, vpc_id=vpc_id)
    return [_network_row(row) for row in sql.all(query + " ORDER BY n.id", **params)]


def delete_network(session: Session, network_id: str) -> None:
    sql = Sql(session)
    row = sql.one(
        "SELECT n.segment_allocation_id, n.routing_domain_id, n.vpc_id FROM networks n"
        " WHERE n.id = :id", id=network_id)
    if row is None:
        return
    segment, domain, vpc_id = row
    # Rules, public IPs and NICs go with it: their foreign keys cascade.
    sql.run("DELETE FROM networks WHERE id = :id", id=network_id)
    allocation.release(sql, segment)
    if vpc_id is None:
        _delete_routing_domain(sql, domain)
    session.expire_all()  # the ORM must not serve the rows just deleted


def tombstone_tier(sql: Sql, network_id: str) -> None:
    """A tier CloudStack destroyed, kept with its numbers until its VPC goes.

    CloudStack sends destroy-network for a tier both when the tier is deleted and when its
    VPC restarts (with network.rolling.restart=false), and the two payloads are alike;
    after a restart no implement-network follows, and VMs keep running on the tier's VNI.
    So a tier is only marked; a later implement revives it with the same numbers, and the
    VPC's end (shutdown-vpc with vpc_state Inactive) or an audit releases it.
    """
    sql.run("UPDATE networks SET state = :gone, updated_at = CURRENT_TIMESTAMP"
            " WHERE id = :id AND vpc_id IS NOT NULL", gone=TOMBSTONE, id=network_id)


def mark_vpc(sql: Sql, vpc_id: str, state: str) -> None:
    sql.run("UPDATE vpcs SET state = :state, updated_at = CURRENT_TIMESTAMP WHERE id = :id",
            state=state, id=vpc_id)


def get_network(session: Session, network_id: str, *, lock: bool = False) -> Network:
    """The network as an ORM object. `lock=True` for work that checks something against
    its addresses and then writes (NICs, rules): on PostgreSQL the row is read FOR KEY
    SHARE, so a concurrent change of the addresses (apply_network takes the row FOR
    UPDATE first) waits for that work, or that work reads the changed addresses."""
    lock_mode = {"read": True, "key_share": True} if lock else None
    network = session.get(Network, network_id, with_for_update=lock_mode,
                          populate_existing=lock)
    if network is None:
        raise NotFound(f"unknown network {network_id}")
    return network


def _network(sql: Sql, network_id: str) -> NetworkView | None:
    row = sql.one(_NETWORK_SELECT + " WHERE n.id = :id", id=network_id)
    return None if row is None else _network_row(row)


def _network_row(row: tuple[object, ...]) -> NetworkView:
    return NetworkView(*row)  # type: ignore[arg-type]  # columns in field order


def _create_network(sql: Sql, spec: NetworkSpec) -> NetworkView:
    if spec.vpc_id is not None:
        physnet_id, method, rt_asn, domain, l3vni = _vpc_placement(sql, spec.vpc_id)
    else:
        physnet_id, method, rt_asn = _resolve_physnet(sql, spec.zone_id, spec.physnet)
    pools = allocation.pools(sql, spec.zone_id, physnet_id)
    segment_pool = pools["l2vni" if method == "vxlan" else "vlan"]
    segment = allocation.allocate(sql, segment_pool)
    if spec.vpc_id is None:
        domain, l3vni = _new_routing_domain(sql, pools["l3vni"])
    values = {name: getattr(spec, name) for name in NETWORK_FIELDS}
    sql.run(
        "INSERT INTO networks (id, zone_id, physical_network_id, vpc_id, "
        + ", ".join(NETWORK_FIELDS) + ", default_egress_allow, segment_allocation_id,"
        " routing_domain_id, created_at, updated_at) VALUES (:id, :zone_id, :physnet, :vpc_id, "
        + ", ".join(f":{name}" for name in NETWORK_FIELDS)
        + ", :egress, :segment, :domain, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        id=spec.id, zone_id=spec.zone_id, physnet=physnet_id, vpc_id=spec.vpc_id,
        egress=True, segment=segment.id, domain=domain, **values,
    )
    return NetworkView(id=spec.id, zone_id=spec.zone_id, physical_network_id=physnet_id,
                       vpc_id=spec.vpc_id, **values, segment_kind=segment_pool.space,
                       segment_id=segment.number, l3vni=l3vni, rt_asn=rt_asn)


def _check_addresses_free(sql: Sql, network_id: str, field: str) -> None:
    """Refuse to move a network's addresses from under its NICs and rules."""
    # UPDATE, not NO KEY UPDATE: NIC writers read the row FOR KEY SHARE (get_network),
    # and inserting a NIC or rule takes that lock too.
    _lock(sql, "networks", network_id, strength="UPDATE")
    row = sql.one(
        "SELECT 1 FROM nics WHERE network_id = :id"
        " UNION ALL SELECT 1 FROM static_nats WHERE network_id = :id"
        " UNION ALL SELECT 1 FROM port_forwards WHERE network_id = :id"
        " UNION ALL SELECT 1 FROM lb_backends WHERE network_id = :id LIMIT 1",
        id=network_id)
    if row is not None:
        raise Conflict(f"network {network_id}: {field} cannot change while it has NICs or rules")


def _check_tier(sql: Sql, spec: NetworkSpec) -> None:
    assert spec.vpc_id is not None
    # The VPC row is locked before its tiers are read: concurrent tier writes and the
    # VPC's update or delete (which lock it too) take turns, so two tiers cannot overlap
    # and a tier cannot appear in a VPC being deleted.
    row = _lock(sql, "vpcs", spec.vpc_id, "zone_id, cidr")
    if row is None:
        raise NotFound(f"unknown VPC {spec.vpc_id}")
    if row[0] != spec.zone_id:
        raise BadRequest(f"zone_id: VPC {spec.vpc_id} is in zone {row[0]}, not {spec.zone_id}")
    tier, vpc_cidr = ipaddress.ip_network(spec.cidr), ipaddress.ip_network(row[1])
    if not tier.subnet_of(vpc_cidr):  # type: ignore[arg-type]
        raise BadRequest(f"cidr: tier {tier} is outside VPC {spec.vpc_id}'s {vpc_cidr}")
    others = sql.all("SELECT id, cidr FROM networks WHERE vpc_id = :vpc AND id <> :id"
                     " AND state <> :gone", vpc=spec.vpc_id, id=spec.id, gone=TOMBSTONE)
    for other_id, other_cidr in others:
        if tier.overlaps(ipaddress.ip_network(other_cidr)):
            raise BadRequest(f"cidr: {tier} overlaps tier {other_id} ({other_cidr})")


# --- VPCs ------------------------------------------------------------------------------


def apply_vpc(sql: Sql, spec: VpcSpec) -> VpcView:
    current = _vpc(sql, spec.id)
    if current is None:
        physnet_id, _method, _rt_asn = _resolve_physnet(sql, spec.zone_id, spec.physnet)
        pools = allocation.pools(sql, spec.zone_id, physnet_id)
        domain, _l3vni = _new_routing_domain(sql, pools["l3vni"])
        sql.run(
            "INSERT INTO vpcs (id, zone_id, physical_network_id, cidr, mode, state,"
            " routing_domain_id, created_at, updated_at) VALUES (:id, :zone_id, :physnet,"
            " :cidr, :mode, :state, :domain, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            id=spec.id, zone_id=spec.zone_id, physnet=physnet_id, cidr=spec.cidr,
            mode=spec.mode, state=spec.state, domain=domain,
        )
        created = _vpc(sql, spec.id)
        assert created is not None
        return created
    if current.zone_id != spec.zone_id:
        raise Conflict(f"VPC {spec.id} belongs to zone {current.zone_id}")
    wanted = {name: getattr(spec, name) for name in VPC_FIELDS}
    if all(getattr(current, name) == value for name, value in wanted.items()):
        return current
    _lock(sql, "vpcs", spec.id)  # see _check_tier
    _check_tiers_fit(sql, spec)
    sql.run("UPDATE vpcs SET cidr = :cidr, mode = :mode, state = :state,"
            " updated_at = CURRENT_TIMESTAMP WHERE id = :id", id=spec.id, **wanted)
    return replace(current, **wanted)


def find_vpc(sql: Sql, vpc_id: str) -> VpcView | None:
    return _vpc(sql, vpc_id)


def vpc_view(sql: Sql, vpc_id: str) -> VpcView:
    view = _vpc(sql, vpc_id)
    if view is None:
        raise NotFound(f"unknown VPC {vpc_id}")
    return view


def vpc_views(sql: Sql, *, zone_id: str | None = None) -> list[VpcView]:
    query, params = _filtered(_VPC_SELECT, "v", zone_id=zone_id)
    return [VpcView(*row) for row in sql.all(query + " ORDER BY v.id", **params)]


def _filtered(select: str, alias: str, **filters: str | None) -> tuple[str, dict[str, str]]:
    """`select` narrowed to rows whose columns equal the filters given (None: any)."""
    params = {column: value for column, value in filters.items() if value is not None}
    if not params:
        return select, params
    return select + " WHERE " + " AND ".join(
        f"{alias}.{column} = :{column}" for column in params), params


def delete_vpc(session: Session, vpc_id: str) -> None:
    sql = Sql(session)
    row = _lock(sql, "vpcs", vpc_id, "routing_domain_id", strength="UPDATE")  # _check_tier
    if row is None:
        return
    tiers = sql.all("SELECT id, state FROM networks WHERE vpc_id = :id ORDER BY id", id=vpc_id)
    live = [tier for tier, state in tiers if state != TOMBSTONE]
    if live:
        raise Conflict(f"VPC {vpc_id} still has tiers: {', '.join(live)}")
    for tier, _state in tiers:  # tombstones: their VNIs go with the VPC
        delete_network(session, tier)
    sql.run("DELETE FROM vpcs WHERE id = :id", id=vpc_id)
    _delete_routing_domain(sql, row[0])
    session.expire_all()


def get_vpc(session: Session, vpc_id: str) -> Vpc:
    vpc = session.get(Vpc, vpc_id)
    if vpc is None:
        raise NotFound(f"unknown VPC {vpc_id}")
    return vpc


def _vpc(sql: Sql, vpc_id: str) -> VpcView | None:
    row = sql.one(_VPC_SELECT + " WHERE v.id = :id", id=vpc_id)
    return None if row is None else VpcView(*row)


def _vpc_placement(sql: Sql, vpc_id: str) -> tuple[str, str, int, int, int]:
    """(physical network, its isolation method, rt_asn, routing domain, L3VNI) of a VPC."""
    row = sql.one(
        "SELECT v.physical_network_id, p.isolation_method, z.rt_asn, v.routing_domain_id,"
        " l3.number FROM vpcs v JOIN physical_networks p ON p.id = v.physical_network_id"
        " JOIN zones z ON z.id = v.zone_id JOIN routing_domains rd ON rd.id = v.routing_domain_id"
        " JOIN allocations l3 ON l3.id = rd.l3vni_allocation_id WHERE v.id = :id", id=vpc_id)
    assert row is not None, "checked by _check_tier"
    return row[0], row[1], row[2], row[3], row[4]


def _check_tiers_fit(sql: Sql, spec: VpcSpec) -> None:
    vpc_cidr = ipaddress.ip_network(spec.cidr)
    for tier_id, tier_cidr in sql.all("SELECT id, cidr FROM networks WHERE vpc_id = :id",
                                      id=spec.id):
        if not ipaddress.ip_network(tier_cidr).subnet_of(vpc_cidr):  # type: ignore[arg-type]
            raise BadRequest(f"cidr: {vpc_cidr} would leave tier {tier_id} ({tier_cidr}) outside")


# --- shared ----------------------------------------------------------------------------


def _lock(sql: Sql, table: str, row_id: str, columns: str = "id", *,
          strength: str = "NO KEY UPDATE") -> tuple[Any, ...] | None:
    """Read a row, locked until the transaction ends on PostgreSQL (SQLite writers hold the
    whole database already). NO KEY UPDATE makes writers of the row take turns and lets
    foreign key checks of rows that point at it through; UPDATE stops those too."""
    lock = f" FOR {strength}" if sql.postgres else ""
    return sql.one(f"SELECT {columns} FROM {table} WHERE id = :id{lock}", id=row_id)


def _resolve_physnet(sql: Sql, zone_id: str, ref: PhysnetRef) -> tuple[str, str, int]:
    """(id, isolation method, zone rt_asn): by id, else by name (CloudStack's details carry
    only `physicalnetworkname`), else the zone's only physical network."""
    query, params = ("SELECT p.id, p.isolation_method, z.rt_asn FROM physical_networks p"
                     " JOIN zones z ON z.id = p.zone_id WHERE p.zone_id = :zone_id",
                     {"zone_id": zone_id})
    if ref.id is not None:
        query, params["id"] = query + " AND p.id = :id", ref.id
    elif ref.name is not None:
        query, params["name"] = query + " AND p.name = :name", ref.name
    found = sql.all(query + " ORDER BY p.id LIMIT 2", **params)
    if len(found) == 1:
        return found[0][0], found[0][1], found[0][2]
    if sql.one("SELECT 1 FROM zones WHERE id = :id", id=zone_id) is None:
        raise NotFound(f"unknown zone {zone_id}")
    if ref.id is None and ref.name is not None and found:
        # The inventory refuses duplicate names in a zone; rows from before it did.
        raise Conflict(f"physical network name {ref.name!r} is ambiguous in zone {zone_id}: "
                       f"{found[0][0]} and {found[1][0]} have it; send physical_network_id")
    wanted = ref.id or ref.name
    if wanted is not None:
        raise NotFound(f"unknown physical network {wanted} in zone {zone_id}")
    if not found:
        raise NotFound(f"zone {zone_id} has no physical network registered")
    raise BadRequest(f"zone {zone_id} has several physical networks: name one")


def _new_routing_domain(sql: Sql, l3vni_pool: allocation.Pool) -> tuple[int, int]:
    """(id, L3VNI) of a new routing domain."""
    l3vni = allocation.allocate(sql, l3vni_pool)
    row = sql.one("INSERT INTO routing_domains (zone_id, l3vni_allocation_id)"
                  " VALUES (:zone_id, :l3vni) RETURNING id",
                  zone_id=l3vni_pool.zone_id, l3vni=l3vni.id)
    assert row is not None
    return int(row[0]), l3vni.number


def _delete_routing_domain(sql: Sql, domain_id: int) -> None:
    row = sql.one("DELETE FROM routing_domains WHERE id = :id RETURNING l3vni_allocation_id",
                  id=domain_id)
    if row is not None:
        allocation.release(sql, row[0])


assert [f.name for f in fields(NetworkView)][4:12] == list(NETWORK_FIELDS), "column order"
