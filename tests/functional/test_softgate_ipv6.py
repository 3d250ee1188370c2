"""The SoftGate's IPv6 firewall with real traffic through a routing-domain namespace.

Topology (namespaces `vxt<pid>6-*`, removed by name at the end; documentation
prefixes only, and no veth has an end in the root namespace):

  inet  up0 fe80::1/64, lo 2001:db8:ffff::1/128      "the internet", serves tcp 7000
    |   (link-local only, as the contract's uplink: so neighbour discovery on the
    |    public interface must pass the domain's input chain)
  rt    pub0 fe80::2/64, default via fe80::1          nft applied here; forwards IPv6
    |   br1 2001:db8:1::1/64 (and 10.1.1.1/24)
  vm    eth0 2001:db8:1::11/64, default via 2001:db8:1::1, serves tcp 7000

IPv6 is routed, never NATed: the internet sees the guest's own address.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from agent.netfilter_apply import DomainApplier
from agent.netfilter_render import render_teardown
from agent.netfilter_state import RoutingDomain
from agent.nft import Nft
from tests.functional.netns_lab import Lab, Prober, require_root

pytestmark = pytest.mark.slow
GUEST_NET, GUEST, GATEWAY6 = "2001:db8:1::/64", "2001:db8:1::11", "2001:db8:1::1"
INTERNET = "2001:db8:ffff::1"


@dataclass
class World:
    lab: Lab
    inet: str
    vm: str
    applier: DomainApplier
    from_inet: Prober
    from_vm: Prober

    def apply(self, state: dict[str, Any]) -> None:
        result = self.applier.apply(RoutingDomain.from_json(state))
        assert result.ok, result.statuses
        self.lab.flush_conntrack(self.lab.ns("rt"))  # no earlier flow decides a probe


def build(lab: Lab) -> World:
    inet = lab.add_ns("inet", ipv6=True)
    rt = lab.add_ns("rt", router=True, ipv6=True)
    vm = lab.add_ns("vm", ipv6=True)
    lab.veth(inet, "up0", rt, "pub0")
    lab.ip(inet, "addr", "add", "fe80::1/64", "dev", "up0", "nodad")
    lab.ip(inet, "addr", "add", f"{INTERNET}/128", "dev", "lo")
    lab.ip(inet, "-6", "route", "add", GUEST_NET, "via", "fe80::2", "dev", "up0")
    lab.ip(rt, "addr", "add", "fe80::2/64", "dev", "pub0", "nodad")
    lab.ip(rt, "-6", "route", "add", "default", "via", "fe80::1", "dev", "pub0")
    lab.ip(rt, "link", "add", "br1", "type", "bridge")
    lab.ip(rt, "addr", "add", "10.1.1.1/24", "dev", "br1")
    lab.ip(rt, "addr", "add", f"{GATEWAY6}/64", "dev", "br1", "nodad")
    lab.ip(rt, "link", "set", "br1", "up")
    lab.veth(vm, "eth0", rt, "vm-p")
    lab.ip(rt, "link", "set", "vm-p", "master", "br1")
    lab.ip(vm, "addr", "add", f"{GUEST}/64", "dev", "eth0", "nodad")
    lab.ip(vm, "-6", "route", "add", "default", "via", GATEWAY6)
    lab.server(inet, "inet", [7000], [], ipv6=True)
    lab.server(vm, "vm", [7000], [], ipv6=True)
    return World(lab, inet, vm, DomainApplier(Nft(), rt), lab.prober(inet), lab.prober(vm))


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    require_root()
    lab = Lab(f"vxt{os.getpid()}6")
    try:
        yield build(lab)
    finally:
        lab.cleanup()


def network(egress_allow: bool, **extra: Any) -> dict[str, Any]:
    return {"id": "11", "cidr": "10.1.1.0/24", "gateway": "10.1.1.1",
            "ipv6_cidr": GUEST_NET, "egress_default_allow": egress_allow, **extra}


def isolated(egress_allow: bool = True) -> dict[str, Any]:
    return {"id": "1", "kind": "isolated", "public_interface": "pub0",
            "source_nat_ip": "203.0.113.2", "networks": [network(egress_allow)]}


def test_without_our_tables_the_internet_gets_in(world: World) -> None:
    """The control: the drops below are the firewall's, not the topology's."""
    Nft().apply(world.lab.ns("rt"), render_teardown())
    world.applier.forget()
    assert world.from_inet.tcp(GUEST, 7000) == f"vm {INTERNET}"


def test_guest_reaches_the_internet_with_its_own_address(world: World) -> None:
    world.apply(isolated())
    assert world.lab.ping(world.vm, INTERNET)  # over the fe80:: uplink: ND passed
    assert world.from_vm.tcp(INTERNET, 7000) == f"inet {GUEST}"  # routed, not NATed


def test_internet_cannot_open_connections_to_the_guest(world: World) -> None:
    world.apply(isolated())
    assert world.from_inet.tcp(GUEST, 7000) is None  # dropped: no new connection in
    # The reply half of a guest-initiated connection does come in, and keeps coming.
    assert world.from_vm.tcp(INTERNET, 7000, hold="out") == f"inet {GUEST}"
    assert world.from_vm.send("out", "more") == "inet more"
    # Diagnostics pass, as RFC 4890 asks: an echo request reaches the guest.
    assert world.lab.ping(world.inet, GUEST)


def test_egress_default_deny_blocks_the_guest(world: World) -> None:
    world.apply(isolated(egress_allow=False))
    assert world.from_vm.tcp(INTERNET, 7000) is None
    assert not world.lab.ping(world.vm, INTERNET)
    assert world.from_inet.tcp(GUEST, 7000) is None
    world.apply(isolated(egress_allow=True))  # a delta: one element of egress_denied6
    assert world.from_vm.tcp(INTERNET, 7000) == f"inet {GUEST}"


def test_vpc_tier_gets_the_same_default(world: World) -> None:
    allow_all = [{"number": 1, "action": "allow", "direction": "ingress", "protocol": "all"},
                 {"number": 2, "action": "allow", "direction": "egress", "protocol": "all"}]
    world.apply({"id": "v1", "kind": "vpc", "public_interface": "pub0",
                 "source_nat_ip": "203.0.113.2",
                 "networks": [network(True, acl=allow_all)]})
    assert world.from_vm.tcp(INTERNET, 7000) == f"inet {GUEST}"
    # The ACL allows all ingress, but its items are IPv4: IPv6 keeps the default deny.
    assert world.from_inet.tcp(GUEST, 7000) is None


def test_a_network_without_ipv6_forwards_none(world: World) -> None:
    state = isolated()
    del state["networks"][0]["ipv6_cidr"]
    world.apply(state)
    assert world.from_vm.tcp(INTERNET, 7000) is None  # not a guest prefix: not ours
    assert world.from_inet.tcp(GUEST, 7000) is None
