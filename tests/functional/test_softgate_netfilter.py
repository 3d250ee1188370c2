"""The SoftGate's netfilter with real traffic through a routing-domain namespace.

Topology (all namespaces `vxt<pid>-*`, removed by name at the end):

  inet  up0 198.51.100.1/31, lo 192.0.2.10-25/32   servers on 7000/7001 tcp, 5000 udp
    |
  rt    pub0 198.51.100.0/31, default via inet      the tenant router: nft applied here
    |   br1 10.1.1.1/24 -- vm1 .11, vm2 .12, vm3 .13
    |   br2 10.1.2.1/24 -- vm4 .14
  each vm serves tcp 7000-7003, 8080 and udp 5000-5003, answering "<vm> <peer ip>"

Each test applies a desired state through DomainApplier and the real nft module, so the
same code path as the agent runs. Negative probes time out after 0.5 s (drops).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

import pytest
from flask import Flask

from agent.conntrack import established_by_backend
from agent.netfilter_apply import ApplyResult, DomainApplier
from agent.netfilter_lb import leastconn_weights
from agent.netfilter_state import RoutingDomain
from agent.nft import Nft
from provider_service.db import Database
from provider_service.models import Device
from provider_service.softgate_state import compile_softgate_state
from tests.conftest import Api
from tests.functional.netns_lab import Lab, Prober, require_root, wait_for
from tests.golden.frr_cases import _device, _network, _zone

pytestmark = pytest.mark.slow
SNAT_IP, STATIC_IP, LB_IP = "203.0.113.2", "203.0.113.3", "203.0.113.4"
INET = "198.51.100.1"
CLIENTS = [f"192.0.2.{i}" for i in range(10, 26)]
VM_TCP, VM_UDP = [7000, 7001, 7002, 7003, 8080], [5000, 5001, 5002, 5003]


class World:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.rt = lab.ns("rt")
        self.applier = DomainApplier(Nft(), self.rt)
        self.inet: Prober
        self.vm: dict[str, Prober] = {}

    def apply(self, state: dict[str, Any]) -> ApplyResult:
        result = self.applier.apply(RoutingDomain.from_json(state))
        assert result.ok, result.statuses
        return result

    def fresh(self, state: dict[str, Any]) -> ApplyResult:
        """Apply and forget earlier flows, so no old conntrack entry decides a probe."""
        result = self.apply(state)
        self.lab.flush_conntrack(self.rt)
        return result


def build(lab: Lab) -> World:
    world = World(lab)
    inet, rt = lab.add_ns("inet"), lab.add_ns("rt", router=True)
    lab.veth(inet, "up0", rt, "pub0")
    lab.ip(inet, "addr", "add", f"{INET}/31", "dev", "up0")
    for client in CLIENTS:
        lab.ip(inet, "addr", "add", f"{client}/32", "dev", "lo")
    lab.ip(inet, "route", "add", "203.0.113.0/24", "via", "198.51.100.0")
    lab.ip(inet, "route", "add", "10.1.0.0/16", "via", "198.51.100.0")  # ROUTED mode
    lab.ip(rt, "addr", "add", "198.51.100.0/31", "dev", "pub0")
    lab.ip(rt, "route", "add", "default", "via", INET)
    vms = {"vm1": ("br1", "10.1.1.11"), "vm2": ("br1", "10.1.1.12"),
           "vm3": ("br1", "10.1.1.13"), "vm4": ("br2", "10.1.2.14")}
    for bridge, gateway in (("br1", "10.1.1.1/24"), ("br2", "10.1.2.1/24")):
        lab.ip(rt, "link", "add", bridge, "type", "bridge")
        lab.ip(rt, "addr", "add", gateway, "dev", bridge)
        lab.ip(rt, "link", "set", bridge, "up")
    for name, (bridge, address) in vms.items():
        ns = lab.add_ns(name)
        lab.veth(ns, "eth0", rt, f"{name}-p")
        lab.ip(rt, "link", "set", f"{name}-p", "master", bridge)
        lab.ip(ns, "addr", "add", f"{address}/24", "dev", "eth0")
        lab.ip(ns, "route", "add", "default", "via", address.rsplit(".", 1)[0] + ".1")
        lab.server(ns, name, VM_TCP, VM_UDP)
        world.vm[name] = lab.prober(ns)
    lab.server(inet, "inet", [7000, 7001], [5000])
    world.inet = lab.prober(inet)
    return world


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    lab = Lab(f"vxt{os.getpid()}")
    try:
        yield build(lab)
    finally:
        lab.cleanup()


def isolated(**extra: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "id": "1", "kind": "isolated", "public_interface": "pub0", "source_nat_ip": SNAT_IP,
        "networks": [{"id": "11", "cidr": "10.1.1.0/24", "gateway": "10.1.1.1"}]}
    state.update(extra)
    return state


def allow_in(rule_id: str, ip: str, proto: str, start: int = 0, end: int = 0,
             sources: list[str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"id": rule_id, "direction": "ingress", "network": "11",
                            "public_ip": ip, "protocol": proto}
    if start:
        rule.update(port_start=start, port_end=end or start)
    if sources:
        rule["source_cidrs"] = sources
    return rule


def test_source_nat(world: World) -> None:
    world.fresh(isolated())
    assert world.vm["vm1"].tcp(INET, 7000) == f"inet {SNAT_IP}"
    assert world.vm["vm2"].udp(INET, 5000) == f"inet {SNAT_IP}"
    assert world.inet.tcp("10.1.1.11", 7000) is None  # NAT mode: guests not routed in


def test_static_nat_both_directions(world: World) -> None:
    state = isolated(static_nats=[{"public_ip": STATIC_IP, "private_ip": "10.1.1.11"}],
                     firewall_rules=[allow_in("1", STATIC_IP, "all")])
    world.fresh(state)
    assert world.vm["vm1"].tcp(INET, 7000) == f"inet {STATIC_IP}"
    assert world.vm["vm2"].tcp(INET, 7000) == f"inet {SNAT_IP}"
    assert world.inet.tcp(STATIC_IP, 7001) == f"vm1 {INET}"
    assert world.inet.udp(STATIC_IP, 5002) == f"vm1 {INET}"
    assert world.lab.ping(world.lab.ns("inet"), STATIC_IP)


def test_port_forward_ranges_tcp_and_udp(world: World) -> None:
    forwards = [
        {"id": "1", "public_ip": SNAT_IP, "protocol": "tcp", "public_port": "6000-6002",
         "private_ip": "10.1.1.12", "private_port": "7000-7002"},
        {"id": "2", "public_ip": SNAT_IP, "protocol": "udp", "public_port": "5000-5003",
         "private_ip": "10.1.1.12", "private_port": "5000-5003"},
        {"id": "3", "public_ip": SNAT_IP, "protocol": "tcp", "public_port": 2222,
         "private_ip": "10.1.1.13", "private_port": 8080}]
    rules = [allow_in("1", SNAT_IP, "tcp", 6000, 6002), allow_in("2", SNAT_IP, "udp", 5000, 5003),
             allow_in("3", SNAT_IP, "tcp", 2222)]
    world.fresh(isolated(port_forwards=forwards, firewall_rules=rules))
    for port in (6000, 6001, 6002):
        assert world.inet.tcp(SNAT_IP, port) == f"vm2 {INET}", port
    for port in (5000, 5003):
        assert world.inet.udp(SNAT_IP, port) == f"vm2 {INET}", port
    assert world.inet.tcp(SNAT_IP, 2222) == f"vm3 {INET}"
    assert world.inet.tcp(SNAT_IP, 6003) is None  # not forwarded


def test_firewall_ingress_allow_and_block(world: World) -> None:
    forward = {"id": "1", "public_ip": SNAT_IP, "protocol": "tcp", "public_port": 2222,
               "private_ip": "10.1.1.13", "private_port": 8080}
    allowed = allow_in("1", SNAT_IP, "tcp", 2222, sources=["192.0.2.0/28"])
    world.fresh(isolated(port_forwards=[forward], firewall_rules=[allowed]))
    assert world.inet.tcp(SNAT_IP, 2222, src="192.0.2.10") == "vm3 192.0.2.10"
    assert world.inet.tcp(SNAT_IP, 2222, src="192.0.2.20") is None  # outside /28
    assert world.inet.tcp(SNAT_IP, 2222) is None  # from 198.51.100.1
    result = world.apply(isolated(port_forwards=[forward]))  # the rule is revoked
    assert result.mode == "delta"
    assert world.inet.tcp(SNAT_IP, 2222, src="192.0.2.10") is None


def test_egress_default_deny_then_allow(world: World) -> None:
    allow_7000 = {"id": "9", "direction": "egress", "network": "11", "protocol": "tcp",
                  "port_start": 7000, "port_end": 7000}
    deny_net = [{"id": "11", "cidr": "10.1.1.0/24", "gateway": "10.1.1.1",
                 "egress_default_allow": False}]
    world.fresh(isolated(networks=deny_net, firewall_rules=[allow_7000]))
    assert world.vm["vm1"].tcp(INET, 7000) == f"inet {SNAT_IP}"
    assert world.vm["vm1"].tcp(INET, 7001) is None
    assert world.vm["vm1"].udp(INET, 5000) is None
    # Default allow: the same rule now denies port 7000.
    world.fresh(isolated(firewall_rules=[allow_7000]))
    assert world.vm["vm1"].tcp(INET, 7000) is None
    assert world.vm["vm1"].tcp(INET, 7001) == f"inet {SNAT_IP}"


def vpc(tier2_ingress: list[dict[str, Any]]) -> dict[str, Any]:
    allow_all = {"number": 100, "action": "allow", "direction": "egress", "protocol": "all"}
    return {
        "id": "v1", "kind": "vpc", "public_interface": "pub0", "source_nat_ip": SNAT_IP,
        "networks": [
            {"id": "21", "cidr": "10.1.1.0/24", "gateway": "10.1.1.1", "acl": [allow_all]},
            {"id": "22", "cidr": "10.1.2.0/24", "gateway": "10.1.2.1",
             "acl": [allow_all, *tier2_ingress]}],
        "port_forwards": [{"id": "1", "public_ip": SNAT_IP, "protocol": "tcp",
                           "public_port": 2222, "private_ip": "10.1.2.14",
                           "private_port": 7000}]}


def test_vpc_acl_deny_then_removal_restores(world: World) -> None:
    deny = {"number": 10, "action": "deny", "direction": "ingress", "protocol": "tcp",
            "port_start": 7000, "port_end": 7003, "cidrs": ["10.1.1.0/24"]}
    allow = {"number": 20, "action": "allow", "direction": "ingress", "protocol": "all"}
    world.fresh(vpc([deny, allow]))
    assert world.vm["vm1"].tcp("10.1.2.14", 7000) is None  # denied by item 10
    assert world.vm["vm1"].tcp("10.1.2.14", 8080) == "vm4 10.1.1.11"  # item 20
    assert world.inet.tcp(SNAT_IP, 2222) == f"vm4 {INET}"  # from outside: not 10.1.1/24
    assert world.vm["vm4"].tcp(INET, 7000) == f"inet {SNAT_IP}"  # VPC source NAT
    result = world.apply(vpc([allow]))
    assert result.mode == "delta"
    assert world.vm["vm1"].tcp("10.1.2.14", 7000) == "vm4 10.1.1.11"
    world.apply(vpc([]))  # nothing allowed in: the terminal deny
    assert world.vm["vm1"].tcp("10.1.2.14", 8080) is None


def lb_state(algorithm: str, backends: list[tuple[str, bool]]) -> dict[str, Any]:
    balancer = {"id": "1", "public_ip": LB_IP, "public_port": 80, "protocol": "tcp",
                "algorithm": algorithm,
                "backends": [{"ip": ip, "port": 8080, "alive": alive} for ip, alive in backends]}
    return isolated(load_balancers=[balancer], firewall_rules=[allow_in("1", LB_IP, "tcp", 80)])


def backend_of(reply: str | None) -> str:
    assert reply is not None
    return reply.split()[0]


def test_lb_roundrobin_spreads_and_skips_dead(world: World) -> None:
    world.fresh(lb_state("roundrobin", [("10.1.1.11", True), ("10.1.1.12", True)]))
    seen = Counter(backend_of(world.inet.tcp(LB_IP, 80)) for _ in range(12))
    assert seen == {"vm1": 6, "vm2": 6}  # 120 slots over 2: exact alternation
    world.apply(lb_state("roundrobin", [("10.1.1.11", True), ("10.1.1.12", False)]))
    assert {backend_of(world.inet.tcp(LB_IP, 80)) for _ in range(8)} == {"vm1"}


def test_lb_source_keeps_a_client_on_one_backend(world: World) -> None:
    world.fresh(lb_state("source", [("10.1.1.11", True), ("10.1.1.12", True)]))
    chosen = {}
    for client in CLIENTS:
        backends = {backend_of(world.inet.tcp(LB_IP, 80, src=client)) for _ in range(3)}
        assert len(backends) == 1, client
        chosen[client] = backends.pop()
    assert set(chosen.values()) == {"vm1", "vm2"}  # 16 clients hash to both


def test_lb_established_connection_survives_member_changes(world: World) -> None:
    world.fresh(lb_state("roundrobin", [("10.1.1.11", True)]))
    assert world.inet.tcp(LB_IP, 80, hold="a") == f"vm1 {INET}"
    # Adding backend B changes the slot map; the held connection stays on A.
    world.apply(lb_state("roundrobin", [("10.1.1.11", True), ("10.1.1.12", True)]))
    wait_for(lambda: "vm2" in {backend_of(world.inet.tcp(LB_IP, 80)) for _ in range(2)},
             what="new connections to reach backend B")
    assert world.inet.send("a", "still there") == "vm1 still there"
    # Removing B (and marking A dead for new connections) does not cut it either.
    world.apply(lb_state("roundrobin", [("10.1.1.11", False), ("10.1.1.13", True)]))
    assert world.inet.send("a", "and now") == "vm1 and now"
    assert {backend_of(world.inet.tcp(LB_IP, 80)) for _ in range(4)} == {"vm3"}
    # Nor does a whole-ruleset rebuild (tables deleted and created in one transaction):
    # the NAT binding lives in conntrack, not in the table.
    world.applier.forget()
    result = world.apply(lb_state("roundrobin", [("10.1.1.12", True)]))
    assert result.mode == "full"
    assert world.inet.send("a", "after a rebuild") == "vm1 after a rebuild"
    assert {backend_of(world.inet.tcp(LB_IP, 80)) for _ in range(4)} == {"vm2"}


def test_routed_mode_no_nat_firewall_applies(world: World) -> None:
    routed = {"id": "2", "kind": "isolated", "mode": "routed", "public_interface": "pub0",
              "networks": [{"id": "11", "cidr": "10.1.1.0/24", "gateway": "10.1.1.1"}],
              "firewall_rules": [
                  {"id": "1", "direction": "ingress", "network": "11", "protocol": "tcp",
                   "port_start": 7000, "port_end": 7000, "dest_cidrs": ["10.1.1.11/32"]},
                  {"id": "2", "direction": "egress", "network": "11", "protocol": "udp"}]}
    world.fresh(routed)
    assert world.vm["vm1"].tcp(INET, 7000) == "inet 10.1.1.11"  # no source NAT
    assert world.inet.tcp("10.1.1.11", 7000) == f"vm1 {INET}"  # allowed in, no DNAT
    assert world.inet.tcp("10.1.1.11", 7001) is None
    assert world.inet.tcp("10.1.1.12", 7000) is None
    assert world.vm["vm1"].udp(INET, 5000) is None  # egress rule denies udp


def service_domain(api: Api, app: Flask, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """The domain of ROUTED network 10.1.1.0/24 as the service compiles it into
    softgate.json, its firewall being `rules` as CloudStack sends them; on pub0."""
    def request(method: str, path: str, body: Any) -> None:
        api.ok(method, path, body)

    _zone(request)
    _network(request, "routed1", "10.1.1.0/24", mode="routed")
    request("PUT", "/v1/networks/routed1/firewall",
            {"default_egress_allow": True, "cidr": "10.1.1.0/24", "rules": rules})
    _device(request, "sg1", "softgate", "10.255.2.1")
    database: Database = app.extensions["vxgate.db"]
    with database.read() as session:
        device = session.get(Device, "sg1")
        assert device is not None
        (domain,) = compile_softgate_state(session, device)["netfilter"]["domains"]
    return {**domain, "public_interface": "pub0"}


def routing_rule(rule_id: int, protocol: str, ports: tuple[int, int], sources: list[str],
                 dests: list[str]) -> dict[str, Any]:
    """A routing firewall rule (createRoutingFirewallRule) as NEE's apply-fw-rules sends
    it: no public IP."""
    return {"id": rule_id, "type": "ingress", "protocol": protocol, "portStart": ports[0],
            "portEnd": ports[1], "publicIp": "", "sourceCidrs": sources, "destCidrs": dests}


def test_routed_ingress_rules_from_the_service(world: World, api: Api, app: Flask) -> None:
    """CloudStack's semantics for a ROUTED network, through the service's compile into
    real nftables: with no rule the internet opens no connection to a VM; a rule opens
    exactly its protocol, ports, sources and guest addresses (none named: the network)."""
    world.fresh(service_domain(api, app, []))
    assert world.vm["vm1"].tcp(INET, 7000) == "inet 10.1.1.11"  # out, not NATed
    assert world.inet.tcp("10.1.1.11", 7000) is None
    assert world.inet.udp("10.1.1.13", 5000) is None

    client, other = CLIENTS[0], CLIENTS[1]
    world.fresh(service_domain(api, app, [
        routing_rule(1, "tcp", (7000, 7001), [f"{client}/32"], ["10.1.1.11/32", "10.1.1.12"]),
        routing_rule(2, "udp", (5000, 5000), [], [])]))
    assert world.inet.tcp("10.1.1.11", 7000, src=client) == f"vm1 {client}"
    assert world.inet.tcp("10.1.1.12", 7001, src=client) == f"vm2 {client}"
    assert world.inet.tcp("10.1.1.11", 7002, src=client) is None  # another port
    assert world.inet.tcp("10.1.1.13", 7000, src=client) is None  # another guest
    assert world.inet.tcp("10.1.1.11", 7000, src=other) is None  # another source
    assert world.inet.udp("10.1.1.13", 5000, src=other) == f"vm3 {other}"
    assert world.inet.udp("10.1.1.13", 5001, src=other) is None

    world.fresh(service_domain(api, app, []))  # the rules deleted: closed again
    assert world.inet.tcp("10.1.1.11", 7000, src=client) is None
    assert world.inet.udp("10.1.1.13", 5000, src=other) is None


def test_lb_leastconn_weights_from_conntrack(world: World) -> None:
    world.fresh(lb_state("leastconn", [("10.1.1.11", True)]))
    for hold in ("l1", "l2", "l3"):
        assert world.inet.tcp(LB_IP, 80, hold=hold) == f"vm1 {INET}"
    counts = established_by_backend(world.rt)
    assert counts[(IPv4Address("10.1.1.11"), 8080)] == 3
    state = RoutingDomain.from_json(lb_state("leastconn", [("10.1.1.11", True),
                                                           ("10.1.1.12", True)]))
    weighted = leastconn_weights(state.load_balancers[0], counts)
    result = world.applier.apply(replace(state, load_balancers=(weighted,)))
    assert result.ok and "leastconn approximated" in result.statuses[-1].reason
    seen = Counter(backend_of(world.inet.tcp(LB_IP, 80)) for _ in range(8))
    assert seen["vm2"] >= 6  # vm1 holds 3 connections: weight 1000 vs 250
