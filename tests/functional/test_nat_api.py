"""Public IPs, static NAT and port forwards through the API: replays, refusals, cascades."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from provider_service.models import Base, PublicIp
from provider_service.models.base import Timestamped
from provider_service.models.rules import PortForward, StaticNat
from tests.conftest import ZONE, Api

IPS = f"/v1/zones/{ZONE}/public-ips"
NET, TIER, OTHER_TIER, VPC = "42", "51", "52", "5"


def count(api: Api, model: type[Base]) -> int:
    """Rows in a table: what 'no duplicates' and 'nothing written' are checked against."""
    database = api.client.application.extensions["vxgate.db"]
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def created(api: Api, model: type[Timestamped]) -> list[Any]:
    """Creation times of a table's rows: a replay that rewrote a row would change them."""
    database = api.client.application.extensions["vxgate.db"]
    with database.read() as session:
        return sorted(session.scalars(select(model.created_at)))


def network(cidr: str, gateway: str, **extra: Any) -> dict[str, Any]:
    return {"zone_id": ZONE, "cidr": cidr, "gateway": gateway, **extra}


@pytest.fixture
def tenants(api: Api, zone: Any) -> None:
    """Isolated network 42 (10.1.0.0/24); VPC 5 with tiers 51 and 52."""
    api.ok("PUT", f"/v1/networks/{NET}", network("10.1.0.0/24", "10.1.0.1"))
    api.ok("PUT", f"/v1/vpcs/{VPC}", {"zone_id": ZONE, "cidr": "10.10.0.0/16"})
    api.ok("PUT", f"/v1/networks/{TIER}", network("10.10.1.0/24", "10.10.1.1", vpc_id=VPC))
    api.ok("PUT", f"/v1/networks/{OTHER_TIER}", network("10.10.2.0/24", "10.10.2.1", vpc_id=VPC))


def public_ip(address: str = "203.0.113.5", **extra: Any) -> dict[str, Any]:
    """An assign-ip body as the plugin builds it from CloudStack's PIP fields."""
    owner = {} if "vpc_id" in extra else {"network_id": NET}
    return {**owner, "cidr": f"{address}/24", "gateway": "203.0.113.1", "vlan": "vlan://101",
            "source_nat": "false", **extra}


def assign(api: Api, address: str = "203.0.113.5", **extra: Any) -> Any:
    return api.ok("PUT", f"{IPS}/{address}", public_ip(address, **extra))


def forward_path(address: str = "203.0.113.5", ports: str = "80", protocol: str = "tcp") -> str:
    return f"{IPS}/{address}/port-forwards/{protocol}/{ports}"


# --- public IPs ------------------------------------------------------------------------


def test_assign_ip_stores_the_range_in_network_form(api: Api, tenants: None) -> None:
    ip = assign(api)
    assert ip == {
        "zone_id": ZONE, "address": "203.0.113.5", "network_id": NET, "vpc_id": None,
        "cidr": "203.0.113.0/24", "gateway": "203.0.113.1", "vlan": "vlan://101",
        "source_nat": False, "static_nat": None,
    }
    assert api.ok("GET", f"{IPS}/203.0.113.5") == ip


def test_list_filters_by_owner(api: Api, tenants: None) -> None:
    assign(api, "203.0.113.10", source_nat=True)
    assign(api, "203.0.113.9")
    assign(api, "203.0.113.20", vpc_id=VPC, vlan="untagged", source_nat="true")
    assert [ip["address"] for ip in api.ok("GET", IPS)] == [
        "203.0.113.9", "203.0.113.10", "203.0.113.20"]
    assert [ip["address"] for ip in api.ok("GET", f"{IPS}?network_id={NET}")] == [
        "203.0.113.9", "203.0.113.10"]
    only_vpc = api.ok("GET", f"{IPS}?vpc_id={VPC}")
    assert [(ip["address"], ip["source_nat"], ip["vlan"]) for ip in only_vpc] == [
        ("203.0.113.20", True, "untagged")]
    assert "unknown zone 9" in api.fails("GET", "/v1/zones/9/public-ips", None, 404)


def test_assign_replay_and_update_keep_one_row(api: Api, tenants: None) -> None:
    first = assign(api)
    stamps = created(api, PublicIp)
    assert assign(api) == first
    assert created(api, PublicIp) == stamps
    assert api.ok("GET", IPS) == [first]
    updated = assign(api, vlan="101", source_nat=True)
    assert (updated["vlan"], updated["source_nat"]) == ("101", True)
    assert count(api, PublicIp) == 1


def test_reassigning_to_another_owner_is_a_conflict(api: Api, tenants: None) -> None:
    assign(api)
    error = api.fails("PUT", f"{IPS}/203.0.113.5", public_ip(vpc_id=VPC), 409)
    assert "assigned to network 42, not VPC 5" in error
    assert api.ok("GET", f"{IPS}/203.0.113.5")["network_id"] == NET


