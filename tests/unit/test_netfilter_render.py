"""agent.netfilter_render: deterministic whole rulesets, and deltas that equal them."""

from __future__ import annotations

import random
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from agent.netfilter_compile import FW, NAT, compile_domain
from agent.netfilter_render import render_delta, render_full, render_teardown
from agent.netfilter_state import PortForward, PortRange, RoutingDomain, empty_domain
from agent.nft_fake import FakeNft
from tests.unit.netfilter_samples import domain, raw, with_changes

PF_NEW = PortForward("pf9", IPv4Address("203.0.113.2"), "tcp", PortRange(8080, 8080),
                     IPv4Address("10.1.1.13"), PortRange(80, 80))


def test_whole_ruleset_is_deterministic() -> None:
    data = raw("isolated")
    shuffled = raw("isolated")
    rng = random.Random(3)
    for key in ("port_forwards", "firewall_rules", "load_balancers"):
        rng.shuffle(shuffled[key])
    for lb in shuffled["load_balancers"]:
        rng.shuffle(lb["backends"])
    assert render_full(RoutingDomain.from_json(data)) == \
        render_full(RoutingDomain.from_json(shuffled))


def test_whole_ruleset_replaces_each_table_in_one_file() -> None:
    text = render_full(domain("empty"))
    for table in ("inet vxgate_fw", "ip vxgate_nat", "ip vxgate_lb"):
        # create-if-missing, delete, define: nft runs the file as one transaction
        assert f"table {table} {{}}\ndelete table {table}\ntable {table} {{\n" in text
    assert "flush ruleset" not in text  # never touches other tables


def test_adding_a_port_forward_is_one_element() -> None:
    old = domain("isolated")
    new = replace(old, port_forwards=(*old.port_forwards, PF_NEW))
    assert render_delta(old, new) == \
        "add element ip vxgate_nat pf_port {\n\t203.0.113.2 . tcp . 8080 : 10.1.1.13 . 80\n}\n"
    assert render_delta(new, old) == \
        "delete element ip vxgate_nat pf_port {\n\t203.0.113.2 . tcp . 8080\n}\n"


def test_no_change_no_delta() -> None:
    assert render_delta(domain("vpc"), domain("vpc")) == ""


def test_changed_map_value_is_deleted_then_added() -> None:
    old = domain("isolated")
    static = replace(old.static_nats[0], private_ip=IPv4Address("10.1.1.99"))
    delta = render_delta(old, replace(old, static_nats=(static,)))
    assert delta.index("delete element ip vxgate_nat static_in") < \
        delta.index("add element ip vxgate_nat static_in")


def test_dead_backend_leaves_the_slot_map() -> None:
    old = domain("isolated")
    lb = old.load_balancers[0]
    dead = replace(lb, backends=(replace(lb.backends[0], alive=False), *lb.backends[1:]))
    new = replace(old, load_balancers=(dead, *old.load_balancers[1:]))
    slots = compile_domain(new)[2].elements["slots"]
    vip = "203.0.113.4 . tcp . 80 . "
    owners = {value for key, value in slots.items() if key.startswith(vip)}
    assert owners == {"10.1.1.22 . 8080"}


def test_acl_change_rewrites_only_that_chain() -> None:
    old = domain("vpc")
    data = raw("vpc")
    data["networks"][0]["acl"] = data["networks"][0]["acl"][:1]
    delta = render_delta(old, RoutingDomain.from_json(data))
    assert delta.startswith(f"flush chain {FW} acl_in_301\n")
    assert "acl_in_302" not in delta and "element" not in delta


def test_overlapping_firewall_rules_become_disjoint_elements() -> None:
    elements = compile_domain(domain("isolated"))[0].elements["in_l4"]
    assert sorted(elements) == [
        "203.0.113.2 . tcp . 0.0.0.0/0 . 2222",
        "203.0.113.2 . tcp . 198.51.100.0/24 . 2000-2221",
        "203.0.113.2 . tcp . 198.51.100.0/24 . 2223-3000",
        "203.0.113.4 . tcp . 0.0.0.0/0 . 80",
    ]


def test_port_ranges_keep_or_expand() -> None:
    nat = compile_domain(domain("isolated"))[1].elements
    assert nat["pf_range"] == {"203.0.113.2 . udp . 5000-5003": "10.1.1.12"}
    assert nat["pf_port"]["203.0.113.2 . tcp . 6002"] == "10.1.1.12 . 7002"


