"""agent.links_apply against agent.ipr_fake: observe, diff, apply; GC of ours only."""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import replace
from typing import Any

import pytest

from agent.ipr import PROTO, Link, LinkError, Route, Vxlan
from agent.ipr_fake import FakeIpr
from agent.links_apply import ApplyResult, LinksApplier
from agent.links_state import LinksState
from tests.unit.links_samples import domain_json, links_json, vlan_segment_json

D1, D2 = "vxr5000010", "vxr5000020"
net = ipaddress.ip_network
addr = ipaddress.ip_address
iface = ipaddress.ip_interface


def apply(fake: FakeIpr, data: dict[str, Any], *, ok: bool = True) -> ApplyResult:
    """A fresh applier every time: nothing may be remembered between applies."""
    result = LinksApplier(fake).apply(LinksState.from_json(data))
    assert result.ok is ok, [s for s in result.statuses if s.state != "ok"]
    return result


def built(domains: int = 2) -> tuple[FakeIpr, dict[str, Any]]:
    fake, data = FakeIpr(), links_json(domains)
    apply(fake, data)
    fake.calls.clear()
    return fake, data


def assert_quiet(fake: FakeIpr, data: dict[str, Any]) -> None:
    fake.calls.clear()
    result = apply(fake, data)
    assert result.changes == [] and fake.calls == []


def link(fake: FakeIpr, netns: str | None, name: str) -> Link:
    return fake.namespaces[netns].links[name]


def tamper(fake: FakeIpr, netns: str | None, name: str, **changes: Any) -> None:
    fake.namespaces[netns].links[name] = replace(link(fake, netns, name), **changes)


# --- building -------------------------------------------------------------------------


def test_from_empty_everything_is_built() -> None:
    fake, data = FakeIpr(), links_json(2)
    result = apply(fake, data)
    assert [(s.kind, s.id) for s in result.statuses] == [
        ("links", "softgate"), ("segment", "net-1-0"), ("segment", "net-1-1"), ("domain", D1),
        ("segment", "net-2-0"), ("segment", "net-2-1"), ("domain", D2)]
    assert fake.list_netns() == [D1, D2]
    vxlan = link(fake, D1, "vxv5000011")
    assert vxlan.vxlan == Vxlan(5000011, "10.255.2.1", 4789, False, 64)
    assert (vxlan.master, vxlan.mtu, vxlan.up, vxlan.learning, vxlan.neigh_suppress) == (
        "vxb5000011", 1500, True, False, True)
    l3 = link(fake, D1, "vxv5000010")
    assert (l3.master, l3.learning, l3.neigh_suppress) == ("vxb5000010", False, False)
    bridge = link(fake, D1, "vxb5000011")
    assert (bridge.kind, bridge.mac, bridge.up) == ("bridge", "02:00:5e:00:00:01", True)
    assert {iface("10.0.1.1/24"), iface("2001:db8:1::1/64")} <= bridge.addresses
    assert link(fake, D1, "vxpub").addresses == {iface("169.254.253.1/31"), iface("fe80::2/64")}
    assert link(fake, None, "vxp5000010").addresses == {iface("169.254.253.0/31"),
                                                        iface("fe80::1/64")}
    assert link(fake, D1, "lo").up
    assert set(fake.routes(D1)) == {
        Route(net("0.0.0.0/0"), addr("169.254.253.0"), "vxpub"),
        Route(net("::/0"), addr("fe80::1"), "vxpub")}
    assert set(fake.routes(None)) == {
        Route(net("203.0.113.0/24")),
        Route(net("198.18.1.0/24"), addr("169.254.253.1"), "vxp5000010"),
        Route(net("2001:db8:1::/48"), addr("fe80::2"), "vxp5000010"),
        Route(net("198.18.2.0/24"), addr("169.254.253.1"), "vxp5000020"),
        Route(net("2001:db8:2::/48"), addr("fe80::2"), "vxp5000020")}
    sysctls = fake.namespaces[D1].sysctls
    assert (sysctls["net.ipv4.ip_forward"], sysctls["net.bridge.bridge-nf-call-iptables"]) == (
        "1", "0")
    assert fake.namespaces[None].sysctls["net.ipv6.conf.all.forwarding"] == "1"


