"""Networks and VPCs through the API: allocation, idempotent replays, validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from provider_service import tenancy
from provider_service.api.networks import SCHEMAS
from provider_service.db import Database
from provider_service.errors import NotFound
from provider_service.models import PhysicalNetwork
from provider_service.sql import Sql
from provider_service.tenancy import NetworkSpec
from tests import races
from tests.conftest import PHYSNET, ZONE, Api

# Races only PostgreSQL can have: SQLite writers hold the whole database.
POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)


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
    assert response.get_json()["error"] == "the request body is not valid JSON"


# --- stored as long as the columns allow, on both databases ------------------------------


def test_state_fits_its_column(api: Api, zone: Any) -> None:
    state = "s" * 32
    assert api.ok("PUT", "/v1/networks/42", isolated(state=state))["state"] == state
    assert api.ok("PUT", "/v1/vpcs/5", {"zone_id": ZONE, "cidr": "10.10.0.0/16",
                                        "state": state})["state"] == state
    assert "state: 33 characters is more than 32" in api.fails(
        "PUT", "/v1/networks/43", isolated(state="s" * 33), 400)
    assert "state: 33 characters is more than 32" in api.fails(
        "PUT", "/v1/vpcs/6", {"zone_id": ZONE, "cidr": "10.10.0.0/16", "state": "s" * 33}, 400)
    assert [n["id"] for n in api.ok("GET", "/v1/networks")] == ["42"]


def test_answers_are_what_the_openapi_schemas_document(api: Api, zone: Any) -> None:
    network = api.ok("PUT", "/v1/networks/42", isolated())
    vpc = api.ok("PUT", "/v1/vpcs/5", {"zone_id": ZONE, "cidr": "10.10.0.0/16"})
    assert set(network) == set(SCHEMAS["Network"]["properties"])
    assert set(vpc) == set(SCHEMAS["Vpc"]["properties"])


# --- addresses stay put under NICs and rules --------------------------------------------

NET = "/v1/networks/42"
IPS = f"/v1/zones/{ZONE}/public-ips"


def _with_public_ip(api: Api) -> None:
    api.ok("PUT", f"{IPS}/203.0.113.5", {"network_id": "42", "cidr": "203.0.113.5/24",
                                          "gateway": "203.0.113.1"})


def _nic(api: Api) -> None:
    api.ok("PUT", f"{NET}/nics/02:00:0a:01:00:05", {"ip": "10.1.0.5"})


def _static_nat(api: Api) -> None:
    _with_public_ip(api)
    api.ok("PUT", f"{IPS}/203.0.113.5/static-nat", {"network_id": "42", "private_ip": "10.1.0.8"})


def _port_forward(api: Api) -> None:
    _with_public_ip(api)
    api.ok("PUT", f"{IPS}/203.0.113.5/port-forwards/tcp/80",
           {"network_id": "42", "private_ip": "10.1.0.7", "private_port": "80"})


def _lb_backend(api: Api) -> None:
    _with_public_ip(api)
    api.ok("PUT", f"{NET}/load-balancers", {"rules": [{
        "id": 1, "name": "web", "publicIp": "203.0.113.5", "publicPort": 80,
        "privatePort": 8080, "protocol": "tcp", "algorithm": "roundrobin",
        "backends": [{"ip": "10.1.0.10", "port": 8080}]}]})


@pytest.mark.parametrize("dependent", [_nic, _static_nat, _port_forward, _lb_backend])
@pytest.mark.parametrize(("field", "change"), [
    ("cidr", {"cidr": "10.1.0.0/23"}),  # even a wider one: CloudStack did not ask for it
    ("gateway", {"gateway": "10.1.0.254"}),
    ("ip6_cidr", {"ip6_cidr": "2001:db8:2::/64", "ip6_gateway": "2001:db8:2::1"}),
    ("ip6_gateway", {"ip6_gateway": "2001:db8:1::2"}),
    ("extension_ip", {"extension_ip": "10.1.0.3"}),
])
def test_addresses_cannot_change_under_nics_and_rules(
    api: Api, zone: Any, dependent: Callable[[Api], None], field: str, change: dict[str, str]
) -> None:
    body = isolated(ip6_cidr="2001:db8:1::/64", ip6_gateway="2001:db8:1::1",
                    extension_ip="10.1.0.2")
    api.ok("PUT", NET, body)
    dependent(api)
    error = api.fails("PUT", NET, {**body, **change}, 409)
    assert error == f"network 42: {field} cannot change while it has NICs or rules"
    assert api.ok("GET", NET)["cidr"] == "10.1.0.0/24"
    # What NICs and rules do not depend on still changes, and replays still answer.
    assert api.ok("PUT", NET, {**body, "state": "shutdown"})["state"] == "shutdown"
    assert api.ok("PUT", NET, {**body, "state": "shutdown"})["state"] == "shutdown"


def test_addresses_change_freely_without_nics_and_rules(api: Api, zone: Any) -> None:
    api.ok("PUT", NET, isolated())
    _with_public_ip(api)  # a public IP is no guest address
    moved = api.ok("PUT", NET, isolated("10.2.0.0/24", "10.2.0.1", extension_ip="10.2.0.2"))
    assert (moved["cidr"], moved["gateway"], moved["extension_ip"]) == (
        "10.2.0.0/24", "10.2.0.1", "10.2.0.2")


# --- physical networks are named unambiguously ------------------------------------------


def test_an_ambiguous_physical_network_name_is_refused(api: Api, zone: Any, app: Flask) -> None:
    # The inventory API refuses a second "guest" (test_inventory_api); rows written before
    # it did still have to resolve to one physical network or to a clear error.
    def add_twin(session: Session) -> None:
        session.add(PhysicalNetwork(id="300", zone_id=ZONE, name="guest"))

    app.extensions["vxgate.db"].write(add_twin)
    error = api.fails("PUT", NET, isolated(physical_network_name="guest"), 409)
    assert error == ("physical network name 'guest' is ambiguous in zone 1: 200 and 300 have "
                     "it; send physical_network_id")
    assert api.ok("PUT", NET, isolated(physical_network_id=PHYSNET))["physical_network_id"] \
        == PHYSNET


# --- PostgreSQL races: VPC tiers -----------------------------------------------------------


def _tier(tier_id: str, cidr: str, gateway: str, vpc_id: str = "5") -> NetworkSpec:
    return NetworkSpec(id=tier_id, zone_id=ZONE, cidr=cidr, gateway=gateway, vpc_id=vpc_id)


@POSTGRES_ONLY
def test_overlapping_tiers_created_at_once_are_refused(api: Api, zone: Any, app: Flask) -> None:
    api.ok("PUT", "/v1/vpcs/5", {"zone_id": ZONE, "cidr": "10.10.0.0/16"})
    db: Database = app.extensions["vxgate.db"]
    response = races.while_held(
        db, lambda sql: tenancy.apply_network(sql, _tier("51", "10.10.1.0/24", "10.10.1.1")),
        lambda: api.call("PUT", "/v1/networks/52",
                         isolated("10.10.1.0/25", "10.10.1.2", vpc_id="5")))
    assert (response.status_code, response.get_json()) == (
        400, {"error": "cidr: 10.10.1.0/25 overlaps tier 51 (10.10.1.0/24)"})
    assert [n["id"] for n in api.ok("GET", "/v1/networks?vpc_id=5")] == ["51"]


@POSTGRES_ONLY
def test_a_tier_created_while_its_vpc_is_deleted_is_refused(
    api: Api, zone: Any, app: Flask
) -> None:
    api.ok("PUT", "/v1/vpcs/5", {"zone_id": ZONE, "cidr": "10.10.0.0/16"})
    db: Database = app.extensions["vxgate.db"]

    def create_tier() -> tenancy.NetworkView:
        # On a connection of its own, without Database's retries: the first attempt must
        # see the VPC gone, not trip over the foreign key of a row deleted under it.
        raw = db.engine.raw_connection()
        try:
            return tenancy.apply_network(Sql(raw, postgres=True),
                                         _tier("51", "10.10.1.0/24", "10.10.1.1"))
        finally:
            raw.rollback()
            raw.close()

    with Session(db.engine) as session:
        session.begin()
        tenancy.delete_vpc(session, "5")
        thread, outcome = races.in_thread(create_tier)
        races.wait_until_blocked(db, thread)
        session.commit()
    with pytest.raises(NotFound, match=r"^unknown VPC 5$"):
        races.finish(thread, outcome)
    assert api.fails("PUT", "/v1/networks/51",
                     isolated("10.10.1.0/24", "10.10.1.1", vpc_id="5"), 404) == "unknown VPC 5"
    assert api.ok("GET", "/v1/networks") == []
    assert api.ok("GET", f"/v1/physical-networks/{PHYSNET}")["pools"]["l3vni"]["used"] == 0


@POSTGRES_ONLY
def test_a_vpc_deleted_while_a_tier_is_created_is_kept(api: Api, zone: Any, app: Flask) -> None:
    api.ok("PUT", "/v1/vpcs/5", {"zone_id": ZONE, "cidr": "10.10.0.0/16"})
    db: Database = app.extensions["vxgate.db"]
    response = races.while_held(
        db, lambda sql: tenancy.apply_network(sql, _tier("51", "10.10.1.0/24", "10.10.1.1")),
        lambda: api.call("DELETE", "/v1/vpcs/5"))
    assert (response.status_code, response.get_json()) == (
        409, {"error": "VPC 5 still has tiers: 51"})
    assert api.ok("GET", "/v1/vpcs/5")["id"] == "5"


@POSTGRES_ONLY
def test_a_nic_written_while_the_cidr_changes_sees_the_new_cidr(
    api: Api, zone: Any, app: Flask
) -> None:
    api.ok("PUT", NET, isolated())
    db: Database = app.extensions["vxgate.db"]
    moved = NetworkSpec(id="42", zone_id=ZONE, cidr="10.2.0.0/24", gateway="10.2.0.1")
    response = races.while_held(
        db, lambda sql: tenancy.apply_network(sql, moved),  # no NICs yet: allowed
        lambda: api.call("PUT", f"{NET}/nics/02:00:0a:01:00:05", {"ip": "10.1.0.5"}))
    assert (response.status_code, response.get_json()) == (
        400, {"error": "ip: 10.1.0.5 is outside 10.2.0.0/24"})
    assert api.ok("GET", f"{NET}/nics") == []


def test_destroyed_tier_keeps_its_vni_until_its_vpc_goes(api: Api, zone: Any) -> None:
    """CloudStack's destroy-network for a tier may be a VPC restart: keep the numbers."""
    api.ok("PUT", "/v1/vpcs/5", {"zone_id": ZONE, "cidr": "10.10.0.0/16"})
    tier = api.ok("PUT", "/v1/networks/51", isolated("10.10.1.0/24", "10.10.1.1", vpc_id="5"))
    event = {"payload": {"network_id": "51", "zone_id": ZONE, "vpc_id": "5",
                         "network_state": "allocated"}}
    assert api.ok("POST", "/v1/cloudstack/destroy-network", event) == {"output": None}
    kept = api.ok("GET", "/v1/networks/51")
    assert (kept["state"], kept["broadcast_uri"]) == ("destroyed", tier["broadcast_uri"])
    # Its CIDR is free for a new tier; its VNI is not.
    new = api.ok("PUT", "/v1/networks/52", isolated("10.10.1.0/24", "10.10.1.1", vpc_id="5"))
    assert new["segment"]["id"] != tier["segment"]["id"]
    api.ok("DELETE", "/v1/networks/52", status=204)
    restarted = {"payload": {"vpc_id": "5", "zone_id": ZONE, "vpc_state": "Enabled"}}
    api.ok("POST", "/v1/cloudstack/shutdown-vpc", restarted)
    assert api.ok("GET", "/v1/vpcs/5")["state"] == "shutdown"
    deleted = {"payload": {"vpc_id": "5", "zone_id": ZONE, "vpc_state": "Inactive"}}
    api.ok("POST", "/v1/cloudstack/shutdown-vpc", deleted)
    api.fails("GET", "/v1/networks/51", None, 404)
    pools = api.ok("GET", f"/v1/physical-networks/{PHYSNET}")["pools"]
    assert pools["l2vni"]["used"] == pools["l3vni"]["used"] == 0
