"""Scenario fixtures: a real FRR fabric in namespaces, on configs the service renders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from provider_service.app import create_app
from provider_service.config import Settings
from provider_service.models import Base
from simulator import evpn_fabric
from simulator.fabric import missing_prerequisites
from tests.conftest import ADMIN_TOKEN, Api


def require_fabric_prerequisites() -> None:
    reason = missing_prerequisites()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the fabric scenarios: {reason}")
        pytest.skip(f"fabric scenarios skipped: {reason}")


@pytest.fixture(scope="module")
def small_fabric(tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[evpn_fabric.SmallFabric]:
    require_fabric_prerequisites()
    url = f"sqlite:///{tmp_path_factory.mktemp('fabric') / 'vxgate.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    app = create_app(Settings(database_url=url, admin_token=ADMIN_TOKEN))
    api = Api(app.test_client())

    def request(method: str, path: str, body: Any) -> Any:
        return api.ok(method, path, body)

    small = evpn_fabric.build(request)
    try:
        yield small
    finally:
        small.fabric.down()
        app.extensions["vxgate.db"].dispose()
        assert not Path(small.fabric.dir).exists()