def test_release_is_idempotent(api: Api, tenants: None) -> None:
    assign(api)
    api.ok("DELETE", f"{IPS}/203.0.113.5", status=204)
    api.ok("DELETE", f"{IPS}/203.0.113.5", status=204)
    api.ok("DELETE", "/v1/zones/9/public-ips/203.0.113.5", status=204)
    assert "unknown public IP 203.0.113.5 in zone 1" in api.fails(
        "GET", f"{IPS}/203.0.113.5", None, 404)


@pytest.mark.parametrize(
    ("address", "body", "status", "message"),
    [
        ("203.0.113.5", public_ip(vpc_id=VPC, network_id=NET), 400, "exactly one of"),
        ("203.0.113.5", {"cidr": "203.0.113.5/24", "gateway": "203.0.113.1"}, 400,
         "exactly one of"),
        ("203.0.113.5", public_ip(network_id="77"), 404, "unknown network 77"),
        ("203.0.113.5", public_ip(vpc_id="77"), 404, "unknown VPC 77"),
        ("203.0.113.5", public_ip(cidr="198.51.100.5/24"), 400,
         "cidr: 203.0.113.5 is outside 198.51.100.0/24"),
        ("203.0.113.5", public_ip(cidr="203.0.113.5"), 400, "cidr: expected address/prefix"),
        ("203.0.113.5", public_ip(cidr="203.0.113.5/33"), 400, "cidr: not an IPv4"),
        ("203.0.113.5", public_ip(gateway="198.51.100.1"), 400, "gateway: 198.51.100.1 is outside"),
        ("203.0.113.1", public_ip("203.0.113.1"), 400, "address: 203.0.113.1 is the gateway"),
        ("203.0.113.255", public_ip("203.0.113.255"), 400, "address: 203.0.113.255 is the network"),
        ("203.0.113.5", public_ip(vlan="101; drop"), 400, "vlan: expected a VLAN"),
        ("203.0.113.5", public_ip(vlan="vlan://" + "1" * 40), 400, "vlan: expected a VLAN"),
        ("203.0.113.5", public_ip(source_nat="yes"), 400, "source_nat: expected true or false"),
        ("203.0.113.5", public_ip(public_vlan="101"), 400, "unknown field 'public_vlan'"),
        ("not-an-ip", public_ip(), 400, "address: not an IP address"),
        ("2001:db8::5", public_ip(), 400, "address: expected an IPv4 address"),
        ("203.0.113.5", public_ip(gateway=None), 400, "gateway: required"),
    ],
)
def test_bad_assign_is_refused_and_writes_nothing(
    api: Api, tenants: None, address: str, body: dict[str, Any], status: int, message: str
) -> None:
    assert message in api.fails("PUT", f"{IPS}/{address}", body, status)
    assert api.ok("GET", IPS) == []


def test_owner_must_be_in_the_zone(api: Api, tenants: None) -> None:
    api.ok("PUT", "/v1/zones/2", {"asn_range": "65200-65299"})
    error = api.fails("PUT", "/v1/zones/2/public-ips/203.0.113.5", public_ip(), 400)
    assert "network_id: the owner is in zone 1, not 2" in error
    assert "unknown zone 9" in api.fails("PUT", "/v1/zones/9/public-ips/203.0.113.5",
                                         public_ip(), 404)
    assert count(api, PublicIp) == 0


# --- static NAT ------------------------------------------------------------------------


def test_static_nat_replay_update_and_delete(api: Api, tenants: None) -> None:
    assign(api)
    path = f"{IPS}/203.0.113.5/static-nat"
    nat = api.ok("PUT", path, {"network_id": NET, "private_ip": "10.1.0.10"})
    assert nat == {"public_ip": "203.0.113.5", "network_id": NET, "private_ip": "10.1.0.10"}
    stamps = created(api, StaticNat)
    assert api.ok("PUT", path, {"network_id": NET, "private_ip": "10.1.0.10"}) == nat
    assert created(api, StaticNat) == stamps
    assert api.ok("GET", path) == nat
    assert api.ok("GET", f"{IPS}/203.0.113.5")["static_nat"] == nat
    assert api.ok("GET", IPS)[0]["static_nat"] == nat
    moved = api.ok("PUT", path, {"network_id": NET, "private_ip": "10.1.0.11"})
    assert moved["private_ip"] == "10.1.0.11" and count(api, StaticNat) == 1
    api.ok("DELETE", path, status=204)
    api.ok("DELETE", path, status=204)
    api.ok("DELETE", f"{IPS}/198.51.100.7/static-nat", status=204)
    assert "has no static NAT" in api.fails("GET", path, None, 404)
    assert api.ok("GET", f"{IPS}/203.0.113.5")["static_nat"] is None


