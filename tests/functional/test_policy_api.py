"""Firewall, network ACL and load balancers through the API: full-set replacement."""

from __future__ import annotations

from typing import Any

import pytest

from provider_service.models.rules import AclItem, FirewallRule, LbBackend, LbRule
from tests.conftest import ZONE, Api
from tests.functional.test_nat_api import (
    IPS,
    NET,
    OTHER_TIER,
    TIER,
    VPC,
    assign,
    count,
    created,
    forward_path,
    network,
    tenants,  # noqa: F401  (fixture)
)

FIREWALL = f"/v1/networks/{NET}/firewall"
ACL = f"/v1/networks/{TIER}/acl"
LBS = f"/v1/networks/{NET}/load-balancers"


@pytest.fixture
def addresses(api: Api, tenants: None) -> None:  # noqa: F811
    """203.0.113.5 and .6 for network 42, 203.0.113.20 for VPC 5."""
    assign(api)
    assign(api, "203.0.113.6")
    assign(api, "203.0.113.20", vpc_id=VPC)


# --- firewall --------------------------------------------------------------------------


def fw_rule(rule_id: int = 1, **fields: Any) -> dict[str, Any]:
    """An ingress rule as CloudStack's apply-fw-rules builds it."""
    return {"id": rule_id, "type": "ingress", "protocol": "tcp", "portStart": 22, "portEnd": 22,
            "publicIp": "203.0.113.5", "sourceCidrs": ["0.0.0.0/0"], "destCidrs": [], **fields}


def fw_rules(*rules: dict[str, Any], default_egress_allow: Any = True) -> dict[str, Any]:
    return {"default_egress_allow": default_egress_allow, "cidr": "10.1.0.0/24",
            "rules": list(rules)}


FW_SET = fw_rules(
    fw_rule(12, portStart="8000", portEnd="8100", sourceCidrs=["198.51.100.7/24", "192.0.2.0/28"]),
    fw_rule(3, protocol="icmp", portStart=None, portEnd=None, icmpType="-1", icmpCode=-1,
            publicIp="203.0.113.6"),
    {"id": 7, "type": "egress", "protocol": "all", "sourceCidrs": ["10.1.0.0/24"],
     "destCidrs": ["0.0.0.0/0"]},
    default_egress_allow="false",
)


def test_firewall_is_stored_normalised_and_sorted(api: Api, addresses: None) -> None:
    firewall = api.ok("PUT", FIREWALL, FW_SET)
    assert firewall == {"default_egress_allow": False, "cidr": "10.1.0.0/24", "rules": [
        {"id": 3, "type": "ingress", "protocol": "icmp", "portStart": None, "portEnd": None,
         "icmpType": -1, "icmpCode": -1, "publicIp": "203.0.113.6",
         "sourceCidrs": ["0.0.0.0/0"], "destCidrs": []},
        {"id": 7, "type": "egress", "protocol": "all", "portStart": None, "portEnd": None,
         "icmpType": None, "icmpCode": None, "publicIp": None,
         "sourceCidrs": ["10.1.0.0/24"], "destCidrs": ["0.0.0.0/0"]},
        {"id": 12, "type": "ingress", "protocol": "tcp", "portStart": 8000, "portEnd": 8100,
         "icmpType": None, "icmpCode": None, "publicIp": "203.0.113.5",
         "sourceCidrs": ["198.51.100.0/24", "192.0.2.0/28"], "destCidrs": []},
    ]}
    assert api.ok("GET", FIREWALL) == firewall


def test_firewall_replay_and_round_trip_change_nothing(api: Api, addresses: None) -> None:
    first = api.ok("PUT", FIREWALL, FW_SET)
    stamps = created(api, FirewallRule)
    assert api.ok("PUT", FIREWALL, FW_SET) == first
    assert api.ok("PUT", FIREWALL, first) == first  # what GET shows, PUT accepts
    assert created(api, FirewallRule) == stamps  # rows untouched, not rewritten
    assert count(api, FirewallRule) == 3


def test_firewall_set_is_replaced_whole(api: Api, addresses: None) -> None:
    api.ok("PUT", FIREWALL, FW_SET)
    changed = api.ok("PUT", FIREWALL, fw_rules(fw_rule(12, portStart=443, portEnd=443),
                                               fw_rule(20)))
    assert [(rule["id"], rule["portStart"]) for rule in changed["rules"]] == [(12, 443), (20, 22)]
    assert changed["default_egress_allow"] is True
    assert api.ok("PUT", FIREWALL, fw_rules())["rules"] == []
    assert count(api, FirewallRule) == 0


