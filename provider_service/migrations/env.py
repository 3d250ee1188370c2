"""Alembic environment: runs migrations on the URL set by provider_service.schema."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from provider_service.models import Base

MIGRATION_LOCK_KEY = 0x76786761  # "vxga"
config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs via copies
            compare_type=True,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Several services starting at once on one database: one migrates, the
                # others wait and then find nothing to do.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": MIGRATION_LOCK_KEY})
            context.run_migrations()
    engine.dispose()


run_migrations_online()
