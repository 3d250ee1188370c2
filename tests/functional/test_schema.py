"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

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