def test_firewall_of_a_vpc_tier_may_use_the_vpc_address(api: Api, addresses: None) -> None:
    body = fw_rules(fw_rule(publicIp="203.0.113.20"))
    body["cidr"] = "10.10.1.0/24"
    api.ok("PUT", f"/v1/networks/{TIER}/firewall", body)
    assert "unknown network 77" in api.fails("GET", "/v1/networks/77/firewall", None, 404)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (fw_rules(fw_rule(), fw_rule()), 400, "rules[1].id: 1 appears twice"),
        (fw_rules(fw_rule(publicIp=None)), 400,
         "rules[0].publicIp: network 42 is NATTED: its ingress rules need a public IP"),
        (fw_rules(fw_rule(), fw_rule(2, publicIp="")), 400,  # NEE's "" for no address
         "rules[1].publicIp: network 42 is NATTED: its ingress rules need a public IP"),
        (fw_rules(fw_rule(type="egress")), 400, "rules[0].publicIp: egress rules take none"),
        (fw_rules(fw_rule(type="forward")), 400, "rules[0].type: 'forward' is not one of"),
        (fw_rules(fw_rule(protocol="gre")), 400, "rules[0].protocol: 'gre' is not one of"),
        (fw_rules(fw_rule(protocol="icmp")), 400, "rules[0].portStart: ports apply to tcp"),
        (fw_rules(fw_rule(icmpType=8)), 400, "rules[0].icmpType: ICMP type and code apply"),
        (fw_rules(fw_rule(protocol="icmp", portStart=None, portEnd=None, icmpType=256)), 400,
         "rules[0].icmpType: 256 is outside -1-255"),
        (fw_rules(fw_rule(portStart=90, portEnd=80)), 400, "portEnd: 80 is below portStart 90"),
        (fw_rules(fw_rule(portStart=None, portEnd=80)), 400, "portEnd: given without portStart"),
        (fw_rules(fw_rule(portStart=70000)), 400, "rules[0].portStart: 70000 is outside"),
        (fw_rules(fw_rule(id=0)), 400, "rules[0].id: 0 is outside"),
        (fw_rules(fw_rule(id=True)), 400, "rules[0].id: expected a whole number"),
        (fw_rules(fw_rule(sourceCidrs=["10.0.0.0/8", "any"])), 400,
         "rules[0].sourceCidrs: not a network in CIDR form: 'any'"),
        (fw_rules(fw_rule(destCidrs=[["10.0.0.0/8"]])), 400,
         "rules[0].destCidrs: expected a string"),
        (fw_rules(fw_rule(state="Active")), 400, "rules[0].unknown field 'state'"),
        (fw_rules(fw_rule(publicIp="203.0.113.99")), 404,
         "rules[0].publicIp: unknown public IP 203.0.113.99 in zone 1"),
        (fw_rules(fw_rule(publicIp="203.0.113.20")), 409,
         "rules[0].publicIp: public IP 203.0.113.20 is assigned to VPC 5, not to network 42"),
        ({**fw_rules(fw_rule()), "cidr": "10.9.0.0/24"}, 409,
         "cidr: 10.9.0.0/24 is not network 42's CIDR 10.1.0.0/24"),
        ({"cidr": "10.1.0.0/24", "rules": []}, 400, "default_egress_allow: required"),
        ({"cidr": "10.1.0.0/24", "default_egress_allow": True}, 400, "rules: required"),
        (fw_rules(default_egress_allow="deny"), 400, "default_egress_allow: expected true"),
        ({**fw_rules(), "rules": {"id": 1}}, 400, "rules: expected a JSON list"),
        ({**fw_rules(), "rules": [1]}, 400, "rules[0]: expected a JSON object"),
    ],
)
def test_bad_firewall_is_refused_and_changes_nothing(
    api: Api, addresses: None, body: dict[str, Any], status: int, message: str
) -> None:
    before = api.ok("PUT", FIREWALL, FW_SET)
    assert message in api.fails("PUT", FIREWALL, body, status)
    assert api.ok("GET", FIREWALL) == before


# A ROUTED network: no NAT. Its ingress rules (CloudStack's routing firewall rules) come
# with publicIp "" and destCidrs, the guest addresses they open (none: the network).
ROUTED_NET = "43"
ROUTED_FIREWALL = f"/v1/networks/{ROUTED_NET}/firewall"