def test_creation_order_within_a_domain() -> None:
    fake = FakeIpr()
    apply(fake, links_json(1))
    kinds = [call.split(": ", 1)[-1].split(" ")[0:2] for call in fake.calls]
    order = [" ".join(k) for k in kinds]
    first = {what: order.index(what) for what in reversed(order)}
    assert first["sysctl net.ipv4.ip_forward=1"] < first["add route"] < first[
        "create namespace"] < first["add veth"] < first["add bridge"] < first["add vxlan"]
    assert fake.calls[-1].startswith("softgate: add route 2001:db8:1::/48")



class RecordingRoutingDaemon:
    """Records each wait with the number of changes the fake had made before it."""

    def __init__(self, fake: FakeIpr, *, adopts: bool = True) -> None:
        self.fake, self.adopts = fake, adopts
        self.waits: list[tuple[str, str | None, list[str], int]] = []

    def await_adoption(self, namespaces: list[str]) -> None:
        self.waits.append(("adoption", None, list(namespaces), len(self.fake.calls)))
        if not self.adopts:
            raise LinkError(f"zebra has not adopted namespace(s) {', '.join(namespaces)} "
                            f"within 10 s")

    def await_links(self, netns: str | None, names: list[str]) -> None:
        self.waits.append(("links", netns, list(names), len(self.fake.calls)))


def apply_watched(fake: FakeIpr, data: dict[str, Any], routing: RecordingRoutingDaemon
                  ) -> ApplyResult:
    return LinksApplier(fake, routing=routing).apply(LinksState.from_json(data))


def test_new_namespaces_are_adopted_by_frr_before_any_link_goes_in() -> None:
    """zebra loses links that are already in a namespace when it adopts it (see
    agent.frr.FrrReload.await_adopted): every new namespace first, one wait for all."""
    fake = FakeIpr()
    routing = RecordingRoutingDaemon(fake)
    apply_watched(fake, links_json(2), routing)
    adoptions = [wait for wait in routing.waits if wait[0] == "adoption"]
    assert [names for _, _, names, _ in adoptions] == [[D1, D2]]
    before = fake.calls[:adoptions[0][3]]
    assert [call for call in before if "namespace" in call] == [
        f"create namespace {D1}", f"create namespace {D2}"]
    assert not [call for call in before if call.startswith("vxr")]


def test_addresses_go_onto_new_links_once_frr_knows_them() -> None:
    """zebra drops an address that reaches it before its link (agent.frr.await_links)."""
    fake = FakeIpr()
    routing = RecordingRoutingDaemon(fake)
    apply_watched(fake, links_json(1), routing)
    waits = {(netns, tuple(names)): done for kind, netns, names, done in routing.waits
             if kind == "links"}
    assert set(waits) == {(None, ("vxp5000010",)), (D1, ("vxpub",)),
                          (D1, ("vxb5000010", "vxv5000010", "vxb5000011", "vxv5000011")),
                          (D1, ("vxb5000012", "vxv5000012"))}
    for (netns, names), done in waits.items():
        first_address = next(i for i, call in enumerate(fake.calls) if "add address" in call
                             and call.rsplit(" to ", 1)[-1] in names)
        assert done <= first_address, (netns, names)


def test_existing_namespaces_and_links_are_not_awaited() -> None:
    fake, data = built()
    routing = RecordingRoutingDaemon(fake)
    apply_watched(fake, data, routing)
    assert routing.waits == []
    apply_watched(fake, links_json(3), routing)
    kind, _, names, _ = routing.waits[0]
    assert (kind, names) == ("adoption", ["vxr5000030"])


def test_a_namespace_frr_has_not_adopted_waits_for_the_next_apply() -> None:
    fake, data = FakeIpr(), links_json(1)
    result = apply_watched(fake, data, RecordingRoutingDaemon(fake, adopts=False))
    assert [(s.id, s.reason) for s in result.statuses if s.kind == "domain"] == [
        (D1, f"zebra has not adopted namespace(s) {D1} within 10 s")]
    assert set(fake.namespaces[D1].links) == {"lo"}
    apply(fake, data)  # adopted by now: built, as a fresh apply finds the namespace
    assert "vxv5000011" in fake.namespaces[D1].links


