"""Networks and VPCs through the API: allocation, idempotent replays, validation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import PHYSNET, ZONE, Api


def isolated(cidr: str = "10.1.0.0/24", gateway: str = "10.1.0.1", **extra: Any) -> dict[str, Any]:
    return {"zone_id": ZONE, "cidr": cidr, "gateway": gateway, **extra}


def test_network_gets_vni_and_l3vni(api: Api, zone: Any) -> None:
    net = api.ok("PUT", "/v1/networks/42", isolated())
    assert net["segment"] == {"kind": "vni", "id": 10000}
    assert net["broadcast_domain_type"] == "Vxlan"
    assert net["broadcast_uri"] == "vxlan://10000"
    assert net["l3vni"] == 50000
    assert net["route_targets"] == {"l2": "65000:10000", "l3": "65000:50000"}
    assert net["physical_network_id"] == PHYSNET


def test_replay_changes_nothing(api: Api, zone: Any) -> None:
    first = api.ok("PUT", "/v1/networks/42", isolated())
    second = api.ok("PUT", "/v1/networks/42", isolated())
    assert first == second
    assert api.ok("GET", f"/v1/physical-networks/{PHYSNET}")["pools"]["l2vni"]["used"] == 1


def test_network_keeps_vni_through_shutdown_and_reimplement(api: Api, zone: Any) -> None:
    first = api.ok("PUT", "/v1/networks/42", isolated(state="implemented"))
    api.ok("PUT", "/v1/networks/43", isolated())
    api.ok("PUT", "/v1/networks/42", isolated(state="shutdown"))
    again = api.ok("PUT", "/v1/networks/42", isolated(state="implemented"))
    assert again["broadcast_uri"] == first["broadcast_uri"]
    assert again["l3vni"] == first["l3vni"]


def test_destroy_releases_and_is_idempotent(api: Api, zone: Any) -> None:
    api.ok("PUT", "/v1/networks/42", isolated())
    api.ok("DELETE", "/v1/networks/42", status=204)
    api.ok("DELETE", "/v1/networks/42", status=204)
    api.fails("GET", "/v1/networks/42", None, 404)
    pools = api.ok("GET", f"/v1/physical-networks/{PHYSNET}")["pools"]
    assert pools["l2vni"]["used"] == 0 and pools["l3vni"]["used"] == 0


def test_exhausted_pool_is_a_clear_error_and_released_numbers_return(
    api: Api, zone: Any
) -> None:
    vnis = {api.ok("PUT", f"/v1/networks/{i}", isolated())["segment"]["id"] for i in range(5)}
    assert vnis == set(range(10000, 10005))
    # The L3VNI pool (5 numbers) is used up by the five isolated networks.
    error = api.fails("PUT", "/v1/networks/99", isolated(), 409)
    assert "l3vni pool 50000-50004" in error and "no free number" in error
    assert api.fails("GET", "/v1/networks/99", None, 404)  # nothing half-written
    api.ok("DELETE", "/v1/networks/3", status=204)
    reused = api.ok("PUT", "/v1/networks/99", isolated())
    assert reused["l3vni"] == 50003  # the released one, as the cursor is past the end
    assert reused["segment"]["id"] == 10005  # fresh numbers first while there are any


def test_vlan_mode_hands_out_vlans(api: Api, zone: Any) -> None:
    api.ok("PUT", "/v1/physical-networks/300", {
        "zone_id": ZONE, "name": "vlan-transport", "isolation_method": "vlan",
        "l2vni_range": "20000-20009", "l3vni_range": "60000-60009",
    })
    net = api.ok("PUT", "/v1/networks/7", isolated(physical_network_name="vlan-transport"))
    assert net["segment"] == {"kind": "vlan", "id": 3000}
    assert net["broadcast_uri"] == "vlan://3000"
    assert net["broadcast_domain_type"] == "Vlan"
    assert net["route_targets"]["l2"] is None


def test_zone_with_two_physnets_needs_a_name(api: Api, zone: Any) -> None:
    api.ok("PUT", "/v1/physical-networks/300", {"zone_id": ZONE, "name": "other",
                                                "l2vni_range": "20000-20009",
                                                "l3vni_range": "60000-60009"})
    assert "several physical networks" in api.fails("PUT", "/v1/networks/1", isolated(), 400)
    assert "unknown physical network" in api.fails(
        "PUT", "/v1/networks/1", isolated(physical_network_name="nope"), 404)


def test_vpc_tiers_share_the_vpc_routing_domain(api: Api, zone: Any) -> None:
    vpc = api.ok("PUT", "/v1/vpcs/5", {"zone_id": ZONE, "cidr": "10.10.0.0/16"})
    assert vpc["l3vni"] == 50000
    tier1 = api.ok("PUT", "/v1/networks/51", isolated("10.10.1.0/24", "10.10.1.1", vpc_id="5"))
    tier2 = api.ok("PUT", "/v1/networks/52", isolated("10.10.2.0/24", "10.10.2.1", vpc_id="5"))
    assert tier1["l3vni"] == tier2["l3vni"] == 50000
    assert tier1["segment"]["id"] != tier2["segment"]["id"]
    assert "still has tiers" in api.fails("DELETE", "/v1/vpcs/5", None, 409)
    api.ok("DELETE", "/v1/networks/51", status=204)
    api.ok("DELETE", "/v1/networks/52", status=204)
    api.ok("DELETE", "/v1/vpcs/5", status=204)
    assert api.ok("GET", f"/v1/physical-networks/{PHYSNET}")["pools"]["l3vni"]["used"] == 0


def test_overlapping_cidrs_in_different_vpcs_are_fine(api: Api, zone: Any) -> None:
    for vpc in ("5", "6"):
        api.ok("PUT", f"/v1/vpcs/{vpc}", {"zone_id": ZONE, "cidr": "10.10.0.0/16"})
        api.ok("PUT", f"/v1/networks/{vpc}1", isolated("10.10.1.0/24", "10.10.1.1", vpc_id=vpc))


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (isolated(cidr="10.1.0.0/33"), 400, "cidr: not a network"),
        (isolated(cidr="10.1.0.1/24"), 400, "cidr: not a network"),
        (isolated(gateway="10.2.0.1"), 400, "gateway: 10.2.0.1 is outside 10.1.0.0/24"),
        (isolated(gateway="10.1.0.255"), 400, "broadcast address"),
        (isolated(zone_id="nope"), 404, "unknown zone nope"),
        (isolated(vpc_id="77"), 404, "unknown VPC 77"),
        (isolated(domain="cs.lab"), 400, "unknown field 'domain'"),
        (isolated(mode="bridged"), 400, "mode: 'bridged' is not one of natted, routed"),
        (isolated(ip6_cidr="2001:db8::/64"), 400, "needs both"),
        (isolated(ip6_cidr="2001:db8::/64", ip6_gateway="2001:db9::1"), 400, "outside"),
        (isolated(colour="red"), 400, "unknown field 'colour'"),
        ({"cidr": "10.1.0.0/24", "gateway": "10.1.0.1"}, 400, "zone_id: required"),
    ],
)
def test_bad_network_input_is_refused_and_writes_nothing(
    api: Api, zone: Any, body: dict[str, Any], status: int, message: str
) -> None:
    assert message in api.fails("PUT", "/v1/networks/42", body, status)
    assert api.ok("GET", "/v1/networks") == []
    assert api.ok("GET", f"/v1/physical-networks/{PHYSNET}")["pools"]["l2vni"]["used"] == 0


def test_tier_cidr_rules(api: Api, zone: Any) -> None:
    api.ok("PUT", "/v1/vpcs/5", {"zone_id": ZONE, "cidr": "10.10.0.0/16"})
    api.ok("PUT", "/v1/networks/51", isolated("10.10.1.0/24", "10.10.1.1", vpc_id="5"))
    assert "outside VPC 5" in api.fails(
        "PUT", "/v1/networks/52", isolated("10.11.1.0/24", "10.11.1.1", vpc_id="5"), 400)
    assert "overlaps tier 51" in api.fails(
        "PUT", "/v1/networks/52", isolated("10.10.1.128/25", "10.10.1.129", vpc_id="5"), 400)
    assert "would leave tier 51" in api.fails(
        "PUT", "/v1/vpcs/5", {"zone_id": ZONE, "cidr": "10.20.0.0/16"}, 400)
    assert "exists in zone 1, VPC 5" in api.fails(
        "PUT", "/v1/networks/51", isolated("10.10.1.0/24", "10.10.1.1"), 409)


def test_token_is_required(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic x"}):
        response = api.client.get("/v1/zones", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]
    assert api.client.get("/healthz").status_code == 200


def test_unknown_route_and_bad_json_are_json_errors(api: Api) -> None:
    assert "Not Found" in api.fails("GET", "/v1/nothing-here", None, 404)
    response = api.client.put("/v1/zones/1", data="{not json", headers=api.headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "the request body must be a JSON object"
