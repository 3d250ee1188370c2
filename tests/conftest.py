"""Shared fixtures: a migrated database (SQLite and PostgreSQL), the app, an API client.

Database-backed tests take `database_url`, which runs each of them twice: on a fresh
SQLite file copied from one migrated template, and on the PostgreSQL server set-up starts
(VXGATE_TEST_POSTGRES_URL), truncated before each test. Without that variable the
PostgreSQL half skips with the reason; under CI it fails instead, because CI has it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from provider_service.app import create_app
from provider_service.config import Settings
from provider_service.models import Base

ADMIN_TOKEN = "test-admin-token-0123456789"
POSTGRES_ENV = "VXGATE_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from the models; tests/functional/test_schema.py proves the migrations
    # produce the same schema.
    path = tmp_path_factory.mktemp("template") / "vxgate.db"
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    return path


def usable_postgres_url(prepare: Callable[[str], None]) -> str:
    """VXGATE_TEST_POSTGRES_URL after `prepare` emptied it. Without a usable server the
    test skips and says why; under CI it fails, because CI has one."""
    url = os.environ.get(POSTGRES_ENV, "")
    reason = ""
    if not url:
        reason = f"{POSTGRES_ENV} is not set (./quickstart test sets it)"
    else:
        try:
            prepare(url)
        except Exception as exc:  # any driver error means "no usable server"
            reason = f"PostgreSQL at {POSTGRES_ENV} is unusable: {str(exc).splitlines()[0]}"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    return url


def _schema_from_models(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    Base.metadata.create_all(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return usable_postgres_url(_schema_from_models)


def _truncate(url: str) -> None:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "vxgate.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate(url)
    return url


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    application = create_app(Settings(database_url=database_url, admin_token=ADMIN_TOKEN))
    yield application
    application.extensions["vxgate.db"].dispose()


class Api:
    """The test client with the admin token, and helpers that assert the status."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.client.open(path, method=method, json=body, headers=self.headers)

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = self.call(method, path, body)
        assert response.status_code == status, (response.status_code, response.get_json())
        return response.get_json()

    def fails(self, method: str, path: str, body: Any, status: int) -> str:
        """The one-line error of a request that must be refused with `status`."""
        response = self.call(method, path, body)
        assert response.status_code == status, (response.status_code, response.get_json())
        error: str = response.get_json()["error"]
        assert "\n" not in error and "Traceback" not in error
        return error


@pytest.fixture
def api(app: Flask) -> Api:
    return Api(app.test_client())


ZONE = "1"
PHYSNET = "200"


@pytest.fixture
def zone(api: Api) -> dict[str, Any]:
    """Zone 1 with one VXLAN physical network (200) using small pools tests can exhaust."""
    api.ok("PUT", f"/v1/zones/{ZONE}", {"name": "zone1", "asn_range": "65100-65199"})
    return api.ok("PUT", f"/v1/physical-networks/{PHYSNET}", {
        "zone_id": ZONE, "name": "guest", "l2vni_range": "10000-10009",
        "l3vni_range": "50000-50004", "vlan_range": "3000-3004",
    })