@pytest.fixture
def routed(api: Api, addresses: None) -> None:
    """ROUTED network 43 (198.18.10.0/24) holding public IP 203.0.113.7 (the API allows
    it; its rules may not use it)."""
    api.ok("PUT", f"/v1/networks/{ROUTED_NET}",
           network("198.18.10.0/24", "198.18.10.1", mode="routed"))
    assign(api, "203.0.113.7", network_id=ROUTED_NET)


def routed_rule(rule_id: int = 1, **fields: Any) -> dict[str, Any]:
    """A routing firewall rule as NEE's apply-fw-rules sends it."""
    return fw_rule(rule_id, **{"publicIp": "", "destCidrs": ["198.18.10.10/32"], **fields})


def routed_rules(*rules: dict[str, Any]) -> dict[str, Any]:
    return {**fw_rules(*rules), "cidr": "198.18.10.0/24"}


ROUTED_SET = routed_rules(
    routed_rule(1, sourceCidrs=["192.0.2.0/24"]),
    routed_rule(2, protocol="icmp", portStart=None, portEnd=None, icmpType=8, icmpCode=0,
                destCidrs=[]),
    routed_rule(3, destCidrs=["0.0.0.0/0", "198.18.10.128/25"]),
    {"id": 4, "type": "egress", "protocol": "udp", "portStart": 53, "portEnd": 53,
     "sourceCidrs": [], "destCidrs": ["192.0.2.53/32"]},
)


def test_routed_ingress_rules_name_guest_addresses(api: Api, routed: None) -> None:
    firewall = api.ok("PUT", ROUTED_FIREWALL, ROUTED_SET)
    assert [(rule["id"], rule["type"], rule["publicIp"], rule["sourceCidrs"],
             rule["destCidrs"]) for rule in firewall["rules"]] == [
        (1, "ingress", None, ["192.0.2.0/24"], ["198.18.10.10/32"]),
        (2, "ingress", None, ["0.0.0.0/0"], []),
        (3, "ingress", None, ["0.0.0.0/0"], ["0.0.0.0/0", "198.18.10.128/25"]),
        (4, "egress", None, [], ["192.0.2.53/32"])]
    stamps = created(api, FirewallRule)
    assert api.ok("PUT", ROUTED_FIREWALL, ROUTED_SET) == firewall  # a replay
    assert api.ok("PUT", ROUTED_FIREWALL, firewall) == firewall  # GET's form
    assert created(api, FirewallRule) == stamps  # rows untouched, not rewritten
    assert api.ok("GET", ROUTED_FIREWALL) == firewall


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (routed_rules(routed_rule(publicIp="203.0.113.7")),
         "rules[0].publicIp: network 43 is ROUTED, without NAT: its ingress rules open "
         "guest addresses (destCidrs), not a public IP"),
        (routed_rules(routed_rule(), routed_rule(2, destCidrs=["198.18.10.0/25",
                                                               "10.1.0.0/24"])),
         "rules[1].destCidrs: 10.1.0.0/24 is outside network 43's CIDR 198.18.10.0/24"),
        (routed_rules(routed_rule(publicIp="203.0.113.5")),  # another network's: same
         "rules[0].publicIp: network 43 is ROUTED, without NAT"),
    ],
)
def test_bad_routed_firewall_is_refused_and_changes_nothing(
    api: Api, routed: None, body: dict[str, Any], message: str
) -> None:
    before = api.ok("PUT", ROUTED_FIREWALL, ROUTED_SET)
    rows = count(api, FirewallRule)
    assert message in api.fails("PUT", ROUTED_FIREWALL, body, 400)
    assert api.ok("GET", ROUTED_FIREWALL) == before
    assert count(api, FirewallRule) == rows


def test_a_routed_vpc_decides_for_its_tiers(api: Api, routed: None) -> None:
    """A tier's mode is its VPC's: a ROUTED VPC's tier takes rules without a public IP."""
    api.ok("PUT", "/v1/vpcs/6", {"zone_id": ZONE, "cidr": "198.19.0.0/16", "mode": "routed"})
    api.ok("PUT", "/v1/networks/61", network("198.19.1.0/24", "198.19.1.1", vpc_id="6"))
    body = {**fw_rules(routed_rule(destCidrs=[])), "cidr": "198.19.1.0/24"}
    assert api.ok("PUT", "/v1/networks/61/firewall", body)["rules"][0]["publicIp"] is None