def test_static_nat_on_a_vpc_address_goes_to_a_tier(api: Api, tenants: None) -> None:
    assign(api, vpc_id=VPC)
    path = f"{IPS}/203.0.113.5/static-nat"
    nat = api.ok("PUT", path, {"network_id": TIER, "private_ip": "10.10.1.20"})
    assert nat["network_id"] == TIER
    api.ok("DELETE", f"/v1/networks/{TIER}", status=204)
    # The tier is gone and its NAT with it; the VPC keeps its address.
    assert count(api, StaticNat) == 0
    assert api.ok("GET", f"{IPS}/203.0.113.5")["vpc_id"] == VPC


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"network_id": NET, "private_ip": "10.2.0.10"}, 400,
         "private_ip: 10.2.0.10 is outside 10.1.0.0/24"),
        ({"network_id": NET, "private_ip": "10.1.0.1"}, 400, "is the gateway of network 42"),
        ({"network_id": NET, "private_ip": "10.1.0.255"}, 400, "broadcast address"),
        ({"network_id": NET, "private_ip": "10.1.0.x"}, 400, "private_ip: not an IP"),
        ({"network_id": NET}, 400, "private_ip: required"),
        ({"network_id": "77", "private_ip": "10.1.0.10"}, 404, "unknown network 77"),
        ({"network_id": TIER, "private_ip": "10.10.1.10"}, 409,
         "assigned to network 42, not to network 51 or its VPC 5"),
        ({"network_id": NET, "private_ip": "10.1.0.10", "ports": "all"}, 400,
         "unknown field 'ports'"),
    ],
)
def test_bad_static_nat_is_refused_and_writes_nothing(
    api: Api, tenants: None, body: dict[str, Any], status: int, message: str
) -> None:
    assign(api)
    assert message in api.fails("PUT", f"{IPS}/203.0.113.5/static-nat", body, status)
    assert count(api, StaticNat) == 0


def test_static_nat_conflicts(api: Api, tenants: None) -> None:
    body = {"network_id": NET, "private_ip": "10.1.0.10"}
    assert "unknown public IP 203.0.113.5" in api.fails(
        "PUT", f"{IPS}/203.0.113.5/static-nat", body, 404)
    assign(api, "203.0.113.6", source_nat=True)
    assert "source NAT address; it cannot take static NAT" in api.fails(
        "PUT", f"{IPS}/203.0.113.6/static-nat", body, 409)
    assign(api)
    api.ok("PUT", forward_path(), {"network_id": NET, "private_ip": "10.1.0.10",
                                   "private_port": "80"})
    assert "used by port forward tcp/80; it cannot take static NAT" in api.fails(
        "PUT", f"{IPS}/203.0.113.5/static-nat", body, 409)
    assert count(api, StaticNat) == 0
    assign(api, "203.0.113.7")
    api.ok("PUT", f"{IPS}/203.0.113.7/static-nat", body)
    assert "has static NAT; disable it first" in api.fails(
        "PUT", f"{IPS}/203.0.113.7", public_ip("203.0.113.7", source_nat=True), 409)


# --- port forwards ---------------------------------------------------------------------


def forward(private_port: str = "8080", private_ip: str = "10.1.0.10") -> dict[str, Any]:
    return {"network_id": NET, "private_ip": private_ip, "private_port": private_port}


def test_port_forwards_replay_list_and_delete(api: Api, tenants: None) -> None:
    assign(api)
    single = api.ok("PUT", forward_path(), forward())
    assert single == {"public_ip": "203.0.113.5", "protocol": "tcp", "public_ports": "80",
                      "network_id": NET, "private_ip": "10.1.0.10", "private_ports": "8080"}
    ranged = api.ok("PUT", forward_path(ports="8000-8100", protocol="UDP"),
                    forward("9000-9100"))
    assert (ranged["protocol"], ranged["public_ports"], ranged["private_ports"]) == (
        "udp", "8000-8100", "9000-9100")
    stamps = created(api, PortForward)
    for _ in range(2):
        api.ok("PUT", forward_path(), forward())
        api.ok("PUT", forward_path(ports="8000-8100", protocol="udp"), forward("9000-9100"))
    assert created(api, PortForward) == stamps
    assert api.ok("GET", f"{IPS}/203.0.113.5/port-forwards") == [single, ranged]
    assert api.ok("GET", forward_path()) == single
    assert count(api, PortForward) == 2
    # Same public start: the forward is updated in place, not duplicated.
    assert api.ok("PUT", forward_path(), forward("81", "10.1.0.11"))["private_ports"] == "81"
    assert count(api, PortForward) == 2
    api.ok("DELETE", forward_path(ports="80-81"), status=204)  # not that range: a no-op
    assert count(api, PortForward) == 2
    for _ in range(2):
        api.ok("DELETE", forward_path(), status=204)
    assert "has no port forward tcp/80" in api.fails("GET", forward_path(), None, 404)
    assert api.ok("GET", f"{IPS}/203.0.113.5/port-forwards") == [ranged]


