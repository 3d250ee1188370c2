"""agent.conntrackd: the sync section's parsing, the rendered config (golden), the fake,
and what softgate.json's `sync` makes the SoftGate artifact report."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from agent.conntrackd import FakeConntrackd, SyncSpec, parse_sync, render_config
from agent.state_fields import FieldError
from tests.golden.support import check_golden

GOLDEN = Path(__file__).parents[1] / "golden" / "conntrackd"
SECTION = {"address": "169.254.252.1", "peer": "169.254.252.2",
           "domains": ["vxr5000001", "vxr5000000", "vxr5000000"]}


def spec(netns: str = "vxr5000000") -> SyncSpec:
    return SyncSpec(netns, ipaddress.IPv4Address("169.254.252.1"),
                    ipaddress.IPv4Address("169.254.252.2"))


def test_a_section_lists_each_domain_once_sorted_and_null_means_no_sync() -> None:
    assert [s.netns for s in parse_sync(SECTION)] == ["vxr5000000", "vxr5000001"]
    assert parse_sync(None) == []
    assert spec().interface == "vxb5000000"


@pytest.mark.parametrize(("change", "message"), [
    ({"peer": "169.254.252.1"}, "the peer's address is our own"),
    ({"peer": "10.0.0.2"}, "sync.peer: 10.0.0.2 is outside 169.254.252.0/24"),
    ({"address": "x"}, "sync.address"),
    ({"domains": ["vxr1\nx"]}, "sync.domains[0]: expected vxr<number>"),
    ({"domains": "vxr1"}, "sync.domains: expected a list"),
    ({"port": 1}, "unknown field"),
])
def test_a_bad_section_is_one_line_naming_the_field(change: dict[str, object],
                                                    message: str) -> None:
    with pytest.raises(FieldError) as error:
        parse_sync({**SECTION, **change})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_missing_key_is_named() -> None:
    with pytest.raises(FieldError, match="missing 'domains'"):
        parse_sync({"address": "169.254.252.1", "peer": "169.254.252.2"})


def test_rendered_config_matches_golden() -> None:
    check_golden(GOLDEN / "vxr5000000.conf",
                 render_config(spec(), Path("/var/lib/vxgate-agent/conntrackd/vxr5000000")))


def test_fake_starts_restarts_only_on_change_and_stops_what_is_gone() -> None:
    fake = FakeConntrackd()
    assert fake.apply([spec("vxr1"), spec("vxr2")]) == {"vxr1": "", "vxr2": ""}
    assert fake.apply([spec("vxr1"), spec("vxr2")]) == {"vxr1": "", "vxr2": ""}
    moved = SyncSpec("vxr1", spec().address, ipaddress.IPv4Address("169.254.252.3"))
    fake.apply([moved])
    assert fake.actions == ["start vxr1", "start vxr2", "stop vxr2", "restart vxr1"]
    fake.errors["vxr1"] = "conntrackd in vxr1 did not start: no"
    assert fake.apply([moved]) == {"vxr1": "conntrackd in vxr1 did not start: no"}
