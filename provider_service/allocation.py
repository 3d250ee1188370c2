"""VNI, VLAN and ASN allocation from number pools.

Three mechanisms, each for one job:
- the pool cursor hands out never-used numbers in O(1) with one atomic UPDATE;
- released numbers wait in a free list and are reused only once the cursor has passed
  the end of the range (fresh numbers first: a just-freed VNI may still be in devices);
- the unique constraint on allocations(zone, space, number) is the guarantee. It holds
  whatever the concurrency: gunicorn workers, several services on one PostgreSQL.

The pools of one zone do not overlap within a number space (L2 and L3 VNIs share one):
the inventory refuses such ranges, because a pool whose numbers another pool holds runs
dry. Should a number be taken all the same (pools from before that check), it is
skipped: ON CONFLICT, at most MAX_SKIPS times per allocation.

All functions run inside the caller's write transaction (Database.write). Allocation is
plain SQL (see sql.py for why); pool configuration, rare, uses the ORM.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service.errors import BadRequest, NotFound, PoolExhausted
from provider_service.models import NumberPool
from provider_service.models.fabric import POOL_SPACES
from provider_service.sql import Sql

# How many numbers already taken (see the module's docstring) we skip before giving up.
MAX_SKIPS = 64


@dataclass(frozen=True)
class Pool:
    id: int
    zone_id: str
    purpose: str
    first: int
    last: int

    @property
    def space(self) -> str:
        return POOL_SPACES[self.purpose]


@dataclass(frozen=True)
class Allocated:
    id: int
    number: int


def configure_pool(
    session: Session, zone_id: str, scope: str, purpose: str, first: int, last: int
) -> NumberPool:
    """Create a pool or change its range. Numbers already handed out keep their owners.

    The cursor only knows "everything below me has been handed out once", so the start
    can move down only while the pool hands out nothing: then the pool starts afresh.
    """
    if purpose not in POOL_SPACES:
        raise BadRequest(f"unknown pool purpose {purpose!r}")
    pool = session.scalars(
        select(NumberPool).where(
            NumberPool.zone_id == zone_id, NumberPool.scope == scope, NumberPool.purpose == purpose
        ).with_for_update()  # allocators take the row too: the check below holds
    ).one_or_none()
    if pool is None:
        pool = NumberPool(
            zone_id=zone_id, scope=scope, purpose=purpose,
            first_number=first, last_number=last, cursor=first,
        )
        session.add(pool)
    elif (pool.first_number, pool.last_number) != (first, last):
        if first < pool.first_number:
            sql = Sql(session)
            if sql.one("SELECT 1 FROM allocations WHERE pool_id = :id LIMIT 1", id=pool.id):
                raise BadRequest(
                    f"{purpose}_range: the start can only move up while numbers are in use")
            # Nothing in use: every number of the new range is free, fresh from the cursor.
            sql.run("DELETE FROM released_numbers WHERE pool_id = :id", id=pool.id)
            pool.cursor = first
        pool.first_number, pool.last_number = first, last
        pool.cursor = max(pool.cursor, first)
    return pool


def pools(sql: Sql, zone_id: str, scope: str) -> dict[str, Pool]:
    """A physical network's pools (scope = its id), or a zone's (scope = ZONE_SCOPE)."""
    rows = sql.all(
        "SELECT id, purpose, first_number, last_number FROM number_pools"
        " WHERE zone_id = :zone_id AND scope = :scope",
        zone_id=zone_id, scope=scope,
    )
    return {row[1]: Pool(row[0], zone_id, row[1], row[2], row[3]) for row in rows}


def pool(sql: Sql, zone_id: str, scope: str, purpose: str) -> Pool:
    found = pools(sql, zone_id, scope).get(purpose)
    if found is None:
        where = f"physical network {scope}" if scope else f"zone {zone_id}"
        raise NotFound(f"no {purpose} pool is configured for {where}")
    return found


def allocate(sql: Sql, pool: Pool) -> Allocated:
    """Take the next free number of `pool`; PoolExhausted when there is none."""
    for _ in range(MAX_SKIPS):
        number = _take_fresh(sql, pool)
        if number is None:
            number = _take_released(sql, pool)
        if number is None:
            break
        row = sql.one(
            "INSERT INTO allocations (zone_id, space, number, purpose, pool_id)"
            " VALUES (:zone_id, :space, :number, :purpose, :pool_id)"
            " ON CONFLICT DO NOTHING RETURNING id",
            zone_id=pool.zone_id, space=pool.space, number=number, purpose=pool.purpose,
            pool_id=pool.id,
        )
        if row is not None:
            return Allocated(row[0], number)
    raise PoolExhausted(
        f"the {pool.purpose} pool {pool.first}-{pool.last} "
        f"of zone {pool.zone_id} has no free number left"
    )


def release(sql: Sql, allocation_id: int) -> None:
    """Free a number: the allocation goes away, the number to its pool's free list."""
    row = sql.one("DELETE FROM allocations WHERE id = :id RETURNING pool_id, number",
                  id=allocation_id)
    if row is not None:
        sql.run("INSERT INTO released_numbers (pool_id, number) VALUES (:pool_id, :number)"
                " ON CONFLICT DO NOTHING", pool_id=row[0], number=row[1])


def _take_fresh(sql: Sql, pool: Pool) -> int | None:
    # One atomic statement: on PostgreSQL the row lock serialises concurrent allocators
    # for the rest of a short transaction; on SQLite BEGIN IMMEDIATE already has.
    row = sql.one(
        "UPDATE number_pools SET cursor = cursor + 1"
        " WHERE id = :id AND cursor <= last_number RETURNING cursor",
        id=pool.id,
    )
    return None if row is None else int(row[0]) - 1


def _take_released(sql: Sql, pool: Pool) -> int | None:
    lock = " FOR UPDATE SKIP LOCKED" if sql.postgres else ""
    row = sql.one(
        "SELECT number FROM released_numbers WHERE pool_id = :id"
        " AND number BETWEEN :first AND :last ORDER BY number LIMIT 1" + lock,
        id=pool.id, first=pool.first, last=pool.last,
    )
    if row is None:
        return None
    sql.run("DELETE FROM released_numbers WHERE pool_id = :id AND number = :number",
            id=pool.id, number=row[0])
    return int(row[0])