def test_firewall_of_an_unknown_network(api: Api, addresses: None) -> None:
    assert "unknown network 77" in api.fails("PUT", "/v1/networks/77/firewall", fw_rules(), 404)


# --- network ACL -----------------------------------------------------------------------


def acl_item(number: int | str, **fields: Any) -> dict[str, Any]:
    return {"number": number, "action": "allow", "trafficType": "ingress", "protocol": "tcp",
            "portStart": 80, "portEnd": 80, "sourceCidrs": ["0.0.0.0/0"], **fields}


ACL_SET = {"rules": [
    acl_item(20, action="Deny", protocol="all", portStart=None, portEnd=None),
    acl_item(10, portStart="443", portEnd="443", sourceCidrs=["192.0.2.0/24"]),
    acl_item(15, trafficType="egress", protocol="icmp", portStart=None, portEnd=None,
             icmpType=8, icmpCode=0),
    acl_item("5", protocol="47", portStart=None, portEnd=None),
]}


def test_acl_is_sorted_by_number_and_replays_cleanly(api: Api, addresses: None) -> None:
    acl = api.ok("PUT", ACL, ACL_SET)
    assert [(item["number"], item["action"], item["protocol"]) for item in acl["rules"]] == [
        (5, "allow", "47"), (10, "allow", "tcp"), (15, "allow", "icmp"), (20, "deny", "all")]
    assert acl["rules"][1] == {
        "number": 10, "action": "allow", "trafficType": "ingress", "protocol": "tcp",
        "portStart": 443, "portEnd": 443, "icmpType": None, "icmpCode": None,
        "sourceCidrs": ["192.0.2.0/24"]}
    assert acl["rules"][2]["trafficType"] == "egress"
    stamps = created(api, AclItem)
    assert api.ok("PUT", ACL, ACL_SET) == acl
    assert api.ok("PUT", ACL, acl) == acl
    assert created(api, AclItem) == stamps
    assert api.ok("GET", ACL) == acl
    assert count(api, AclItem) == 4


def test_acl_set_is_replaced_whole(api: Api, addresses: None) -> None:
    api.ok("PUT", ACL, ACL_SET)
    acl = api.ok("PUT", ACL, {"rules": [acl_item(10, action="deny"), acl_item(30)]})
    assert [(item["number"], item["action"]) for item in acl["rules"]] == [
        (10, "deny"), (30, "allow")]
    assert api.ok("PUT", ACL, {"rules": []}) == {"rules": []}
    assert count(api, AclItem) == 0


def test_acl_is_for_vpc_tiers_only(api: Api, addresses: None) -> None:
    error = api.fails("PUT", f"/v1/networks/{NET}/acl", ACL_SET, 400)
    assert "network 42 is not a VPC tier" in error
    assert api.ok("GET", f"/v1/networks/{NET}/acl") == {"rules": []}
    assert "unknown network 77" in api.fails("PUT", "/v1/networks/77/acl", ACL_SET, 404)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rules": [acl_item(10), acl_item(10)]}, "rules[1].number: 10 appears twice"),
        ({"rules": [acl_item(0)]}, "rules[0].number: 0 is outside"),
        ({"rules": [acl_item(10, action="reject")]}, "rules[0].action: 'reject' is not one of"),
        ({"rules": [acl_item(10, trafficType="both")]}, "rules[0].trafficType: 'both'"),
        ({"rules": [acl_item(10, protocol="300", portStart=None, portEnd=None)]},
         "rules[0].protocol: 300 is outside 0-255"),
        ({"rules": [acl_item(10, protocol="47")]}, "rules[0].portStart: ports apply to tcp"),
        ({"rules": [acl_item(10, protocol="all")]}, "rules[0].portStart: ports apply to tcp"),
        ({"rules": [acl_item(10, icmpCode=0)]}, "rules[0].icmpType: ICMP type and code apply"),
        ({"rules": [acl_item(10, sourceCidrs=["10.0.0.0/40"])]}, "rules[0].sourceCidrs"),
        ({"rules": [acl_item(10, destCidrs=["10.0.0.0/8"])]}, "unknown field 'destCidrs'"),
        ({"acl_rules": []}, "unknown field 'acl_rules'"),
        ({}, "rules: required (send [] to remove every rule)"),
    ],
)
def test_bad_acl_is_refused_and_changes_nothing(
    api: Api, addresses: None, body: dict[str, Any], message: str
) -> None:
    before = api.ok("PUT", ACL, ACL_SET)
    assert message in api.fails("PUT", ACL, body, 400)
    assert api.ok("GET", ACL) == before


