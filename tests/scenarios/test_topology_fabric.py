"""A fabric built from a Topology (simulator/cloud_fabric.py) with a real service: two
spines, two leaves, two hypervisors and a SoftGate, no tenants. The underlay must come
up on the configs the service renders: every BGP session Established, every VTEP's
loopback reachable from every other VTEP across the leaves and spines, and nothing but
loopbacks in the fabric. Afterwards no namespace of the run may be left.
"""

from __future__ import annotations

import functools
import itertools
import subprocess

from simulator.cloud_fabric import (
    CloudFabric,
    running_fabric,
    running_service_for_agents,
    wait_until_nothing_missing,
)
from simulator.fabric import wait_until
from simulator.topology import Topology
from tests.scenarios.conftest import require_fabric_prerequisites

TOPOLOGY = Topology(spines=2, leaves=2, hypervisors=2, softgates=1)
REACHABILITY_TIMEOUT_S = 15  # the routes follow the sessions within a second or two


def test_fabric_from_topology_converges_and_leaves_nothing_behind() -> None:
    require_fabric_prerequisites()
    with (running_service_for_agents() as (service, agent_service_url),
          running_fabric(TOPOLOGY, service.ok, agent_service_url) as cloud):
        prefix = cloud.fabric.prefix
        print(f"convergence: {cloud.timings}")
        assert_every_device_declared(cloud)
        assert_every_vtep_routes_to_every_other(cloud)
        assert_vteps_ping_each_other(cloud)
        assert_fabric_carries_loopbacks_only(cloud)
    assert not cloud.fabric.dir.exists()
    assert [name for name in namespaces() if name.startswith(prefix)] == []


def assert_every_device_declared(cloud: CloudFabric) -> None:
    devices = {device["name"]: device for device in cloud.request("GET", "/v1/devices", None)}
    assert set(devices) == set(TOPOLOGY.fabric_nodes)
    assert {name: device["loopback"] for name, device in devices.items()} == \
        TOPOLOGY.loopbacks()


def assert_every_vtep_routes_to_every_other(cloud: CloudFabric) -> None:
    def missing() -> list[str]:
        return [f"{vtep} has no route to {other}"
                for vtep, other in itertools.permutations(TOPOLOGY.hosts, 2)
                if f"{TOPOLOGY.loopback(other)}/32" not in installed_routes(cloud, vtep)]

    wait_until_nothing_missing("every VTEP loopback in every VTEP's routing table", missing,
                               REACHABILITY_TIMEOUT_S)


def installed_routes(cloud: CloudFabric, node: str) -> set[str]:
    routes = cloud.fabric.vtysh_json(node, "show ip route json")
    return {prefix for prefix, paths in routes.items()
            if any(path.get("installed") for path in paths)}


def assert_vteps_ping_each_other(cloud: CloudFabric) -> None:
    """From loopback to loopback: the data plane follows the routes."""
    for vtep, other in itertools.permutations(TOPOLOGY.hosts, 2):
        source, target = TOPOLOGY.loopback(vtep), TOPOLOGY.loopback(other)
        wait_until(f"{vtep} ({source}) to ping {other} ({target})",
                   functools.partial(pings, cloud, vtep, source, target),
                   timeout=REACHABILITY_TIMEOUT_S)


def pings(cloud: CloudFabric, node: str, source: str, target: str) -> bool:
    done = cloud.fabric.exec(node, "ping", "-c1", "-W1", "-q", "-I", source, target,
                             check=False)
    return done.returncode == 0


def assert_fabric_carries_loopbacks_only(cloud: CloudFabric) -> None:
    """Leaves pass routes on; the edge (hosts) keeps everything but loopbacks out, so the
    SoftGate's upstream default route reaches neither leaf nor spine."""
    loopbacks = {f"{address}/32" for address in TOPOLOGY.loopbacks().values()}
    for node in TOPOLOGY.spine_names + TOPOLOGY.leaf_names:
        routes = cloud.fabric.vtysh_json(node, "show ip bgp json")["routes"]
        assert set(routes) == loopbacks, node


def namespaces() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]