def test_new_links_are_made_in_as_few_requests_as_the_kernel_allows() -> None:
    """A bridge with its MAC and up, a VXLAN device enslaved; then its port flags and up
    together; a namespace's sysctls in one go."""
    fake = FakeIpr()
    result = apply(fake, links_json(1, 1))
    mine = [call for call in fake.calls if "5000011" in call]
    assert mine == [
        f"{D1}: add bridge vxb5000011 mac=02:00:5e:00:00:01 up=True",
        f"softgate: add vxlan vxv5000011 (VNI 5000011) into {D1} master=vxb5000011",
        f"{D1}: set bridge port vxv5000011 up=True",
        f"{D1}: add address 10.0.1.1/24 to vxb5000011",
        f"{D1}: add address 2001:db8:1::1/64 to vxb5000011"]
    assert [change for change in result.changes if ": sysctl " in change] == [
        "softgate: sysctl net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
        f"{D1}: sysctl net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 "
        "net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 "
        "net.bridge.bridge-nf-call-arptables=0 net.netfilter.nf_conntrack_tcp_be_liberal=1"]


def test_the_l3vni_bridge_has_the_router_mac() -> None:
    """FRR takes the EVPN router MAC from it; left alone it would take a port's MAC."""
    fake, data = built()
    for netns in (D1, D2):
        assert link(fake, netns, "vxb" + netns[3:]).mac == "02:00:0a:ff:02:01"
    tamper(fake, D1, "vxb5000010", mac="02:fa:00:03:02:01")  # as a port's MAC would be
    result = apply(fake, data)
    assert result.changes == [f"{D1}: set vxb5000010 address 02:00:0a:ff:02:01"]
    assert link(fake, D1, "vxb5000010").mac == "02:00:0a:ff:02:01"
    assert_quiet(fake, data)


def test_a_new_vtep_address_is_a_new_router_mac() -> None:
    fake, data = built(1)
    data["vtep_address"] = "192.0.2.7"
    apply(fake, data)
    assert link(fake, D1, "vxb5000010").mac == "02:00:c0:00:02:07"
    assert link(fake, D1, "vxv5000010").vxlan == Vxlan(5000010, "192.0.2.7")
    assert link(fake, D1, "vxb5000011").mac == "02:00:5e:00:00:01"  # guests' gateway: same
    assert_quiet(fake, data)


def test_a_second_apply_changes_nothing() -> None:
    fake, data = built()
    assert_quiet(fake, data)


def test_a_restarted_agent_finds_everything_right() -> None:
    """A new applier and a new handle onto the same kernel: no flush, nothing recreated."""
    fake, data = built()
    restarted = FakeIpr(namespaces=copy.deepcopy(fake.namespaces),
                        underlay=dict(fake.underlay), peers=dict(fake.peers))
    assert_quiet(restarted, data)


def test_a_vlan_segment_is_a_bridge_alone() -> None:
    fake, data = FakeIpr(), links_json(0)
    vlan = domain_json(3, 0, l3vni=False)
    vlan["segments"] = [vlan_segment_json("net-v", 3001, "10.99.0.1/24")]
    data["domains"] = [vlan]
    apply(fake, data)
    assert sorted(fake.links("vxr4003")) == ["lo", "vxl3001", "vxpub"]
    bridge = link(fake, "vxr4003", "vxl3001")
    assert bridge.mac == "02:00:5e:00:00:01" and iface("10.99.0.1/24") in bridge.addresses
    fake.calls.clear()
    assert_quiet(fake, data)
    trunked = LinksApplier(fake, vlan_trunk="bond0").apply(LinksState.from_json(data))
    bad = [s for s in trunked.statuses if s.state != "ok"]
    assert [(s.kind, s.id) for s in bad] == [("segment", "net-v")]
    assert "bond0.3001" in bad[0].reason


