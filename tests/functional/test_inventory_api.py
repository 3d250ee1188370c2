"""Zones, physical networks, devices (with ASN allocation) and device state via the API."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ZONE, Api


def device(role: str = "hypervisor", loopback: str = "10.255.1.1", **extra: Any) -> dict[str, Any]:
    return {"zone_id": ZONE, "role": role, "loopback": loopback, **extra}


def test_zone_and_physnet_replay_changes_nothing(api: Api, zone: Any) -> None:
    again = api.ok("PUT", "/v1/physical-networks/200", {
        "zone_id": ZONE, "name": "guest", "l2vni_range": "10000-10009",
        "l3vni_range": "50000-50004", "vlan_range": "3000-3004",
    })
    assert again == zone
    assert zone["pools"]["vlan"] == {"range": "3000-3004", "size": 5, "used": 0}
    assert [z["id"] for z in api.ok("GET", "/v1/zones")] == [ZONE]


def test_default_vlan_range_is_3000_4094(api: Api) -> None:
    api.ok("PUT", "/v1/zones/9", {})
    physnet = api.ok("PUT", "/v1/physical-networks/9", {"zone_id": "9"})
    assert physnet["pools"]["vlan"]["range"] == "3000-4094"


def test_token_is_stored_only_as_a_digest(api: Api, zone: Any) -> None:
    secret = "s3cret-extension-token"
    physnet = api.ok("PUT", "/v1/physical-networks/200", {
        "zone_id": ZONE, "name": "guest", "service_url": "https://vxgate.example:8640",
        "token": secret,
    })
    assert physnet["token_registered"] is True
    assert secret not in str(physnet)


def test_devices_get_distinct_asns_and_keep_them(api: Api, zone: Any) -> None:
    hv1 = api.ok("PUT", "/v1/devices/hv1", device(uplinks=[{"interface": "uplink"}]))
    hv2 = api.ok("PUT", "/v1/devices/hv2", device(loopback="10.255.1.2"))
    assert (hv1["asn"], hv2["asn"]) == (65100, 65101)
    assert api.ok("PUT", "/v1/devices/hv1", device(uplinks=[{"interface": "uplink"}])) == hv1
    spine = api.ok("PUT", "/v1/devices/spine1", device("spine", "10.255.0.1", asn=65000))
    assert spine["asn"] == 65000 and spine["asn_allocated"] is False
    assert hv1["vtep_address"] == "10.255.1.1"
    assert hv1["uplinks"] == [{"interface": "uplink", "peer_device": "", "peer_interface": ""}]


def test_deleted_device_releases_its_asn(api: Api, zone: Any) -> None:
    api.ok("PUT", "/v1/devices/hv1", device())
    api.ok("DELETE", "/v1/devices/hv1", status=204)
    api.ok("DELETE", "/v1/devices/hv1", status=204)
    assert api.ok("GET", f"/v1/zones/{ZONE}")["pools"]["asn"]["used"] == 0


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/zones/1", {"asn_range": "10-5"}, 400, "asn_range: range start 10 is above"),
        ("/v1/zones/1", {"rt_asn": 70000}, 400, "rt_asn: 70000 is outside 1-65535"),
        ("/v1/zones/bad id", {}, 400, "zone_id: not a valid id"),
        ("/v1/physical-networks/7", {"zone_id": ZONE, "l2vni_range": "1-20000000"}, 400,
         "l2vni_range: 20000000 is outside 1-16777215"),
        ("/v1/physical-networks/7", {"zone_id": ZONE, "l2vni_range": "100-200",
                                     "l3vni_range": "150-300"}, 400, "overlaps l2vni_range"),
        ("/v1/physical-networks/7", {"zone_id": ZONE, "vlan_range": "0-10"}, 400,
         "vlan_range: 0 is outside 1-4094"),
        ("/v1/physical-networks/7", {"zone_id": ZONE, "isolation_method": "gre"}, 400,
         "isolation_method: 'gre' is not one of vxlan, vlan"),
        ("/v1/physical-networks/7", {"zone_id": "2"}, 404, "unknown zone 2"),
        ("/v1/devices/hv1", device(role="router"), 400, "role: 'router' is not one of"),
        ("/v1/devices/hv1", device(loopback="2001:db8::1"), 400, "expected an IPv4 address"),
        ("/v1/devices/hv 1", device(), 400, "name: use 1-63 letters"),
        ("/v1/devices/hv1", device(uplinks=[{"interface": "a-very-long-interface"}]), 400,
         "at most 15 characters"),
        ("/v1/devices/hv1", device(uplinks=[{"interface": "eth0;reboot"}]), 400,
         "uplinks[0].interface: use 1-63 letters"),
    ],
)
def test_bad_inventory_input(
    api: Api, zone: Any, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    assert message in api.fails("PUT", path, body, status)
    assert [p["id"] for p in api.ok("GET", "/v1/physical-networks")] == ["200"]
    assert api.ok("GET", "/v1/devices") == []


def test_exhausted_asn_pool(api: Api) -> None:
    api.ok("PUT", "/v1/zones/3", {"asn_range": "65001-65001"})
    api.ok("PUT", "/v1/devices/a", {"zone_id": "3", "role": "leaf", "loopback": "10.0.0.1"})
    error = api.fails("PUT", "/v1/devices/b",
                      {"zone_id": "3", "role": "leaf", "loopback": "10.0.0.2"}, 409)
    assert "asn pool 65001-65001" in error


def test_artifacts_are_served_by_generation(api: Api, zone: Any) -> None:
    api.ok("PUT", "/v1/devices/sg1", device("softgate", "10.255.2.1"))
    assert api.ok("PUT", "/v1/devices/sg1/config/frr", {"content": "frr v1\n"})["generation"] == 1
    assert api.ok("PUT", "/v1/devices/sg1/config/nft", {"content": "table\n"})["generation"] == 2
    # Same text again: nothing changes, so an agent at generation 2 has nothing to fetch.
    assert api.ok("PUT", "/v1/devices/sg1/config/frr", {"content": "frr v1\n"})["generation"] == 1
    assert api.ok("GET", "/v1/devices/sg1/config?since=2")["artifacts"] == {}
    api.ok("PUT", "/v1/devices/sg1/config/frr", {"content": "frr v2\n"})
    changed = api.ok("GET", "/v1/devices/sg1/config?since=2")
    assert changed["generation"] == 3
    assert list(changed["artifacts"]) == ["frr"]
    assert changed["artifacts"]["frr"]["content"] == "frr v2\n"
    assert set(api.ok("GET", "/v1/devices/sg1/config")["artifacts"]) == {"frr", "nft"}


def test_status_reports(api: Api, zone: Any) -> None:
    api.ok("PUT", "/v1/devices/sg1", device("softgate", "10.255.2.1"))
    report = {"generation": 3, "objects": [
        {"kind": "network", "id": "42", "state": "ok"},
        {"kind": "nat", "id": "203.0.113.5", "state": "error",
         "reason": "nft: syntax error\nline 2"},
    ]}
    assert api.ok("PUT", "/v1/devices/sg1/status", report)["recorded"] == 2
    api.ok("PUT", "/v1/devices/sg1/status", report)
    errors = api.ok("GET", "/v1/devices/sg1/status?state=error")["objects"]
    assert [(e["id"], e["reason"]) for e in errors] == [("203.0.113.5", "nft: syntax error line 2")]
    assert len(api.ok("GET", "/v1/devices/sg1/status")["objects"]) == 2
    assert "state: 'bad' is not one of" in api.fails(
        "PUT", "/v1/devices/sg1/status",
        {"generation": 1, "objects": [{"kind": "x", "id": "1", "state": "bad"}]}, 400)
    assert "unknown device nope" in api.fails("GET", "/v1/devices/nope/config", None, 404)
