"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from provider_service import schema
from provider_service.models import Base


def _schema_diff(url: str) -> list[object]:
    engine = create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff: list[object] = compare_metadata(context, Base.metadata)
    engine.dispose()
    return diff


def test_sqlite_migrations_match_models_and_rerun_is_a_noop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    schema.upgrade(url)
    schema.upgrade(url)
    assert _schema_diff(url) == []


def test_postgres_migrations_match_models(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    schema.upgrade(postgres_url)
    schema.upgrade(postgres_url)
    assert _schema_diff(postgres_url) == []


def test_services_starting_together_migrate_once(postgres_url: str) -> None:
    """Several services on one PostgreSQL start at once: one migrates, the others wait.

    Separate processes, as services are: Alembic keeps global state per process.
    """
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    code = "import sys; from provider_service import schema; schema.upgrade(sys.argv[1])"
    starts = [subprocess.Popen([sys.executable, "-c", code, postgres_url],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
              for _ in range(3)]
    outputs = [start.communicate(timeout=60)[0].decode() for start in starts]
    assert [start.returncode for start in starts] == [0, 0, 0], outputs
    assert _schema_diff(postgres_url) == []
