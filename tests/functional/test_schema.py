"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from provider_service import schema
from provider_service.app import create_app
from provider_service.config import Settings
from provider_service.models import Base
from tests.conftest import ADMIN_TOKEN, Api


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


# --- 3f6b2d9c41e7: ingress rules of ROUTED networks carry no public IP ------------------

BEFORE_ROUTED_INGRESS = "a75d66a7825d"
ROUTED_INGRESS = "3f6b2d9c41e7"
RULE_SQL = ("INSERT INTO firewall_rules (network_id, rule_id, direction, protocol,"
            " public_ip_id, source_cidrs, dest_cidrs, created_at, updated_at) VALUES"
            " (:network, :rule, :direction, 'all', :ip, '', :dest,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")


def _empty_database(url: str, tmp_path: Path) -> str:
    if url == "sqlite":
        return f"sqlite:///{tmp_path / 'migrated.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


def _declare_networks(url: str) -> None:
    """A NATTED network 42 with public IP 203.0.113.5 and its firewall, a ROUTED network
    43: through the API, which runs on the old schema as well as on the new."""
    app = create_app(Settings(database_url=url, admin_token=ADMIN_TOKEN))
    api = Api(app.test_client())
    api.ok("PUT", "/v1/zones/1", {"name": "zone1"})
    api.ok("PUT", "/v1/physical-networks/200", {"zone_id": "1", "name": "guest"})
    for network_id, cidr, mode in (("42", "10.1.0.0/24", "natted"),
                                   ("43", "198.18.10.0/24", "routed")):
        api.ok("PUT", f"/v1/networks/{network_id}", {
            "zone_id": "1", "cidr": cidr, "gateway": cidr.replace("0/24", "1"), "mode": mode})
    api.ok("PUT", "/v1/zones/1/public-ips/203.0.113.5", {
        "network_id": "42", "cidr": "203.0.113.5/24", "gateway": "203.0.113.1"})
    api.ok("PUT", "/v1/networks/42/firewall", {"default_egress_allow": True, "rules": [
        {"id": 1, "type": "ingress", "protocol": "tcp", "portStart": 22,
         "publicIp": "203.0.113.5"},
        {"id": 2, "type": "egress", "protocol": "all"}]})
    app.extensions["vxgate.db"].dispose()


def _insert_rule(url: str, **row: Any) -> bool:
    """Whether the database takes the firewall rule row."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(RULE_SQL), {"ip": None, "dest": "", **row})
        return True
    except IntegrityError:
        return False
    finally:
        engine.dispose()


def _rules(url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT network_id, rule_id, direction, public_ip_id IS NOT NULL, dest_cidrs"
            " FROM firewall_rules ORDER BY network_id, rule_id")).all()
    engine.dispose()
    return [tuple(row) for row in rows]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_routed_ingress_migration_keeps_rules_and_goes_both_ways(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    url = _empty_database(
        backend if backend == "sqlite" else request.getfixturevalue("postgres_url"), tmp_path)
    config = schema.alembic_config(url)
    command.upgrade(config, BEFORE_ROUTED_INGRESS)
    _declare_networks(url)
    routed = {"network": "43", "rule": 5, "direction": "ingress", "dest": "198.18.10.10/32"}
    assert not _insert_rule(url, **routed)  # the old constraint: ingress needs a public IP
    natted = [("42", 1, "ingress", True, ""), ("42", 2, "egress", False, "")]
    assert _rules(url) == natted

    command.upgrade(config, ROUTED_INGRESS)
    assert _rules(url) == natted  # the table is rebuilt on SQLite: rows kept
    assert _insert_rule(url, **routed)
    engine = create_engine(url)
    with engine.connect() as connection:
        public_ip_id = connection.execute(text("SELECT id FROM public_ips")).scalar_one()
    engine.dispose()
    assert not _insert_rule(url, network="42", rule=6, direction="egress", ip=public_ip_id)
    command.upgrade(config, "head")  # later migrations, so the models compare
    assert _schema_diff(url) == []

    command.downgrade(config, BEFORE_ROUTED_INGRESS)  # the old schema cannot hold rule 5
    assert _rules(url) == natted
    assert not _insert_rule(url, **routed)
    schema.upgrade(url)
    schema.upgrade(url)
    assert _rules(url) == natted and _insert_rule(url, **routed)