# --- changes --------------------------------------------------------------------------


def test_a_new_gateway_is_swapped_on_the_same_bridge() -> None:
    fake, data = built()
    data["domains"][0]["segments"][0]["gateway"] = "10.0.1.254/24"
    result = apply(fake, data)
    assert result.changes == [f"{D1}: add address 10.0.1.254/24 to vxb5000011",
                              f"{D1}: delete address 10.0.1.1/24 from vxb5000011"]


def test_a_new_vni_replaces_the_segment_devices() -> None:
    fake, data = built()
    segment = data["domains"][0]["segments"][1]
    segment.update(vni=5000019, bridge="vxb5000019", vxlan="vxv5000019")
    result = apply(fake, data)
    assert f"{D1}: delete links vxb5000012 vxv5000012" in result.changes
    assert sorted(fake.links(D1)) == ["lo", "vxb5000010", "vxb5000011", "vxb5000019",
                                      "vxpub", "vxv5000010", "vxv5000011", "vxv5000019"]
    assert not any("vxb5000011" in change for change in result.changes)
    assert_quiet(fake, data)


def test_properties_changed_behind_our_back_are_fixed_in_place() -> None:
    fake, data = built()
    tamper(fake, D1, "vxv5000011", mtu=9000, learning=True, neigh_suppress=False, up=False)
    tamper(fake, D1, "vxb5000012", mac="02:00:00:00:00:99", mcast_snooping=True)
    tamper(fake, D1, "vxv5000012", master=None, learning=None, neigh_suppress=None)
    fake.namespaces[D1].sysctls["net.ipv4.ip_forward"] = "0"
    result = apply(fake, data)
    assert sorted(result.changes) == sorted([
        f"{D1}: sysctl net.ipv4.ip_forward=1",
        f"{D1}: set vxv5000011 mtu 1500",
        f"{D1}: set bridge port vxv5000011 learning off neigh_suppress on up",
        f"{D1}: set bridge vxb5000012 mcast_snooping 0",
        f"{D1}: set vxv5000012 master vxb5000012",
        f"{D1}: set bridge port vxv5000012 learning off neigh_suppress on",
        f"{D1}: set vxb5000012 address 02:00:5e:00:00:01"])
    assert_quiet(fake, data)


def test_a_vxlan_with_other_parameters_is_recreated() -> None:
    fake, data = built()
    tamper(fake, D1, "vxv5000011", vxlan=Vxlan(5000011, "10.255.2.9"))
    result = apply(fake, data)
    assert result.changes[:1] == [f"{D1}: delete links vxv5000011"]
    assert link(fake, D1, "vxv5000011").vxlan == Vxlan(5000011, "10.255.2.1")
    assert_quiet(fake, data)


def test_a_broken_uplink_is_remade_with_its_routes() -> None:
    fake, data = built()
    fake.delete_link(D1, "vxpub")  # the kernel takes vxp5000010 and its routes with it
    assert "vxp5000010" not in fake.links(None)
    fake.calls.clear()
    apply(fake, data)
    assert link(fake, D1, "vxpub").peer == link(fake, None, "vxp5000010").index
    assert Route(net("198.18.1.0/24"), addr("169.254.253.1"), "vxp5000010") in fake.routes(None)
    assert Route(net("0.0.0.0/0"), addr("169.254.253.0"), "vxpub") in fake.routes(D1)
    assert_quiet(fake, data)


def test_routes_follow_the_state() -> None:
    fake, data = built()
    data["blackholes"] = ["203.0.113.0/25", "2001:db8:ffff::/48"]
    data["domains"][0]["routes"] = []
    data["domains"][1]["routes"] = ["198.18.1.0/24", "198.18.2.0/24"]  # moved from D1 to D2
    result = apply(fake, data)
    assert sorted(result.changes) == sorted([
        "softgate: delete route blackhole 203.0.113.0/24",
        "softgate: add route blackhole 203.0.113.0/25",
        "softgate: add route blackhole 2001:db8:ffff::/48",
        "softgate: replace route 198.18.1.0/24 via 169.254.253.1 dev vxp5000020"])
    assert_quiet(fake, data)


