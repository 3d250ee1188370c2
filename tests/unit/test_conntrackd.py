"""agent.conntrackd: a links domain's `sync` as parsed and turned into instances, the
rendered config (golden), the fake, and what the SoftGate artifact reports and restarts."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from agent.conntrackd import FakeConntrackd, SyncSpec, render_config, sync_specs
from agent.links_state import LinksState, LinksStateError, parse_domain
from tests.golden.support import check_golden

GOLDEN = Path(__file__).parents[1] / "golden" / "conntrackd"
SYNC = {"address": "169.254.252.1", "peer": "169.254.252.2"}


def domain(number: int, sync: Any = SYNC, l3vni: bool = True) -> dict[str, Any]:
    return {"netns": f"vxr{number}", "uplink": {"root": f"vxp{number}", "domain": "vxpub"},
            "l3vni": {"vni": number, "bridge": f"vxb{number}", "vxlan": f"vxv{number}"}
            if l3vni else None, "sync": sync}


def links(*domains: dict[str, Any]) -> LinksState:
    return LinksState.from_json({"vtep_address": "10.255.2.1",
                                 "gateway_mac": "02:00:5e:00:00:01",
                                 "domains": list(domains)})


def spec(netns: str = "vxr5000000") -> SyncSpec:
    return SyncSpec(netns, ipaddress.IPv4Address("169.254.252.1"),
                    ipaddress.IPv4Address("169.254.252.2"), f"vxb{netns[3:]}")


def test_each_domain_with_a_sync_gets_an_instance_on_its_l3vni_bridge() -> None:
    state = links(domain(5000001), domain(5000000), domain(5000002, sync=None))
    assert sync_specs(state) == (spec("vxr5000000"), spec("vxr5000001"))
    assert sync_specs(links()) == ()


@pytest.mark.parametrize(("change", "message"), [
    ({"peer": "169.254.252.1"}, "the peer's address is our own"),
    ({"peer": "10.0.0.2"}, "sync.peer: 10.0.0.2 is outside 169.254.252.0/24"),
    ({"address": "x"}, "sync.address"),
    ({"port": 1}, "unknown field"),
])
def test_a_bad_sync_is_one_line_naming_the_field(change: dict[str, object],
                                                 message: str) -> None:
    with pytest.raises(LinksStateError) as error:
        parse_domain(domain(5000000, sync={**SYNC, **change}), "links.domains[0]")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_missing_key_is_named_and_a_sync_needs_an_l3vni() -> None:
    with pytest.raises(LinksStateError, match=r"sync\.peer: required"):
        parse_domain(domain(5000000, sync={"address": "169.254.252.1"}), "d")
    with pytest.raises(LinksStateError, match="runs over the L3VNI"):
        parse_domain(domain(5000000, l3vni=False), "d")


def test_rendered_config_matches_golden() -> None:
    check_golden(GOLDEN / "vxr5000000.conf",
                 render_config(spec(), Path("/var/lib/vxgate-agent/conntrackd/vxr5000000")))


def test_fake_starts_restarts_only_on_change_or_a_new_namespace_and_stops_what_is_gone(
        ) -> None:
    fake = FakeConntrackd()
    assert fake.apply([spec("vxr1"), spec("vxr2")]) == {"vxr1": "", "vxr2": ""}
    assert fake.apply([spec("vxr1"), spec("vxr2")]) == {"vxr1": "", "vxr2": ""}
    moved = SyncSpec("vxr1", spec().address, ipaddress.IPv4Address("169.254.252.3"), "vxb1")
    fake.apply([moved])
    fake.apply([moved], fresh={"vxr1"})
    assert fake.actions == ["start vxr1", "start vxr2", "stop vxr2", "restart vxr1",
                            "restart vxr1"]
    fake.errors["vxr1"] = "conntrackd in vxr1 did not start: no"
    assert fake.apply([moved]) == {"vxr1": "conntrackd in vxr1 did not start: no"}
