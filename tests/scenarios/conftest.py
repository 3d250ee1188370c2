"""Scenario fixtures: a real FRR fabric in namespaces, on configs the service renders."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from simulator import evpn_fabric
from simulator.cloud import TOPOLOGY, Cloud, running_cloud
from simulator.fabric import missing_prerequisites, processes_of, run
from simulator.topology import Topology


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


def scenario_cloud(topology: Topology = TOPOLOGY) -> Iterator[Cloud]:
    """A whole cloud for one test module (`yield from` it in a module-scoped fixture);
    afterwards nothing of it may be left."""
    require_fabric_prerequisites()
    with running_cloud(topology=topology) as running:
        yield running
    assert not running.fabric.dir.exists()
    assert not processes_of(running.fabric.dir), "processes of the run left behind"
    assert running.fabric.prefix not in run(["ip", "netns", "list"]).stdout