# --- load balancers --------------------------------------------------------------------


def lb_rule(rule_id: int = 1, **fields: Any) -> dict[str, Any]:
    """A rule as CloudStack's apply-lb-rules builds it."""
    return {"id": rule_id, "name": "web", "publicIp": "203.0.113.5", "publicPort": 80,
            "privatePort": 8080, "protocol": "tcp", "algorithm": "roundrobin", "revoke": False,
            "backends": [{"ip": "10.1.0.11", "port": 8080, "revoked": False},
                         {"ip": "10.1.0.10", "port": 8080, "revoked": False}], **fields}


LB_SET = {"rules": [
    lb_rule(),
    lb_rule(2, name="dns — ünïcode ok", publicPort="53", privatePort="53", protocol="UDP",
            algorithm="source", backends=[
                {"ip": "10.1.0.20", "port": "53", "revoked": "false"},
                {"ip": "10.1.0.21", "port": 53, "revoked": True},
                {"ip": "10.1.0.20", "port": 53}]),
    lb_rule(3, publicPort=81, revoke=True, backends=[{"ip": "10.9.9.9", "port": 1}]),
]}


def test_load_balancers_drop_revoked_rules_and_members(api: Api, addresses: None) -> None:
    lbs = api.ok("PUT", LBS, LB_SET)
    assert lbs == {"rules": [
        {"id": 1, "name": "web", "publicIp": "203.0.113.5", "publicPort": 80,
         "privatePort": 8080, "protocol": "tcp", "algorithm": "roundrobin",
         "backends": [{"ip": "10.1.0.10", "port": 8080}, {"ip": "10.1.0.11", "port": 8080}]},
        {"id": 2, "name": "dns — ünïcode ok", "publicIp": "203.0.113.5", "publicPort": 53,
         "privatePort": 53, "protocol": "udp", "algorithm": "source",
         "backends": [{"ip": "10.1.0.20", "port": 53}]},
    ]}
    assert api.ok("GET", LBS) == lbs


def test_load_balancers_replay_and_round_trip_change_nothing(
    api: Api, addresses: None
) -> None:
    first = api.ok("PUT", LBS, LB_SET)
    stamps = created(api, LbRule)
    assert api.ok("PUT", LBS, LB_SET) == first
    assert api.ok("PUT", LBS, first) == first
    assert created(api, LbRule) == stamps
    assert (count(api, LbRule), count(api, LbBackend)) == (2, 3)


def test_load_balancer_set_is_replaced_whole(api: Api, addresses: None) -> None:
    api.ok("PUT", LBS, LB_SET)
    # Rule 1 loses a member, rule 4 takes over rule 2's listener, rule 2 goes.
    lbs = api.ok("PUT", LBS, {"rules": [
        lb_rule(backends=[{"ip": "10.1.0.10", "port": 8080}]),
        lb_rule(4, publicPort=53, protocol="udp", algorithm="leastconn"),
    ]})
    assert [(rule["id"], len(rule["backends"])) for rule in lbs["rules"]] == [(1, 1), (4, 2)]
    assert api.ok("PUT", LBS, {"rules": []}) == {"rules": []}
    assert (count(api, LbRule), count(api, LbBackend)) == (0, 0)


