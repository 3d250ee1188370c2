"""provider_service.audit: matching CloudStack's UUID-named objects with the service's
numeric ids, and the drift (and repair calls) both ways."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from provider_service.audit import (
    CLOUDSTACK_ONLY,
    DIFFERENT,
    SERVICE_ONLY,
    Call,
    CloudStackView,
    ServiceView,
    compare,
    repair_plan,
)

Json = dict[str, Any]
OURS, THEIRS = "off-vxgate", "off-vr"


def offering(uuid: str, provider: str) -> Json:
    return {"id": uuid, "service": [{"name": "SourceNat", "provider": [{"name": provider}]}]}


def cs_network(uuid: str, cidr: str, uri: str | None, **extra: Any) -> Json:
    gateway = cidr.rsplit(".", 1)[0] + ".1"
    answer = {"id": uuid, "name": uuid, "zoneid": "z-uuid", "cidr": cidr.split()[0],
              "gateway": gateway, "networkofferingid": OURS, "state": "Implemented", **extra}
    if uri:
        answer["broadcasturi"] = uri
    return answer


def svc_network(network_id: str, cidr: str, vni: int, **extra: Any) -> Json:
    return {"id": network_id, "zone_id": "1", "cidr": cidr,
            "gateway": cidr.rsplit(".", 1)[0] + ".1", "broadcast_uri": f"vxlan://{vni}",
            "vpc_id": None, "state": "implemented", **extra}


def cs_view(networks: list[Json] = (), vpcs: list[Json] = (),  # type: ignore[assignment]
            ips: list[Json] = (), forwards: list[Json] = (),  # type: ignore[assignment]
            rules: list[Json] = ()) -> CloudStackView:  # type: ignore[assignment]
    return CloudStackView(
        zones=[{"id": "z-uuid", "name": "zone1"}],
        network_offerings=[offering(OURS, "vxgate"), offering(THEIRS, "VirtualRouter"),
                           offering("off-routed", "vxgate-routed")],
        vpc_offerings=[offering("vpcoff", "vxgate")], networks=list(networks),
        vpcs=list(vpcs), public_ips=list(ips), port_forwards=list(forwards),
        firewall_rules=list(rules))


def svc_view(networks: list[Json] = (), vpcs: list[Json] = (),  # type: ignore[assignment]
             ips: list[Json] = (), forwards: list[Json] = (),  # type: ignore[assignment]
             firewalls: dict[str, Json] | None = None) -> ServiceView:
    return ServiceView(zones=[{"id": "1", "name": "zone1"}], networks=list(networks),
                       vpcs=list(vpcs), public_ips=list(ips), port_forwards=list(forwards),
                       firewalls=firewalls or {})


def svc_ip(address: str, network_id: str | None = "204", **extra: Any) -> Json:
    return {"zone_id": "1", "address": address, "network_id": network_id, "vpc_id": None,
            "cidr": "203.0.113.0/24", "gateway": "203.0.113.1", "vlan": "",
            "source_nat": False, "static_nat": None, **extra}


def cs_ip(address: str, network: str = "n1", **extra: Any) -> Json:
    return {"id": f"ip-{address}", "ipaddress": address, "zoneid": "z-uuid",
            "associatednetworkid": network, "issourcenat": False, "isstaticnat": False,
            **extra}


def test_nothing_on_either_side_is_no_drift() -> None:
    assert compare(cs_view(), svc_view()) == []


def test_networks_match_on_the_broadcast_uri_and_other_providers_do_not_count() -> None:
    cs = cs_view([cs_network("n1", "10.0.1.0/24", "vxlan://10000"),
                  cs_network("vr", "10.0.9.0/24", "vlan://100", networkofferingid=THEIRS),
                  cs_network("new", "10.0.8.0/24", None, state="Allocated")])
    assert compare(cs, svc_view([svc_network("204", "10.0.1.0/24", 10000)])) == []


def test_a_network_cloudstack_forgot_the_uri_of_matches_on_cidr_and_gateway() -> None:
    # apache/cloudstack#14077: a garbage-collected network loses its broadcast URI.
    cs = cs_view([cs_network("n1", "10.0.1.0/24", None, state="Allocated")])
    ours = svc_view([svc_network("204", "10.0.1.0/24", 10000, state="shutdown")])
    assert compare(cs, ours) == []


def test_networks_only_on_one_side() -> None:
    cs = cs_view([cs_network("n1", "10.0.1.0/24", "vxlan://10000")])
    ours = svc_view([svc_network("205", "10.0.2.0/24", 10001)],
                    ips=[svc_ip("203.0.113.5", "205")])
    theirs_only, ours_only = compare(cs, ours)
    assert (theirs_only.kind, theirs_only.where, theirs_only.key) == \
        ("network", CLOUDSTACK_ONLY, "vxlan://10000 10.0.1.0/24")
    assert theirs_only.repair.startswith("cannot repair: ") and \
        theirs_only.repair.endswith("— run restartNetwork cleanup=true (network n1)")
    assert not theirs_only.repairable
    # Its address goes with the network: one line, one call.
    assert (ours_only.where, ours_only.calls) == (SERVICE_ONLY, (Call("DELETE",
                                                                     "/v1/networks/205"),))


def test_a_network_that_differs_cannot_be_repaired_from_the_api() -> None:
    cs = cs_view([cs_network("n1", "10.0.1.0/24", "vxlan://10000", gateway="10.0.1.254")])
    (drift,) = compare(cs, svc_view([svc_network("204", "10.0.1.0/24", 10000)]))
    assert (drift.where, drift.detail) == (DIFFERENT, "network 204: gateway 10.0.1.254 in "
                                                      "CloudStack, 10.0.1.1 in the service")


def test_vpcs_match_through_their_tiers() -> None:
    vpc = {"id": "v1", "name": "v1", "cidr": "10.1.0.0/16", "vpcofferingid": "vpcoff",
           "state": "Enabled"}
    cs = cs_view([cs_network("t1", "10.1.1.0/24", "vxlan://10000", vpcid="v1")], [vpc])
    ours = svc_view([svc_network("204", "10.1.1.0/24", 10000, vpc_id="7")],
                    [{"id": "7", "cidr": "10.1.0.0/16"}, {"id": "8", "cidr": "10.2.0.0/16"}])
    (stale,) = compare(cs, ours)
    assert (stale.kind, stale.where, stale.calls) == ("vpc", SERVICE_ONLY,
                                                      (Call("DELETE", "/v1/vpcs/8"),))


def test_a_missing_address_is_added_with_the_range_of_its_neighbours() -> None:
    cs = cs_view([cs_network("n1", "10.0.1.0/24", "vxlan://10000")],
                 ips=[cs_ip("203.0.113.5", issourcenat=True), cs_ip("203.0.113.6")])
    ours = svc_view([svc_network("204", "10.0.1.0/24", 10000)],
                    ips=[svc_ip("203.0.113.5", source_nat=True)])
    (drift,) = compare(cs, ours)
    (call,) = drift.calls
    assert (drift.where, call.method, call.path) == (
        CLOUDSTACK_ONLY, "PUT", "/v1/zones/1/public-ips/203.0.113.6")
    assert call.body == {"network_id": "204", "cidr": "203.0.113.0/24",
                         "gateway": "203.0.113.1", "vlan": "", "source_nat": False}
    # No neighbour, no range: the API does not show it.
    (alone,) = compare(cs, svc_view([svc_network("204", "10.0.1.0/24", 10000)]))[:1]
    assert alone.repair.startswith("cannot repair: the API does not show its range")


def test_port_forwards_and_static_nat_both_ways() -> None:
    cs = cs_view([cs_network("n1", "10.0.1.0/24", "vxlan://10000")],
                 ips=[cs_ip("203.0.113.5", isstaticnat=True, vmipaddress="10.0.1.3")],
                 forwards=[{"networkid": "n1", "ipaddress": "203.0.113.5", "protocol": "tcp",
                            "publicport": "22", "publicendport": "22", "privateport": "2222",
                            "privateendport": "2222", "vmguestip": "10.0.1.2"}])
    forward = {"zone_id": "1", "public_ip": "203.0.113.5", "protocol": "udp",
               "public_ports": "53", "network_id": "204", "private_ip": "10.0.1.2",
               "private_ports": "53"}
    ours = svc_view([svc_network("204", "10.0.1.0/24", 10000)],
                    ips=[svc_ip("203.0.113.5")], forwards=[forward])
    drifts = {(d.kind, d.where): d for d in compare(cs, ours)}
    assert set(drifts) == {("static-nat", CLOUDSTACK_ONLY), ("port-forward", CLOUDSTACK_ONLY),
                           ("port-forward", SERVICE_ONLY)}
    added = drifts["port-forward", CLOUDSTACK_ONLY].calls[0]
    assert (added.path, added.body) == (
        "/v1/zones/1/public-ips/203.0.113.5/port-forwards/tcp/22",
        {"network_id": "204", "private_ip": "10.0.1.2", "private_port": "2222"})
    assert drifts["static-nat", CLOUDSTACK_ONLY].calls[0].body == {
        "network_id": "204", "private_ip": "10.0.1.3"}
    plan = repair_plan(drifts.values())
    assert [c.method for c in plan] == ["DELETE", "PUT", "PUT"]  # drops first


def test_firewall_rules_match_on_their_fields_not_their_ids() -> None:
    rule = {"networkid": "n1", "traffictype": "Ingress", "protocol": "tcp", "startport": 22,
            "endport": 22, "ipaddress": "203.0.113.5", "cidrlist": "0.0.0.0/0"}
    cs = cs_view([cs_network("n1", "10.0.1.0/24", "vxlan://10000")], rules=[rule])

    def served(rule_id: int, port: int) -> Json:
        return {"id": rule_id, "type": "ingress", "protocol": "tcp", "portStart": port,
                "portEnd": port, "icmpType": None, "icmpCode": None,
                "publicIp": "203.0.113.5", "sourceCidrs": ["0.0.0.0/0"], "destCidrs": []}

    firewall = {"default_egress_allow": True, "cidr": "10.0.1.0/24",
                "rules": [served(7, 22), served(8, 80), served(9, 443)]}
    ours = svc_view([svc_network("204", "10.0.1.0/24", 10000)], firewalls={"204": firewall})
    drifts = compare(cs, ours)
    assert [(d.key, d.where) for d in drifts] == [
        ("network 204: ingress tcp/80 to 203.0.113.5 from 0.0.0.0/0", SERVICE_ONLY),
        ("network 204: ingress tcp/443 to 203.0.113.5 from 0.0.0.0/0", SERVICE_ONLY)]
    (call,) = repair_plan(drifts)  # one PUT serves both
    assert call.body is not None and [r["id"] for r in call.body["rules"]] == [7]
    missing = compare(cs, svc_view([svc_network("204", "10.0.1.0/24", 10000)],
                                   firewalls={"204": {**firewall, "rules": []}}))
    assert [(d.where, d.repairable) for d in missing] == [(CLOUDSTACK_ONLY, False)]


def lb_view(served: list[Json], **cs_lb: Any) -> tuple[CloudStackView, ServiceView]:
    rule = {"id": "lb-uuid", "networkid": "n1", "publicip": "203.0.113.5",
            "publicport": "80", "privateport": "8080", "protocol": "tcp",
            "algorithm": "roundrobin", "memberips": ["10.0.1.2"], **cs_lb}
    cs = replace(cs_view([cs_network("n1", "10.0.1.0/24", "vxlan://10000")]),
                 load_balancers=[rule])
    ours = replace(svc_view([svc_network("204", "10.0.1.0/24", 10000)]),
                   load_balancers={"204": {"rules": served}})
    return cs, ours


def served_lb(rule_id: int, port: int, members: tuple[str, ...] = ("10.0.1.2",)) -> Json:
    return {"id": rule_id, "name": f"lb{rule_id}", "publicIp": "203.0.113.5",
            "publicPort": port, "privatePort": 8080, "protocol": "tcp",
            "algorithm": "roundrobin", "backends": [{"ip": ip, "port": 8080} for ip in members]}


def test_load_balancers_match_on_address_protocol_and_port() -> None:
    assert compare(*lb_view([served_lb(7, 80)])) == []
    drifts = compare(*lb_view([served_lb(7, 80, ()), served_lb(8, 81)]))
    assert [(d.kind, d.key, d.where) for d in drifts] == [
        ("lb-rule", "network 204: 203.0.113.5 tcp/80", DIFFERENT),
        ("lb-rule", "network 204: 203.0.113.5 tcp/81", SERVICE_ONLY)]
    assert drifts[0].detail == "roundrobin to :8080 (10.0.1.2) (service: roundrobin to " \
                               ":8080 (no members))"
    (call,) = repair_plan(drifts)  # one PUT: rule 8 dropped, rule 7's members restored
    assert (call.method, call.path) == ("PUT", "/v1/networks/204/load-balancers")
    assert call.body == {"rules": [{**served_lb(7, 80), "name": "lb7"}]}


def test_a_load_balancer_only_in_cloudstack_cannot_be_repaired() -> None:
    (drift,) = compare(*lb_view([], algorithm="LeastConn"))
    assert (drift.where, drift.detail, drift.repairable) == (
        CLOUDSTACK_ONLY, "leastconn to :8080 (10.0.1.2)", False)
    assert drift.repair.endswith("— run restartNetwork cleanup=true")


def acl_view(items: list[Json], served: list[Json]) -> tuple[CloudStackView, ServiceView]:
    vpc = {"id": "v1", "name": "v1", "cidr": "10.1.0.0/16", "vpcofferingid": "vpcoff",
           "state": "Enabled"}
    tier = cs_network("t1", "10.1.1.0/24", "vxlan://10000", vpcid="v1", aclid="acl1",
                      aclname="web")
    cs = replace(cs_view([tier], [vpc]), acl_items=items)
    ours = replace(svc_view([svc_network("204", "10.1.1.0/24", 10000, vpc_id="7")],
                            [{"id": "7", "cidr": "10.1.0.0/16"}]),
                   acls={"204": {"rules": served}})
    return cs, ours


def cs_acl(number: int, action: str = "Allow", **extra: Any) -> Json:
    return {"id": f"i{number}", "aclid": "acl1", "number": number, "action": action,
            "traffictype": "Ingress", "protocol": "tcp", "startport": "22", "endport": "22",
            "cidrlist": "0.0.0.0/0", **extra}


def served_acl(number: int, action: str = "allow") -> Json:
    return {"number": number, "action": action, "trafficType": "ingress", "protocol": "tcp",
            "portStart": 22, "portEnd": 22, "icmpType": None, "icmpCode": None,
            "sourceCidrs": ["0.0.0.0/0"]}


def test_acl_items_match_on_their_number_and_every_drift_is_repairable() -> None:
    assert compare(*acl_view([cs_acl(10)], [served_acl(10)])) == []
    other_list = cs_acl(30, aclid="acl2")  # a list the tier does not use
    drifts = compare(*acl_view([cs_acl(10, "Deny"), cs_acl(20), other_list],
                               [served_acl(10), served_acl(40)]))
    assert [(d.kind, d.key, d.where) for d in drifts] == [
        ("acl-item", "network 204: #10", DIFFERENT),
        ("acl-item", "network 204: #20", CLOUDSTACK_ONLY),
        ("acl-item", "network 204: #40", SERVICE_ONLY)]
    assert drifts[0].detail == "deny ingress tcp/22 from 0.0.0.0/0 (service: allow " \
                               "ingress tcp/22 from 0.0.0.0/0)"
    (call,) = repair_plan(drifts)
    assert (call.method, call.path) == ("PUT", "/v1/networks/204/acl")
    assert call.body == {"rules": [served_acl(10, "deny"), served_acl(20)]}


def test_icmp_acl_items_carry_type_and_code_not_ports() -> None:
    icmp = cs_acl(5, protocol="icmp", icmptype=8, icmpcode=0, startport=None, endport=None)
    (drift,) = compare(*acl_view([icmp], []))
    assert drift.calls[0].body == {"rules": [{
        **served_acl(5), "protocol": "icmp", "portStart": None, "portEnd": None,
        "icmpType": 8, "icmpCode": 0}]}
