"""ROUTED networks through the real entry-point: the mode comes from the registration of
the `vxgate-routed` extension (NEE's payload has none), and ingress firewall rules open
guest addresses (destCidrs), not a public IP."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from bench.service import Service
from tests import cloudstack_payloads as cp
from tests.cloudstack_payloads import CloudStack, Net, PublicIp, Registration
from tests.functional.test_extension_commands import one_line


def routed_element(service: Service) -> CloudStack:
    """NEE as the provider `vxgate-routed`: its registration says the mode."""
    return CloudStack(replace(Registration.of(service), network_mode="routed"))


ROUTED = Net("94", "198.18.94.0/24", "198.18.94.1")  # RFC 2544 guest space


def routed_softgate_json(service: Service) -> tuple[int, dict[str, Any]]:
    """(generation, the ROUTED network's netfilter domain) of sg-routed's softgate.json."""
    answer = service.ok("GET", "/v1/devices/sg-routed/config")
    artifact = answer["artifacts"]["softgate.json"]
    domains = json.loads(artifact["content"])["netfilter"]["domains"]
    (domain,) = [d for d in domains if [n["id"] for n in d["networks"]] == [ROUTED.id]]
    return artifact["generation"], domain


def test_routed_firewall_rules_through_the_entry_point(service: Service) -> None:
    """createRoutingFirewallRule's apply-fw-rules as NEE sends it: ingress rules with
    publicIp "" and destCidrs (none: the whole network). Stored, compiled into the
    SoftGate's state for the network's domain, and a replay changes neither."""
    routed = routed_element(service)
    routed.ok("implement-network", cp.implement_network(ROUTED), ROUTED)
    service.ok("PUT", "/v1/devices/sg-routed", {
        "zone_id": cp.ZONE, "role": "softgate", "loopback": "10.255.2.94",
        "uplinks": [{"interface": "uplink"}]})
    rules = [cp.fw_rule(41, "ingress", "tcp", ports=(22, 22), source=["192.0.2.0/24"],
                        dest=["198.18.94.10/32"]),
             cp.fw_rule(42, "ingress", "icmp", icmp=(8, 0), source=["0.0.0.0/0"]),
             cp.fw_rule(43, "egress", "udp", ports=(53, 53), source=[ROUTED.cidr],
                        dest=["192.0.2.53/32"])]
    payload = cp.fw_rules(ROUTED, rules)
    assert payload["fw_rules"]["rules"][0]["publicIp"] == ""  # NEE's getIpAddress
    routed.ok("apply-fw-rules", payload, ROUTED)
    state, part = cp.state_about(service, ROUTED)
    assert [(r["id"], r["type"], r["publicIp"], r["sourceCidrs"], r["destCidrs"])
            for r in part["firewall"]["rules"]] == [
        (41, "ingress", None, ["192.0.2.0/24"], ["198.18.94.10/32"]),
        (42, "ingress", None, ["0.0.0.0/0"], []),
        (43, "egress", None, [ROUTED.cidr], ["192.0.2.53/32"])]
    generation, domain = routed_softgate_json(service)
    assert (domain["mode"], domain["source_nat_ip"]) == ("routed", None)
    assert [(r["id"], r["direction"], r.get("dest_cidrs"), "public_ip" in r)
            for r in domain["firewall_rules"]] == [
        ("41", "ingress", ["198.18.94.10/32"], False),
        ("42", "ingress", [ROUTED.cidr], False),  # none named: the whole network
        ("43", "egress", ["192.0.2.53/32"], False)]

    routed.ok("apply-fw-rules", payload, ROUTED)  # CloudStack has no retries: replays
    assert cp.state_about(service, ROUTED)[0] == state
    assert routed_softgate_json(service) == (generation, domain)


def test_routed_and_natted_ingress_rules_fit_their_mode(service: Service, cs: CloudStack
                                                        ) -> None:
    """NATTED: an ingress rule needs its public IP; ROUTED: it may not have one."""
    natted = Net("96", "10.96.0.0/24", "10.96.0.1")
    cs.ok("implement-network", cp.implement_network(natted), natted)
    no_ip = cp.fw_rules(natted, [cp.fw_rule(51, "ingress", "tcp", ports=(22, 22))])
    refused = cs.run("apply-fw-rules", no_ip, natted)
    one_line(refused.code, refused.output,
             "rules[0].publicIp: network 96 is NATTED: its ingress rules need a public IP")
    routed, element = Net("97", "198.18.97.0/24", "198.18.97.1"), routed_element(service)
    element.ok("implement-network", cp.implement_network(routed), routed)
    ip = PublicIp("203.0.113.97")
    element.ok("assign-ip", cp.public_ip(routed, ip, False), routed)
    with_ip = cp.fw_rules(routed, [cp.fw_rule(52, "ingress", "tcp", ports=(22, 22),
                                              public_ip=ip.address)])
    refused = element.run("apply-fw-rules", with_ip, routed)
    one_line(refused.code, refused.output, "network 97 is ROUTED, without NAT")
    for net in (natted, routed):
        assert cp.state_about(service, net)[1]["firewall"]["rules"] == []


def test_the_routed_extension_makes_routed_networks(service: Service) -> None:
    """NEE's payload has no network mode: the registration of the routed extension says
    it (cloudstack_registration.build_plan), for every network it implements."""
    routed = routed_element(service)
    net = Net("60", "198.18.60.0/24", "198.18.60.1", state="implementing")
    routed.ok("implement-network", cp.implement_network(net), net)
    routed.ok("implement-network", cp.implement_network(net), net)  # a replay
    assert service.ok("GET", "/v1/networks/60")["mode"] == "routed"
    natted = CloudStack(Registration.of(service))
    other = Net("61", "10.61.0.0/24", "10.61.0.1", state="implementing")
    natted.ok("implement-network", cp.implement_network(other), other)
    assert service.ok("GET", "/v1/networks/61")["mode"] == "natted"


def test_an_unknown_network_mode_is_refused_in_one_line(service: Service) -> None:
    odd = CloudStack(replace(Registration.of(service), network_mode="bridged"))
    net = Net("62", "10.62.0.0/24", "10.62.0.1", state="implementing")
    spawn = odd.run("implement-network", cp.implement_network(net), net)
    assert spawn.code != 0
    assert spawn.output.strip().count("\n") == 0
    assert "vxgate.network_mode" in spawn.output and "bridged" in spawn.output
    assert service.call("GET", "/v1/networks/62")[0] == 404
