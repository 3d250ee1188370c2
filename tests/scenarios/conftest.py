"""Scenario fixtures: a real FRR fabric in namespaces, on configs the service renders."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from simulator import evpn_fabric
from simulator.fabric import missing_prerequisites
from simulator.local_service import in_process_service


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
    with in_process_service(tmp_path_factory.mktemp("fabric")) as request:
        small = evpn_fabric.build(request)
        try:
            yield small
        finally:
            small.fabric.down()
        assert not small.fabric.dir.exists()
