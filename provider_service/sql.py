"""Plain SQL on the connection of the session's own transaction.

For the allocation hot path only: creating a network through the ORM costs ~3.5 ms of CPU,
the same statements as plain SQL ~0.5 ms (bench/ measures it), and CloudStack asks for a
network on every implement. Queries are written once with :name parameters and work on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

_PG_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_pg_cache: dict[str, str] = {}


class Sql:
    """Statements in the transaction of a Session (mixing with ORM work), a Connection,
    or a pooled driver connection (Database.write_sql)."""

    def __init__(self, owner: Session | Connection | Any, postgres: bool | None = None) -> None:
        if isinstance(owner, Session):
            owner.flush()  # ORM changes of this transaction must be visible to plain SQL
            owner = owner.connection()
        if isinstance(owner, Connection):
            postgres = owner.dialect.name == "postgresql"
            owner = owner.connection.driver_connection
        assert owner is not None and postgres is not None
        self.postgres = postgres
        self._cursor = owner.cursor()

    def one(self, query: str, **params: Any) -> tuple[Any, ...] | None:
        self._execute(query, params)
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def all(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        self._execute(query, params)
        return [tuple(row) for row in self._cursor.fetchall()]

    def run(self, query: str, **params: Any) -> int:
        self._execute(query, params)
        return int(self._cursor.rowcount)

    def _execute(self, query: str, params: dict[str, Any]) -> None:
        if self.postgres:  # psycopg wants %(name)s; sqlite3 takes :name as it is
            query = _pg_cache.get(query) or _pg_cache.setdefault(
                query, _PG_PARAM.sub(r"%(\1)s", query))
        self._cursor.execute(query, params)
