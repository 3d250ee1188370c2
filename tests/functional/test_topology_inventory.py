"""The simulator's inventory declarations (simulator/topology.py) against the real API:
every body is accepted as it is, and the devices come back as the topology describes."""

from __future__ import annotations

from typing import Any

from simulator.cloud_fabric import declare_inventory
from simulator.topology import Topology
from tests.conftest import Api

TOPOLOGY = Topology(spines=2, leaves=2, hypervisors=3, softgates=2)


def declare(api: Api, topology: Topology) -> None:
    def request(method: str, path: str, body: Any) -> Any:
        return api.ok(method, path, body)

    declare_inventory(request, topology)


def test_the_service_takes_the_inventory_as_declared(api: Api) -> None:
    declare(api, TOPOLOGY)
    declare(api, TOPOLOGY)  # PUTs: declaring again changes nothing
    devices = {device["name"]: device for device in api.ok("GET", "/v1/devices")}
    assert {name: device["loopback"] for name, device in devices.items()} == \
        TOPOLOGY.loopbacks()
    assert {name: device["role"] for name, device in devices.items()} == \
        {node: TOPOLOGY.role(node) for node in TOPOLOGY.fabric_nodes}
    assert len({device["asn"] for device in devices.values()}) == len(devices)
    assert devices["sg2"]["upstream_peers"] == [
        {"address": "198.51.100.3", "remote_asn": 64496, "bfd": True}]
    physnet = api.ok("GET", "/v1/physical-networks/200")
    assert (physnet["name"], physnet["isolation_method"]) == ("guest", "vxlan")


def test_a_leaf_passes_on_its_hosts_loopbacks(api: Api) -> None:
    """With hosts under the leaves, a leaf is transit for loopbacks: no outbound filter
    (the hosts filter at the edge)."""
    declare(api, TOPOLOGY)
    leaf = api.ok("GET", "/v1/devices/leaf1/config")["artifacts"]["frr.conf"]["content"]
    assert "neighbor to-hv1 interface peer-group FABRIC" in leaf
    assert "VXGATE-FABRIC-OUT" not in leaf
    hypervisor = api.ok("GET", "/v1/devices/hv1/config")["artifacts"]["frr.conf"]["content"]
    assert "neighbor FABRIC prefix-list VXGATE-FABRIC-OUT out" in hypervisor


def test_a_vlan_zone_declares_a_vlan_physical_network(api: Api) -> None:
    declare(api, Topology(isolation="vlan"))
    physnet = api.ok("GET", "/v1/physical-networks/200")
    assert physnet["isolation_method"] == "vlan"