def test_port_forwards_on_a_vpc_address(api: Api, tenants: None) -> None:
    assign(api, vpc_id=VPC)
    api.ok("PUT", forward_path(), {**forward(private_ip="10.10.1.5"), "network_id": TIER})
    other = {**forward(private_ip="10.10.2.5"), "network_id": OTHER_TIER}
    api.ok("PUT", forward_path(ports="443"), other)
    assert "overlaps port forward tcp/80" in api.fails(
        "PUT", forward_path(ports="70-90"), {**other, "private_port": "70-90"}, 409)


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (forward_path(protocol="icmp"), forward(), 400, "protocol: 'icmp' is not one of tcp, udp"),
        (forward_path(ports="0"), forward(), 400, "public_ports: 0 is outside 1-65535"),
        (forward_path(ports="90-80"), forward(), 400, "range start 90 is above its end 80"),
        (forward_path(ports="http"), forward(), 400, "public_ports: expected a range"),
        (forward_path(ports="80-90"), forward(), 400,
         "private_port: 8080 is not as long as the public range 80-90"),
        (forward_path(), forward("70000"), 400, "private_port: 70000 is outside"),
        (forward_path(), forward(private_ip="10.2.0.5"), 400, "private_ip: 10.2.0.5 is outside"),
        (forward_path(), {**forward(), "network_id": "77"}, 404, "unknown network 77"),
        (forward_path(), {**forward(), "network_id": TIER}, 409, "assigned to network 42"),
        (forward_path(address="203.0.113.99"), forward(), 404, "unknown public IP 203.0.113.99"),
        (forward_path(), {**forward(), "protocol": "tcp"}, 400, "unknown field 'protocol'"),
        (forward_path(), "80", 400, "the request body must be a JSON object"),
        (forward_path(ports="79-81"), forward("8079-8081"), 409, "overlaps port forward tcp/80"),
        (forward_path("203.0.113.6", "22", "udp"), forward("22"), 409, "has static NAT"),
    ],
)
def test_bad_port_forward_is_refused_and_writes_nothing(
    api: Api, tenants: None, path: str, body: Any, status: int, message: str
) -> None:
    assign(api)
    api.ok("PUT", forward_path(), forward())
    assign(api, "203.0.113.6")
    api.ok("PUT", f"{IPS}/203.0.113.6/static-nat", {"network_id": NET, "private_ip": "10.1.0.9"})
    before = api.ok("GET", f"{IPS}/203.0.113.5/port-forwards")
    assert message in api.fails("PUT", path, body, status)
    assert api.ok("GET", f"{IPS}/203.0.113.5/port-forwards") == before
    assert count(api, PortForward) == 1


# --- cascades --------------------------------------------------------------------------


def test_release_removes_static_nat_and_port_forwards(api: Api, tenants: None) -> None:
    assign(api)
    assign(api, "203.0.113.6")
    api.ok("PUT", f"{IPS}/203.0.113.6/static-nat", {"network_id": NET, "private_ip": "10.1.0.9"})
    api.ok("PUT", forward_path(), forward())
    api.ok("PUT", forward_path(ports="443"), forward("443"))
    api.ok("DELETE", f"{IPS}/203.0.113.5", status=204)
    assert count(api, PortForward) == 0 and count(api, StaticNat) == 1
    api.ok("DELETE", f"{IPS}/203.0.113.6", status=204)
    assert count(api, StaticNat) == 0 and count(api, PublicIp) == 0


def test_destroying_the_network_removes_its_addresses_and_nat(api: Api, tenants: None) -> None:
    assign(api)
    assign(api, "203.0.113.20", vpc_id=VPC)
    api.ok("PUT", f"{IPS}/203.0.113.5/static-nat", {"network_id": NET, "private_ip": "10.1.0.9"})
    api.ok("PUT", forward_path(address="203.0.113.20"),
           {**forward(private_ip="10.10.1.5"), "network_id": TIER})
    api.ok("DELETE", f"/v1/networks/{NET}", status=204)
    assert [ip["address"] for ip in api.ok("GET", IPS)] == ["203.0.113.20"]
    assert count(api, StaticNat) == 0 and count(api, PortForward) == 1
    api.ok("DELETE", f"/v1/networks/{TIER}", status=204)
    api.ok("DELETE", f"/v1/networks/{OTHER_TIER}", status=204)
    assert count(api, PortForward) == 0
    api.ok("DELETE", f"/v1/vpcs/{VPC}", status=204)
    assert api.ok("GET", IPS) == []