def test_a_vni_can_move_between_domains_in_one_apply() -> None:
    fake, data = built()
    moved = data["domains"][0]["segments"].pop(1)
    data["domains"][1]["segments"].append(moved)
    apply(fake, data)
    assert "vxv5000012" in fake.links(D2) and "vxv5000012" not in fake.links(D1)
    assert_quiet(fake, data)


# --- removal and foreign objects ------------------------------------------------------


def foreigners(fake: FakeIpr) -> None:
    fake.add_bridge(None, "foo0")
    fake.set_link(None, "foo0", up=True)
    fake.add_address(None, "foo0", iface("192.0.2.1/24"))
    fake.add_foreign_route(None, Route(net("198.51.100.0/24"), addr("192.0.2.2"), "foo0"))
    fake.add_foreign_route(None, Route(net("100.64.0.0/24")))
    fake.create_netns("other")
    fake.add_bridge(D1, "vmbr")
    fake.add_foreign_route(D1, Route(net("192.0.2.0/24")), proto=186)  # FRR's (bgp)
    fake.calls.clear()


def test_removal_deletes_a_domain_and_nothing_foreign() -> None:
    fake, data = built()
    foreigners(fake)
    data["domains"] = data["domains"][:1]
    result = apply(fake, data)
    assert result.changes == [
        "softgate: delete route 198.18.2.0/24 via 169.254.253.1 dev vxp5000020",
        "softgate: delete route 2001:db8:2::/48 via fe80::2 dev vxp5000020",
        f"{D2}: delete links vxpub vxv5000020 vxv5000021 vxv5000022",
        f"delete namespace {D2}"]
    assert fake.list_netns() == ["other", D1]
    assert "vxp5000020" not in fake.links(None)
    assert all(route.dev != "vxp5000020" for route in fake.routes(None))
    assert "foo0" in fake.links(None) and "vmbr" in fake.links(D1)
    assert set(fake.foreign_routes(None)) == {
        Route(net("198.51.100.0/24"), addr("192.0.2.2"), "foo0"), Route(net("100.64.0.0/24"))}
    assert fake.foreign_routes(D1) == [Route(net("192.0.2.0/24"))]
    assert_quiet(fake, data)


def test_removing_everything_leaves_only_foreign_objects() -> None:
    fake, data = built()
    foreigners(fake)
    apply(fake, dict(data, domains=[], blackholes=[]))
    assert fake.list_netns() == ["other"]
    assert sorted(fake.links(None)) == ["foo0", "lo"]
    assert fake.routes(None) == [] and len(fake.foreign_routes(None)) == 2


def test_strays_of_ours_in_the_softgate_namespace_are_deleted() -> None:
    fake, data = built()
    fake.add_vxlan("vxv5000099", Vxlan(5000099, "10.255.2.1"), None)  # a crash mid-way
    fake.add_veth("vxp777", None, "vxq777", None)
    fake.add_route(None, Route(net("192.0.2.128/25")))  # ours, no longer wanted
    fake.calls.clear()
    result = apply(fake, data)
    assert sorted(result.changes) == ["softgate: delete link vxp777",
                                      "softgate: delete link vxv5000099",
                                      "softgate: delete route blackhole 192.0.2.128/25"]


def test_a_namespace_without_our_prefix_is_never_touched() -> None:
    fake, data = built()
    for name in ("vxr", "vxr12a", "vxt1-sg", "myvxr1"):
        fake.create_netns(name)
    fake.calls.clear()
    apply(fake, dict(data, domains=[]))
    assert fake.list_netns() == ["myvxr1", "vxr", "vxr12a", "vxt1-sg"]


# --- failures -------------------------------------------------------------------------