def test_load_balancers_share_vpc_addresses_but_not_ports(api: Api, addresses: None) -> None:
    rule = lb_rule(publicIp="203.0.113.20", backends=[{"ip": "10.10.1.5", "port": 80}])
    api.ok("PUT", f"/v1/networks/{TIER}/load-balancers", {"rules": [rule]})
    other = {**rule, "id": 2, "backends": [{"ip": "10.10.2.5", "port": 80}]}
    error = api.fails("PUT", f"/v1/networks/{OTHER_TIER}/load-balancers", {"rules": [other]}, 409)
    assert "tcp/80 on 203.0.113.20 is used by load balancer 1 of network 51" in error
    api.ok("PUT", f"/v1/networks/{OTHER_TIER}/load-balancers",
           {"rules": [{**other, "publicPort": 8080}]})


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"rules": [lb_rule(), lb_rule()]}, 400, "rules[1].id: 1 appears twice"),
        ({"rules": [lb_rule(), lb_rule(2)]}, 400,
         "rules[1].publicPort: 203.0.113.5 tcp/80 appears twice"),
        ({"rules": [lb_rule(name="web\nfrontend evil")]}, 400,
         "rules[0].name: control characters are not allowed"),
        ({"rules": [lb_rule(name="x" * 256)]}, 400, "rules[0].name: use 1-255 characters"),
        ({"rules": [lb_rule(name="")]}, 400, "rules[0].name: use 1-255 characters"),
        ({"rules": [lb_rule(protocol="http")]}, 400, "rules[0].protocol: 'http' is not one of"),
        ({"rules": [lb_rule(algorithm="random")]}, 400, "rules[0].algorithm: 'random'"),
        ({"rules": [lb_rule(publicPort=0)]}, 400, "rules[0].publicPort: 0 is outside"),
        ({"rules": [lb_rule(revoke="maybe")]}, 400, "rules[0].revoke: expected true or false"),
        ({"rules": [lb_rule(backends=[{"ip": "10.2.0.5", "port": 80}])]}, 400,
         "rules[0].backends[0].ip: 10.2.0.5 is outside 10.1.0.0/24"),
        ({"rules": [lb_rule(backends=[{"ip": "10.1.0.5", "port": 80, "weight": 2}])]}, 400,
         "rules[0].backends[0].unknown field 'weight'"),
        ({"rules": [lb_rule(stickiness="lb_cookie")]}, 400, "unknown field 'stickiness'"),
        ({"rules": None}, 400, "rules: required"),
        ({"rules": [lb_rule(publicIp="203.0.113.99")]}, 404, "unknown public IP 203.0.113.99"),
        ({"rules": [lb_rule(publicIp="203.0.113.20")]}, 409, "assigned to VPC 5"),
        ({"rules": [lb_rule(publicPort=443)]}, 409, "overlaps port forward tcp/400-500"),
        ({"rules": [lb_rule(publicIp="203.0.113.6")]}, 409, "has static NAT to 10.1.0.9"),
    ],
)
def test_bad_load_balancers_are_refused_and_change_nothing(
    api: Api, addresses: None, body: dict[str, Any], status: int, message: str
) -> None:
    before = api.ok("PUT", LBS, LB_SET)
    api.ok("PUT", forward_path(ports="400-500"),
           {"network_id": NET, "private_ip": "10.1.0.10", "private_port": "400-500"})
    api.ok("PUT", f"{IPS}/203.0.113.6/static-nat", {"network_id": NET, "private_ip": "10.1.0.9"})
    assert message in api.fails("PUT", LBS, body, status)
    assert api.ok("GET", LBS) == before


def test_port_forward_and_load_balancer_never_share_a_port(api: Api, addresses: None) -> None:
    api.ok("PUT", LBS, LB_SET)
    body = {"network_id": NET, "private_ip": "10.1.0.10", "private_port": "70-90"}
    assert "tcp/70-90 on 203.0.113.5 is used by load balancer 1 of network 42" in api.fails(
        "PUT", forward_path(ports="70-90"), body, 409)
    assert "used by load balancer 1 of network 42; it cannot take static NAT" in api.fails(
        "PUT", f"{IPS}/203.0.113.5/static-nat", {"network_id": NET, "private_ip": "10.1.0.9"},
        409)
    api.ok("PUT", forward_path(ports="80", protocol="udp"),
           {**body, "private_port": "80"})  # another protocol is another port


# --- cascades --------------------------------------------------------------------------


def test_release_removes_the_address_rules(api: Api, addresses: None) -> None:
    api.ok("PUT", FIREWALL, FW_SET)
    api.ok("PUT", LBS, LB_SET)
    api.ok("DELETE", f"{IPS}/203.0.113.5", status=204)
    # Its ingress rule and load balancers went with it; the other address's rules stay.
    assert [rule["id"] for rule in api.ok("GET", FIREWALL)["rules"]] == [3, 7]
    assert api.ok("GET", LBS) == {"rules": []}
    assert count(api, LbBackend) == 0


def test_destroying_a_network_removes_its_rule_sets(api: Api, addresses: None) -> None:
    api.ok("PUT", FIREWALL, FW_SET)
    api.ok("PUT", LBS, LB_SET)
    api.ok("PUT", ACL, ACL_SET)
    api.ok("DELETE", f"/v1/networks/{NET}", status=204)
    assert (count(api, FirewallRule), count(api, LbRule), count(api, LbBackend)) == (0, 0, 0)
    assert count(api, AclItem) == 4
    api.ok("DELETE", f"/v1/networks/{TIER}", status=204)
    assert count(api, AclItem) == 0
