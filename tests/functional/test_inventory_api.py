"""Zones, physical networks, devices (with ASN allocation) and device state via the API."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from provider_service import device_state
from provider_service.db import Database
from tests import races
from tests.conftest import PHYSNET, ZONE, Api


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
        # no longer than the columns: PostgreSQL would refuse what SQLite stores
        ("/v1/zones/1", {"name": "z" * 256}, 400, "name: 256 characters is more than 255"),
        ("/v1/physical-networks/7", {"zone_id": ZONE, "name": "p" * 256}, 400,
         "name: 256 characters is more than 255"),
        ("/v1/physical-networks/7", {"zone_id": ZONE, "service_url": "http://" + "x" * 249},
         400, "service_url: 256 characters is more than 255"),
        ("/v1/devices/hv1", device(uplinks=[{"interface": "eth0",
                                             "peer_interface": "p" * 16}]), 400,
         "uplinks[0].peer_interface: interface names are at most 15 characters"),
        # the service URL is an http(s) URL with a host
        ("/v1/physical-networks/7", {"zone_id": ZONE, "service_url": "ftp://vxgate"}, 400,
         "service_url: expected an http:// or https:// URL with a host"),
        ("/v1/physical-networks/7", {"zone_id": ZONE, "service_url": "vxgate:8640"}, 400,
         "service_url: expected an http:// or https:// URL"),
        ("/v1/physical-networks/7", {"zone_id": ZONE, "service_url": "https://"}, 400,
         "service_url: expected an http:// or https:// URL with a host"),
        ("/v1/physical-networks/7", {"zone_id": ZONE, "service_url": "http://vxgate:99999"},
         400, "service_url: not a URL"),
        ("/v1/physical-networks/7", {"zone_id": ZONE, "service_url": "http://vx\ngate"}, 400,
         "service_url: a URL has no spaces or control characters"),
        ("/v1/physical-networks/7", {"zone_id": ZONE, "service_url": "http://vxgate/ x"}, 400,
         "service_url: a URL has no spaces or control characters"),
        ("/v1/physical-networks/7", {"zone_id": ZONE, "service_url": ["http://vxgate"]}, 400,
         "service_url: expected a string"),
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
    # A hypervisor: the service renders only frr.conf for it.
    api.ok("PUT", "/v1/devices/hv1", device("hypervisor", "10.255.1.1"))
    assert api.ok("PUT", "/v1/devices/hv1/config/frr", {"content": "frr v1\n"})["generation"] == 1
    assert api.ok("PUT", "/v1/devices/hv1/config/nft", {"content": "table\n"})["generation"] == 2
    # Same text again: nothing changes, so an agent at generation 2 has nothing to fetch.
    assert api.ok("PUT", "/v1/devices/hv1/config/frr", {"content": "frr v1\n"})["generation"] == 1
    # The first GET renders frr.conf from the desired state: generation 3.
    rendered = api.ok("GET", "/v1/devices/hv1/config?since=2")
    assert (rendered["generation"], list(rendered["artifacts"])) == (3, ["frr.conf"])
    assert api.ok("GET", "/v1/devices/hv1/config?since=3")["artifacts"] == {}
    api.ok("PUT", "/v1/devices/hv1/config/frr", {"content": "frr v2\n"})
    changed = api.ok("GET", "/v1/devices/hv1/config?since=3")
    assert changed["generation"] == 4
    assert list(changed["artifacts"]) == ["frr"]
    assert changed["artifacts"]["frr"]["content"] == "frr v2\n"
    assert set(api.ok("GET", "/v1/devices/hv1/config")["artifacts"]) == {"frr", "frr.conf", "nft"}
    assert "rendered by the service" in api.fails(
        "PUT", "/v1/devices/hv1/config/frr.conf", {"content": "x\n"}, 409)


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
    assert api.fails("GET", "/v1/devices/nope", None, 404) == "unknown device nope"


def test_names_and_urls_as_long_as_their_columns_are_stored(api: Api, zone: Any) -> None:
    assert api.ok("PUT", "/v1/zones/1", {"name": "z" * 255})["name"] == "z" * 255
    url = "https://vxgate.example:8640/" + "x" * 227
    physnet = api.ok("PUT", "/v1/physical-networks/7", {
        "zone_id": ZONE, "name": "p" * 255, "service_url": url,
        "l2vni_range": "20000-20009", "l3vni_range": "60000-60009"})
    assert (physnet["name"], physnet["service_url"]) == ("p" * 255, url)
    hv1 = api.ok("PUT", "/v1/devices/hv1", device(uplinks=[
        {"interface": "i" * 15, "peer_device": "d" * 63, "peer_interface": "p" * 15}]))
    assert hv1["uplinks"] == [{"interface": "i" * 15, "peer_device": "d" * 63,
                               "peer_interface": "p" * 15}]


# --- physical networks of one zone: distinct names, ranges apart -------------------------


def physnet(name: str, l2vni: str = "20000-20009", l3vni: str = "60000-60009",
            **extra: Any) -> dict[str, Any]:
    return {"zone_id": ZONE, "name": name, "l2vni_range": l2vni, "l3vni_range": l3vni,
            **extra}


def test_physical_network_names_are_unique_in_a_zone(api: Api, zone: Any) -> None:
    error = api.fails("PUT", "/v1/physical-networks/300", physnet("guest"), 409)
    assert error == f"name: physical network {PHYSNET} of zone 1 is already called 'guest'"
    api.ok("PUT", "/v1/physical-networks/300", physnet("storage"))
    assert "already called 'storage'" in api.fails(
        "PUT", f"/v1/physical-networks/{PHYSNET}",
        {**physnet("storage"), "l2vni_range": "10000-10009", "l3vni_range": "50000-50004"}, 409)
    api.ok("PUT", "/v1/physical-networks/300", physnet("storage"))  # its own name: a replay
    # Unnamed ones are not "the same name"; other zones have names of their own.
    api.ok("PUT", "/v1/physical-networks/301", physnet("", "21000-21009", "61000-61009"))
    api.ok("PUT", "/v1/physical-networks/302", physnet("", "22000-22009", "62000-62009"))
    api.ok("PUT", "/v1/zones/2", {})
    api.ok("PUT", "/v1/physical-networks/400", {"zone_id": "2", "name": "guest"})
    assert sorted(p["id"] for p in api.ok("GET", "/v1/physical-networks")) == [
        PHYSNET, "300", "301", "302", "400"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (physnet("p", l2vni="10009-10100"),
         "l2vni_range: 10009-10100 overlaps the l2vni range 10000-10009 of physical network 200"),
        # L2 and L3 VNIs are one number space
        (physnet("p", l2vni="50004-50010"),
         "l2vni_range: 50004-50010 overlaps the l3vni range 50000-50004 of physical network 200"),
        (physnet("p", l3vni="9000-10000"),
         "l3vni_range: 9000-10000 overlaps the l2vni range 10000-10009 of physical network 200"),
        (physnet("p", isolation_method="vlan", l2vni="1-2", l3vni="3-4", vlan_range="3004-3100"),
         None),  # 200 uses VXLAN: its VLAN pool is idle, so it may overlap
    ],
)
def test_ranges_of_physical_networks_in_a_zone_do_not_overlap(
    api: Api, zone: Any, body: dict[str, Any], message: str | None
) -> None:
    if message is None:
        api.ok("PUT", "/v1/physical-networks/300", body)
        return
    assert api.fails("PUT", "/v1/physical-networks/300", body, 400) == message
    assert [p["id"] for p in api.ok("GET", "/v1/physical-networks")] == [PHYSNET]


def test_pools_in_use_are_checked_when_the_isolation_method_changes(
    api: Api, zone: Any
) -> None:
    # Overlapping VLAN pools are fine while one of them is idle...
    vlan = physnet("vlan", l2vni="1-2", l3vni="3-4", isolation_method="vlan",
                   vlan_range="3000-3100")
    api.ok("PUT", "/v1/physical-networks/300", vlan)
    # ...but not once 200 hands out VLANs too.
    error = api.fails("PUT", f"/v1/physical-networks/{PHYSNET}", {
        "zone_id": ZONE, "name": "guest", "isolation_method": "vlan",
        "l2vni_range": "10000-10009", "l3vni_range": "50000-50004", "vlan_range": "3000-3004",
    }, 400)
    assert error == ("vlan_range: 3000-3004 overlaps the vlan range 3000-3100 of physical "
                     "network 300")
    # The same check seen from the other side: a VXLAN network may not make its L2VNI
    # pool overlap 300's, which is idle only while 300 uses VLANs.
    api.ok("PUT", "/v1/physical-networks/300", {**vlan, "l2vni_range": "10000-10001"})
    assert "overlaps the l2vni range 10000-10009" in api.fails(
        "PUT", "/v1/physical-networks/300",
        {**vlan, "l2vni_range": "10000-10001", "isolation_method": "vxlan"}, 400)


def test_many_networks_on_two_physical_networks_of_a_zone(api: Api, zone: Any) -> None:
    """Apart ranges never share numbers: no pool runs dry before its size."""
    api.ok("PUT", "/v1/physical-networks/300", physnet("p3", "20000-20099", "60000-60099"))
    for index in range(70):
        api.ok("PUT", f"/v1/networks/a{index}", {
            "zone_id": ZONE, "cidr": "10.1.0.0/24", "gateway": "10.1.0.1",
            "physical_network_id": "300"})
    net = api.ok("PUT", "/v1/networks/b", {"zone_id": ZONE, "cidr": "10.1.0.0/24",
                                           "gateway": "10.1.0.1",
                                           "physical_network_id": PHYSNET})
    assert (net["segment"]["id"], net["l3vni"]) == (10000, 50000)


# --- pool ranges change; numbers in use keep their owners --------------------------------


def test_pool_start_moves_down_only_while_nothing_is_in_use(api: Api, zone: Any) -> None:
    network = {"zone_id": ZONE, "cidr": "10.1.0.0/24", "gateway": "10.1.0.1"}
    pools = {"zone_id": ZONE, "name": "guest", "l3vni_range": "50000-50004"}
    api.ok("PUT", "/v1/networks/1", network)
    error = api.fails("PUT", f"/v1/physical-networks/{PHYSNET}",
                      {**pools, "l2vni_range": "9990-10009"}, 400)
    assert error == "l2vni_range: the start can only move up while numbers are in use"
    # Up is fine; numbers in use keep their owners, new ones come from the new range.
    api.ok("PUT", f"/v1/physical-networks/{PHYSNET}", {**pools, "l2vni_range": "10005-10009"})
    assert api.ok("PUT", "/v1/networks/2", network)["segment"]["id"] == 10005
    assert api.ok("GET", "/v1/networks/1")["segment"]["id"] == 10000
    # Once nothing is in use, the start may move down, and its numbers are handed out.
    api.ok("DELETE", "/v1/networks/1", status=204)
    api.ok("DELETE", "/v1/networks/2", status=204)
    api.ok("PUT", f"/v1/physical-networks/{PHYSNET}", {**pools, "l2vni_range": "9990-10009"})
    assert api.ok("PUT", "/v1/networks/3", network)["segment"]["id"] == 9990
    used = api.ok("GET", f"/v1/physical-networks/{PHYSNET}")["pools"]["l2vni"]
    assert used == {"range": "9990-10009", "size": 20, "used": 1}


def test_zone_asn_pool_start_moves_down_only_while_nothing_is_in_use(api: Api) -> None:
    api.ok("PUT", "/v1/zones/3", {"asn_range": "65001-65001"})
    api.ok("PUT", "/v1/devices/a", {"zone_id": "3", "role": "leaf", "loopback": "10.0.0.1"})
    assert api.fails("PUT", "/v1/zones/3", {"asn_range": "65000-65001"}, 400) == (
        "asn_range: the start can only move up while numbers are in use")
    api.ok("DELETE", "/v1/devices/a", status=204)
    api.ok("PUT", "/v1/zones/3", {"asn_range": "65000-65001"})
    device_a = api.ok("PUT", "/v1/devices/a",
                      {"zone_id": "3", "role": "leaf", "loopback": "10.0.0.1"})
    assert device_a["asn"] == 65000


# --- PostgreSQL race: two artifacts stored at once -----------------------------------------


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_artifacts_stored_at_once_get_their_own_generations(
    api: Api, zone: Any, app: Flask
) -> None:
    api.ok("PUT", "/v1/devices/hv1", device("hypervisor", "10.255.1.1"))
    db: Database = app.extensions["vxgate.db"]
    outcome: dict[str, Any] = {}

    def store_other() -> None:
        try:
            outcome["generation"] = db.write(lambda s: device_state.store_artifact(
                s, device_state.get_device(s, "hv1", lock=True), "nft", "table\n"))
        except BaseException as exc:  # reported below, not lost in the thread
            outcome["error"] = exc

    with Session(db.engine) as session:
        session.begin()
        hv1 = device_state.get_device(session, "hv1", lock=True)
        assert device_state.store_artifact(session, hv1, "frr", "frr v1\n") == 1
        session.flush()
        thread = threading.Thread(target=store_other, daemon=True)
        thread.start()
        races.wait_until_blocked(db, thread)
        session.commit()
    thread.join(timeout=30)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["generation"] == 2
    config = api.ok("GET", "/v1/devices/hv1/config")  # also renders frr.conf: generation 3
    assert config["generation"] == 3
    assert {name: a["generation"] for name, a in config["artifacts"].items()} == {
        "frr": 1, "nft": 2, "frr.conf": 3}


