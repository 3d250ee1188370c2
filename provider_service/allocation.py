"""VNI, VLAN and ASN allocation from number pools.

Three mechanisms, each for one job:
- the pool cursor hands out never-used numbers in O(1) with one atomic UPDATE;
- released numbers wait in a free list and are reused only once the cursor has passed
  the end of the range (fresh numbers first: a just-freed VNI may still be in devices);
- the unique constraint on allocations(zone, space, number) is the guarantee. It holds
  whatever the concurrency: gunicorn workers, several services on one PostgreSQL, or two
  pools with overlapping ranges.

All functions run inside the caller's write transaction (Database.write).
"""

from __future__ import annotations

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from provider_service.errors import BadRequest, NotFound, PoolExhausted
from provider_service.models import Allocation, NumberPool, ReleasedNumber
from provider_service.models.fabric import POOL_SPACES

# How many numbers taken by another pool of the same space we skip before giving up.
MAX_SKIPS = 64


def configure_pool(
    session: Session, zone_id: str, scope: str, purpose: str, first: int, last: int
) -> NumberPool:
    """Create a pool or change its range. Numbers already handed out keep their owners."""
    if purpose not in POOL_SPACES:
        raise BadRequest(f"unknown pool purpose {purpose!r}")
    pool = find_pool(session, zone_id, scope, purpose)
    if pool is None:
        pool = NumberPool(
            zone_id=zone_id, scope=scope, purpose=purpose,
            first_number=first, last_number=last, cursor=first,
        )
        session.add(pool)
    elif (pool.first_number, pool.last_number) != (first, last):
        pool.first_number, pool.last_number = first, last
        pool.cursor = max(pool.cursor, first)
    return pool


def find_pool(session: Session, zone_id: str, scope: str, purpose: str) -> NumberPool | None:
    return session.scalars(
        select(NumberPool).where(
            NumberPool.zone_id == zone_id, NumberPool.scope == scope, NumberPool.purpose == purpose
        )
    ).one_or_none()


def get_pool(session: Session, zone_id: str, scope: str, purpose: str) -> NumberPool:
    pool = find_pool(session, zone_id, scope, purpose)
    if pool is None:
        where = f"physical network {scope}" if scope else f"zone {zone_id}"
        raise NotFound(f"no {purpose} pool is configured for {where}")
    return pool


def allocate(session: Session, pool: NumberPool) -> Allocation:
    """Take the next free number of `pool`; PoolExhausted when there is none."""
    for _ in range(MAX_SKIPS):
        number = _take_fresh(session, pool)
        if number is None:
            number = _take_released(session, pool)
        if number is None:
            break
        if not _in_use(session, pool, number):
            allocation = Allocation(
                zone_id=pool.zone_id, space=pool.space, number=number,
                purpose=pool.purpose, pool_id=pool.id,
            )
            session.add(allocation)
            return allocation
    raise PoolExhausted(
        f"the {pool.purpose} pool {pool.first_number}-{pool.last_number} "
        f"of zone {pool.zone_id} has no free number left"
    )


def release(session: Session, allocation: Allocation) -> None:
    """Free a number: it goes to its pool's free list and the allocation row goes away."""
    session.add(ReleasedNumber(pool_id=allocation.pool_id, number=allocation.number))
    session.delete(allocation)


def _take_fresh(session: Session, pool: NumberPool) -> int | None:
    # One atomic statement: on PostgreSQL the row lock serialises concurrent allocators
    # only for the rest of a short transaction; on SQLite BEGIN IMMEDIATE already has.
    new_cursor = session.execute(
        update(NumberPool)
        .where(NumberPool.id == pool.id, NumberPool.cursor <= NumberPool.last_number)
        .values(cursor=NumberPool.cursor + 1)
        .returning(NumberPool.cursor)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if new_cursor is None:
        return None
    pool.cursor = new_cursor
    return int(new_cursor) - 1


def _take_released(session: Session, pool: NumberPool) -> int | None:
    released = session.scalars(
        select(ReleasedNumber)
        .where(
            ReleasedNumber.pool_id == pool.id,
            ReleasedNumber.number.between(pool.first_number, pool.last_number),
        )
        .order_by(ReleasedNumber.number)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).one_or_none()
    if released is None:
        return None
    session.delete(released)
    return released.number


def _in_use(session: Session, pool: NumberPool, number: int) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    Allocation.zone_id == pool.zone_id,
                    Allocation.space == pool.space,
                    Allocation.number == number,
                )
            )
        )
    )
