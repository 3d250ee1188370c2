"""agent/leaf_ports.py against FakeIpr: a VTEP leaf's direct connects in its kernel."""

from __future__ import annotations

import json

from agent.ipr import Vxlan
from agent.ipr_fake import FakeIpr
from agent.leaf_ports import LeafPortsArtifact
from agent.status import ObjectStatus

VTEP = "10.255.3.2"


def leaf_json(*ports: tuple[str, int, int], vtep: str = VTEP) -> str:
    return json.dumps({"format": 1, "vtep_address": vtep, "ports": [
        {"interface": i, "vlan": vlan, "vni": vni} for i, vlan, vni in ports]})


def cabled(*members: str) -> FakeIpr:
    """A leaf whose port VLAN members exist (as the switch's port config makes them)."""
    fake = FakeIpr()
    fake.namespaces["bm"] = fake._fresh()
    for member in members:
        fake.add_veth(member, None, "eth-" + member.replace(".", ""), "bm")
    fake.calls.clear()
    return fake


def states(reports: list[ObjectStatus]) -> dict[tuple[str, str], str]:
    return {(r.kind, r.id): r.state for r in reports}


def test_attach_builds_the_segment_and_enslaves_the_member() -> None:
    fake = cabled("swp1.100")
    reports = LeafPortsArtifact(fake).apply(leaf_json(("swp1", 100, 10001)))
    assert states(reports) == {("segment", "10001"): "ok",
                               ("direct-connect", "swp1.100"): "ok"}
    links = fake.namespaces[None].links
    assert links["dcbr10001"].kind == "bridge" and links["dcbr10001"].up
    vxlan = links["dcvx10001"]
    assert vxlan.vxlan == Vxlan(10001, VTEP) and vxlan.master == "dcbr10001"
    assert vxlan.learning is False and vxlan.neigh_suppress is True and vxlan.up
    assert links["swp1.100"].master == "dcbr10001" and links["swp1.100"].up


def test_applying_again_changes_nothing() -> None:
    fake = cabled("swp1.100", "swp2.7")
    content = leaf_json(("swp1", 100, 10001), ("swp2", 7, 10001))
    LeafPortsArtifact(fake).apply(content)
    fake.calls.clear()
    reports = LeafPortsArtifact(fake).apply(content)
    assert fake.calls == [] and all(r.state == "ok" for r in reports)


def test_detach_releases_the_member_and_removes_an_unused_segment() -> None:
    fake = cabled("swp1.100", "swp2.7")
    LeafPortsArtifact(fake).apply(leaf_json(("swp1", 100, 10001), ("swp2", 7, 10002)))
    LeafPortsArtifact(fake).apply(leaf_json(("swp2", 7, 10002)))
    links = fake.namespaces[None].links
    assert "dcbr10001" not in links and "dcvx10001" not in links
    assert links["swp1.100"].master is None  # the port's VLAN stays, out of any bridge
    assert links["swp2.7"].master == "dcbr10002"
    LeafPortsArtifact(fake).apply(leaf_json())
    assert not [name for name in links if name.startswith("dc")]
    assert links["swp2.7"].master is None


def test_a_member_moved_to_another_vni_while_the_old_one_stays() -> None:
    fake = cabled("swp1.100", "swp2.7")
    LeafPortsArtifact(fake).apply(leaf_json(("swp1", 100, 10001), ("swp2", 7, 10001)))
    LeafPortsArtifact(fake).apply(leaf_json(("swp1", 100, 10001), ("swp2", 7, 10002)))
    links = fake.namespaces[None].links
    assert links["swp2.7"].master == "dcbr10002"
    assert links["swp1.100"].master == "dcbr10001"


def test_a_missing_member_is_reported_and_the_rest_goes_on() -> None:
    fake = cabled("swp1.100")
    reports = LeafPortsArtifact(fake).apply(
        leaf_json(("swp1", 100, 10001), ("swp9", 5, 10001)))
    assert states(reports)[("direct-connect", "swp1.100")] == "ok"
    missing = next(r for r in reports if r.id == "swp9.5")
    assert missing.state == "error" and "swp9.5" in missing.reason
    assert "\n" not in missing.reason


def test_a_new_vtep_address_makes_the_vxlan_device_anew() -> None:
    fake = cabled("swp1.100")
    LeafPortsArtifact(fake).apply(leaf_json(("swp1", 100, 10001)))
    LeafPortsArtifact(fake).apply(leaf_json(("swp1", 100, 10001), vtep="10.255.3.9"))
    assert fake.namespaces[None].links["dcvx10001"].vxlan == Vxlan(10001, "10.255.3.9")


def test_links_not_ours_are_left_alone() -> None:
    fake = cabled("swp1.100")
    fake.add_bridge(None, "br0", up=True)
    fake.set_link(None, "swp1.100", master="br0")
    LeafPortsArtifact(fake).apply(leaf_json())
    assert fake.namespaces[None].links["swp1.100"].master == "br0"
    assert "br0" in fake.namespaces[None].links


def test_bad_content_is_one_error_and_no_change() -> None:
    fake = cabled("swp1.100")
    for content in ("{", json.dumps({"format": 2}), json.dumps({"format": 1})):
        reports = LeafPortsArtifact(fake).apply(content)
        assert [(r.kind, r.state) for r in reports] == [("artifact", "error")]
    assert fake.calls == []
