"""The SoftGate's upstream announcements wait for the fabric: rendered from plain intent.

The goldens (tests/golden/frr/softgate_*.conf) are checked by real FRR; these pin down the
rules behind them: which SoftGates gate their announcements, how the prepends compare,
and which route-map each session uses.
"""

from __future__ import annotations

from dataclasses import replace

from provider_service.frr_intent import (
    FABRIC_CONDITION_TIMER_S,
    STANDBY_PREPEND,
    UNCONFIRMED_PREPEND,
    FrrIntent,
    UpstreamSession,
)
from provider_service.frr_render import render_frr

ASN = 4200000000
ACTIVE = FrrIntent(
    hostname="sg1", role="softgate", asn=ASN, router_id="10.255.2.1",
    fabric_interfaces=("uplink1", "uplink2"), vrf_backend="netns", vtep=True, gateway=True,
    upstream_peers=(UpstreamSession("198.51.100.1", 64496, True),),
    announced_prefixes=("198.18.10.0/24", "203.0.113.0/24"),
)
STANDBY = replace(ACTIVE, as_path_prepend=STANDBY_PREPEND)


def route_map(text: str, name: str) -> list[str]:
    """Every line of the route-map's entries, entry headers included."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("route-map "):
            inside = line.split()[1] == name
        if inside:
            lines.append(line.strip())
        if line == "exit":
            inside = False
    return lines


def address_family(text: str, family: str) -> list[str]:
    body = text.split(f" address-family {family}\n", 1)[1]
    return [line.strip() for line in body.split(" exit-address-family", 1)[0].splitlines()]


def prepended(lines: list[str]) -> int:
    sets = [line for line in lines if line.startswith("set as-path prepend")]
    return len(sets[0].split()) - 3 if sets else 0


def test_the_active_softgate_announces_upstream_only_while_it_has_the_fabric() -> None:
    text = render_frr(ACTIVE)
    assert f" bgp conditional-advertisement timer {FABRIC_CONDITION_TIMER_S}\n" in text
    assert FABRIC_CONDITION_TIMER_S == 5  # FRR's least: (5-240)
    ipv4 = address_family(text, "ipv4 unicast")
    assert "neighbor UPSTREAM advertise-map VXGATE-UPSTREAM-ADV exist-map VXGATE-FABRIC-UP" \
        in ipv4
    assert "neighbor UPSTREAM route-map VXGATE-UPSTREAM-WAIT out" in ipv4
    # What is conditional: exactly what goes upstream, with the active one's own path.
    advertised = route_map(text, "VXGATE-UPSTREAM-ADV")
    assert "match ip address prefix-list VXGATE-UPSTREAM-OUT" in advertised
    assert prepended(advertised) == 0
    # The condition: any route learned on any fabric port.
    assert route_map(text, "VXGATE-FABRIC-UP") == [
        "route-map VXGATE-FABRIC-UP permit 10", "match peer uplink1", "exit",
        "route-map VXGATE-FABRIC-UP permit 20", "match peer uplink2", "exit",
    ]
    assert "VXGATE-STANDBY-OUT" not in text


def test_the_standby_keeps_its_prepend_in_what_the_condition_sends() -> None:
    text = render_frr(STANDBY)
    assert prepended(route_map(text, "VXGATE-UPSTREAM-ADV")) == STANDBY_PREPEND
    assert prepended(route_map(text, "VXGATE-UPSTREAM-WAIT")) == (
        STANDBY_PREPEND + UNCONFIRMED_PREPEND)
    ipv4 = address_family(text, "ipv4 unicast")
    assert "neighbor UPSTREAM route-map VXGATE-UPSTREAM-WAIT out" in ipv4
    assert not any("STANDBY-OUT" in line for line in ipv4)
    # The fabric's EVPN routes still carry the standby's prepend.
    assert "neighbor FABRIC route-map VXGATE-STANDBY-OUT out" in address_family(
        text, "l2vpn evpn")


def test_an_unconfirmed_path_loses_to_the_partner_standing_by() -> None:
    """A session that came back before FRR checked the fabric: upstream must keep using
    the standby (own ASN + its prepends) rather than the returning active one."""
    active_waiting = 1 + prepended(route_map(render_frr(ACTIVE), "VXGATE-UPSTREAM-WAIT"))
    standby_confirmed = 1 + prepended(route_map(render_frr(STANDBY), "VXGATE-UPSTREAM-ADV"))
    active_confirmed = 1 + prepended(route_map(render_frr(ACTIVE), "VXGATE-UPSTREAM-ADV"))
    assert active_confirmed < standby_confirmed < active_waiting


def test_no_condition_without_a_fabric_or_without_announcements() -> None:
    vlan_only = replace(STANDBY, fabric_interfaces=(), vtep=True)
    text = render_frr(vlan_only)
    assert "advertise-map" not in text and "conditional-advertisement" not in text
    assert "neighbor UPSTREAM route-map VXGATE-STANDBY-OUT out" in text
    for intent in (replace(ACTIVE, announced_prefixes=()), replace(ACTIVE, upstream_peers=())):
        assert not intent.upstream_needs_fabric
        assert "advertise-map" not in render_frr(intent)
    hypervisor = replace(ACTIVE, role="hypervisor", gateway=False, upstream_peers=(),
                         announced_prefixes=())
    assert "VXGATE-FABRIC-UP" not in render_frr(hypervisor)