def test_ipv6_prefixes_are_set_elements() -> None:
    fw = compile_domain(domain("isolated"))[0]
    assert fw.elements["guest6"] == {"2001:db8:1:1::/64": None}
    assert fw.elements["egress_denied6"] == {"2001:db8:1:1::/64": None}  # egress deny
    vpc = compile_domain(domain("vpc"))[0]
    assert vpc.elements["guest6"] == {"2001:db8:20:1::/64": None}
    assert vpc.elements["egress_denied6"] == {}  # tiers default to allow
    assert "ipv6" not in "".join(compile_domain(domain("vpc"))[1].elements)  # no v6 NAT


def test_adding_ipv6_to_a_network_is_one_element() -> None:
    data = raw("vpc")
    data["networks"][1]["ipv6_cidr"] = "2001:db8:20:2::/64"
    delta = render_delta(domain("vpc"), RoutingDomain.from_json(data))
    assert delta == f"add element {FW} guest6 {{\n\t2001:db8:20:2::/64\n}}\n"


def test_the_fake_holds_the_ipv6_chains_and_sets() -> None:
    fake = FakeNft()
    fake.apply("ns", render_full(domain("isolated")))
    table = fake.namespaces["ns"][FW]
    assert table.chains["forward6"][-1] == "drop"
    assert "ip6 saddr @egress_denied6 drop" in table.chains["to_public6"]
    assert fake.elements("ns", FW, "guest6") == {"2001:db8:1:1::/64": None}
    fake.apply("ns", f"delete element {FW} guest6 {{\n\t2001:db8:1:1::/64\n}}\n")
    assert fake.elements("ns", FW, "guest6") == {}


def test_routed_domain_nats_only_its_own_traffic() -> None:
    tables = compile_domain(domain("routed"))
    nat = tables[1]
    assert nat.name == NAT
    # Guests keep their addresses; the domain's own uplink address (dnsmasq's upstream
    # queries) leaves as its first gateway, which is routed back to it.
    assert nat.elements["source_nat"] == {"169.254.253.1": "198.18.10.1"}
    assert all(not elements for name, elements in nat.elements.items()
               if name not in ("public_ifs", "source_nat"))
    assert tables[0].elements["routed"] == {"198.18.10.0/24": None}


def _mutations() -> list[tuple[str, RoutingDomain, RoutingDomain]]:
    iso, vpc = domain("isolated"), domain("vpc")
    vpc_data = raw("vpc")
    vpc_data["networks"].pop(1)
    vpc_data["port_forwards"] = []
    fewer_tiers = RoutingDomain.from_json(vpc_data)
    return [
        ("add pf", iso, replace(iso, port_forwards=(*iso.port_forwards, PF_NEW))),
        ("drop everything", iso, empty_domain(iso.id, iso.public_interface)),
        ("from empty", empty_domain(iso.id, "pub0"), iso),
        ("egress default flips", iso, with_changes("isolated", networks=[
            {"id": "201", "cidr": "10.1.1.0/24", "gateway": "10.1.1.1"}])),
        ("tier removed", vpc, fewer_tiers),
        ("tier added", fewer_tiers, vpc),
        ("snat ip moves", vpc, replace(vpc, source_nat_ip=IPv4Address("203.0.113.30"))),
        ("firewall rules gone", iso, replace(iso, firewall_rules=())),
        ("ipv6 removed", iso, replace(iso, networks=(replace(iso.networks[0],
                                                             ipv6_cidr=None),))),
        ("ipv6 egress flips", iso, replace(iso, networks=(replace(
            iso.networks[0], egress_default_allow=True),))),
    ]


@pytest.mark.parametrize(("name", "old", "new"), _mutations(), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_delta_after_whole_equals_whole(name: str, old: RoutingDomain,
                                        new: RoutingDomain) -> None:
    via_delta, direct = FakeNft(), FakeNft()
    via_delta.apply("ns", render_full(old))
    via_delta.apply("ns", render_delta(old, new) or "\n")
    direct.apply("ns", render_full(new))
    assert via_delta.list_ruleset("ns") == direct.list_ruleset("ns"), name


def test_teardown_removes_our_tables() -> None:
    fake = FakeNft()
    fake.apply("ns", render_full(domain("vpc")))
    fake.apply("ns", render_teardown())
    assert fake.list_ruleset("ns") == ""