def test_a_foreign_route_in_the_way_fails_that_domain_only() -> None:
    fake, data = built()
    fake.add_foreign_route(None, Route(net("198.18.9.0/24")))
    data["domains"][1]["routes"].append("198.18.9.0/24")
    result = apply(fake, data, ok=False)
    bad = [(s.kind, s.id) for s in result.statuses if s.state != "ok"]
    assert bad == [("domain", D2)]
    assert "File exists" in next(s.reason for s in result.statuses if s.state != "ok")
    assert fake.foreign_routes(None) == [Route(net("198.18.9.0/24"))]


@pytest.mark.parametrize(("marker", "bad"), [
    (f"create namespace {D2}", [("segment", "net-2-0"), ("segment", "net-2-1"),
                                ("domain", D2)]),
    (f"{D2}: add bridge vxb5000021", [("segment", "net-2-0")]),
    ("add veth vxp5000020", [("segment", "net-2-0"), ("segment", "net-2-1"), ("domain", D2)]),
])
def test_one_bad_domain_does_not_block_the_others(marker: str, bad: list[tuple[str, str]]
                                                   ) -> None:
    fake, data = FakeIpr(fail_when=[marker]), links_json(3)
    result = apply(fake, data, ok=False)
    assert [(s.kind, s.id) for s in result.statuses if s.state != "ok"] == bad
    assert all(s.state == "ok" for s in result.statuses if s.id in (
        "vxr5000010", "vxr5000030", "net-3-1", "net-1-0"))
    assert "vxb5000031" in fake.links("vxr5000030")
    fake.fail_when.clear()
    apply(fake, data)  # the next apply completes the domain
    fake.calls.clear()
    assert_quiet(fake, data)


def test_a_bad_domain_in_the_json_is_reported_and_left_alone() -> None:
    fake, data = built()
    broken = copy.deepcopy(data)
    broken["domains"][1]["segments"][0]["gateway"] = "bogus"
    broken["domains"][0]["segments"][0]["gateway"] = "10.0.1.2/24"
    result = LinksApplier(fake).apply_json(broken)
    bad = [(s.kind, s.id) for s in result.statuses if s.state != "ok"]
    assert bad == [("domain", D2)]
    assert all(D2 not in change and "vxp5000020" not in change for change in result.changes)
    assert "vxp5000020" in fake.links(None) and D2 in fake.list_netns()
    assert Route(net("198.18.2.0/24"), addr("169.254.253.1"), "vxp5000020") in fake.routes(None)
    assert iface("10.0.1.2/24") in link(fake, D1, "vxb5000011").addresses


class BlindFake(FakeIpr):
    def links(self, netns: str | None) -> dict[str, Link]:
        if netns is None:
            raise LinkError("softgate: list links: Operation not permitted")
        return super().links(netns)


def test_a_softgate_that_cannot_be_read_is_not_rebuilt_on_a_guess() -> None:
    fake, data = built()
    blind = BlindFake(namespaces=fake.namespaces, underlay=fake.underlay, peers=fake.peers)
    result = LinksApplier(blind).apply(LinksState.from_json(data))
    assert not result.ok and result.changes == [] and blind.calls == []
    assert {s.id for s in result.statuses if s.state != "ok"} >= {"softgate", D1, D2}


def test_missing_bridge_netfilter_sysctls_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import ipr_fake
    defaults = {k: v for k, v in ipr_fake.DEFAULT_SYSCTLS.items() if "bridge" not in k}
    monkeypatch.setattr(ipr_fake, "DEFAULT_SYSCTLS", defaults)
    fake = FakeIpr()
    apply(fake, links_json(1))
    assert "net.bridge.bridge-nf-call-iptables" not in fake.namespaces[D1].sysctls


def test_our_route_protocol_is_not_frrs() -> None:
    assert PROTO not in range(186, 199)  # FRR's daemons (196 is staticd), rt_protos.d


# --- the fake keeps agent.ipr's contract (the functional test runs it on Ipr) --------


def test_the_fake_keeps_the_ipr_contract() -> None:
    from tests.unit.ipr_contract import contract

    fake = FakeIpr()
    checks = contract(fake, lambda netns, prefix: fake.add_foreign_route(
        netns, Route(net(prefix))))
    failed = [(name, detail) for name, ok, detail in checks if not ok]
    assert not failed and len(checks) > 20
