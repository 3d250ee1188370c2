"""frr.conf as the service renders it for each golden case, on SQLite and PostgreSQL.

The same state gives byte-identical text on both databases and on every render; the
config endpoint bumps a device's generation only when the text changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Api
from tests.golden.frr_cases import CASES, ZONE
from tests.golden.support import check_golden

GOLDEN_DIR = Path(__file__).parents[1] / "golden" / "frr"


def rendered(api: Api, device: str) -> tuple[int, str]:
    answer = api.ok("GET", f"/v1/devices/{device}/config")
    artifact = answer["artifacts"]["frr.conf"]
    return artifact["generation"], artifact["content"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_config_matches_golden(api: Api, case: str) -> None:
    device = CASES[case](lambda method, path, body: api.ok(method, path, body))
    _, text = rendered(api, device)
    check_golden(GOLDEN_DIR / f"{case}.conf", text)
    generation = api.ok("GET", f"/v1/devices/{device}/config")["generation"]
    again = api.ok("GET", f"/v1/devices/{device}/config?since={generation}")
    assert again["artifacts"] == {} and again["generation"] == generation


def test_generation_moves_only_when_the_config_changes(api: Api) -> None:
    request = lambda method, path, body: api.ok(method, path, body)  # noqa: E731
    device = CASES["hypervisor"](request)
    first, text = rendered(api, device)
    assert rendered(api, device) == (first, text)
    api.ok("PUT", "/v1/networks/net3", {"zone_id": ZONE, "physical_network_id": "200",
                                        "cidr": "10.100.2.0/24", "gateway": "10.100.2.1"})
    second, changed = rendered(api, device)
    assert second == first + 1
    assert "vni 10002" in changed and "vni 10002" not in text
    api.ok("DELETE", "/v1/networks/net3", status=204)
    third, restored = rendered(api, device)
    assert (third, restored) == (second + 1, text)


def test_overlapping_vpcs_get_one_vrf_each(api: Api) -> None:
    device = CASES["softgate_vpcs"](lambda method, path, body: api.ok(method, path, body))
    _, text = rendered(api, device)
    vrf_blocks = text.split("router bgp ")[2:]
    assert len(vrf_blocks) == 2
    assert all("network 10.1.1.0/24" in block and "network 10.1.2.0/24" in block
               for block in vrf_blocks)
    targets = {line.split()[-1] for block in vrf_blocks for line in block.splitlines()
               if "route-target import" in line}
    assert len(targets) == 2


def test_direct_connect_needs_a_vtep_leaf_and_a_vxlan_network(api: Api) -> None:
    request = lambda method, path, body: api.ok(method, path, body)  # noqa: E731
    CASES["leaf"](request)
    error = api.fails("PUT", "/v1/devices/leaf1/direct-connects/swp5/100",
                      {"network_id": "net1"}, 409)
    assert "not a VTEP leaf" in error
    api.ok("PUT", "/v1/devices/leaf1", {"zone_id": ZONE, "role": "leaf",
                                        "loopback": "10.255.3.1", "vtep": True})
    assert "vlan" in api.fails("PUT", "/v1/devices/leaf1/direct-connects/swp5/4095",
                               {"network_id": "net1"}, 400)
    assert api.fails("PUT", "/v1/devices/leaf1/direct-connects/swp5/100",
                     {"network_id": "nope"}, 404)
    api.ok("PUT", "/v1/zones/2", {})
    api.ok("PUT", "/v1/physical-networks/201", {"zone_id": "2", "l2vni_range": "20000-20009",
                                                "l3vni_range": "60000-60009"})
    api.ok("PUT", "/v1/networks/other", {"zone_id": "2", "physical_network_id": "201",
                                         "cidr": "10.9.0.0/24", "gateway": "10.9.0.1"})
    assert "in zone 2" in api.fails("PUT", "/v1/devices/leaf1/direct-connects/swp5/100",
                                    {"network_id": "other"}, 409)
    port = api.ok("PUT", "/v1/devices/leaf1/direct-connects/swp5/100", {"network_id": "net1"})
    assert api.ok("GET", "/v1/devices/leaf1/direct-connects") == [port]
    api.ok("DELETE", "/v1/devices/leaf1/direct-connects/swp5/100", status=204)
    api.ok("DELETE", "/v1/devices/leaf1/direct-connects/swp5/100", status=204)
    assert api.ok("GET", "/v1/devices/leaf1/direct-connects") == []


def test_upstream_peers_only_on_softgates(api: Api) -> None:
    CASES["nothing_assigned"](lambda method, path, body: api.ok(method, path, body))
    error = api.fails("PUT", "/v1/devices/hv9", {
        "zone_id": ZONE, "role": "hypervisor", "loopback": "10.255.1.9",
        "upstream_peers": [{"address": "198.51.100.1", "remote_asn": 64496}]}, 400)
    assert "only SoftGates" in error
    error = api.fails("PUT", "/v1/devices/sg9", {
        "zone_id": ZONE, "role": "softgate", "loopback": "10.255.2.9",
        "upstream_peers": [{"address": "198.51.100.1\nrouter bgp 1", "remote_asn": 1}]}, 400)
    assert "upstream_peers[0].address" in error
