"""Scenario fixtures: a real FRR fabric in namespaces, on configs the service renders."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from simulator import evpn_fabric
from simulator.cloud import TOPOLOGY, Cloud, running_cloud
from simulator.fabric import missing_prerequisites, processes_of, run, wait_until
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
    # A short-lived child of a killed process (dhclient's hook script) may still be
    # finishing; a daemon left running (a leak) is still there after the wait.
    wait_until("the run's last processes to end (else a leak: "
               f"{processes_of(running.fabric.dir)})",
               lambda: not processes_of(running.fabric.dir), timeout=10, interval=0.2)
    assert running.fabric.prefix not in run(["ip", "netns", "list"]).stdout
