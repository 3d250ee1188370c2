"""Scenario fixtures: a real FRR fabric in namespaces, on configs the service renders."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from simulator import evpn_fabric
from simulator.fabric import missing_prerequisites


def require_fabric_prerequisites() -> None:
    reason = missing_prerequisites()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the fabric scenarios: {reason}")
        pytest.skip(f"fabric scenarios skipped: {reason}")


@pytest.fixture(scope="session")
def small_fabric() -> Iterator[evpn_fabric.SmallFabric]:
    require_fabric_prerequisites()
    with evpn_fabric.running() as small:
        yield small
    assert not small.fabric.dir.exists()
