"""softgate.json applied by the agent against the fakes: links, nftables, DHCP in order,
reports merged per object, a broken part reported without stopping the others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.conntrackd import FakeConntrackd
from agent.dhcp_apply import DhcpApplier
from agent.dnsmasq import FakeDnsmasq
from agent.ipr_fake import FakeIpr
from agent.lb_probe import FakeProber
from agent.links_apply import LinksApplier
from agent.metadata_process import FakeMetadataServer
from agent.nft_fake import FakeNft
from agent.softgate import RECHECK_S, SoftGateArtifact, merge
from agent.status import ObjectStatus

GOLDEN = Path(__file__).parents[1] / "golden" / "softgate"


def artifact(ipr: FakeIpr | None = None, nft: FakeNft | None = None
             ) -> tuple[SoftGateArtifact, FakeIpr, FakeNft, FakeDnsmasq]:
    ipr, nft, dnsmasq = ipr or FakeIpr(), nft or FakeNft(), FakeDnsmasq()
    dhcp = DhcpApplier(dnsmasq, FakeMetadataServer())
    return (SoftGateArtifact(LinksApplier(ipr), nft, dhcp, FakeProber(), FakeConntrackd()),
            ipr, nft, dnsmasq)


@pytest.mark.parametrize("case", ["isolated", "vpcs", "routed", "vlan_handoff"])
def test_golden_state_applies_cleanly_and_again_changes_nothing(case: str) -> None:
    content = (GOLDEN / f"{case}.json").read_text()
    softgate, ipr, nft, dnsmasq = artifact()
    reports = softgate.apply(content)
    errors = [r for r in reports if r.state == "error"]
    assert not errors, errors[:3]
    domains = [d["netns"] for d in json.loads(content)["links"]["domains"]]
    assert set(domains) <= set(ipr.namespaces) and set(domains) <= set(nft.namespaces)
    calls, nft_calls, actions = len(ipr.calls), len(nft.calls), list(dnsmasq.actions)
    # An agent restart: new appliers over the same kernel and processes change nothing.
    again, _, _, _ = artifact(ipr, nft)
    again.dhcp = softgate.dhcp
    assert not [r for r in again.apply(content) if r.state == "error"]
    assert len(ipr.calls) == calls
    # dnsmasq is neither started nor stopped; a SIGHUP re-reads its hosts files, in case
    # the agent died between writing them and signalling (it keeps every lease).
    assert {verb for verb, _ in dnsmasq.actions[len(actions):]} <= {"reload"}
    assert len(nft.calls) - nft_calls <= len(domains)  # one atomic transaction a domain


def test_tables_go_into_new_namespaces_without_deleting_first() -> None:
    """Deleting a table costs the kernel more than making one: into a namespace the links
    just made, the ruleset goes without `delete table`; where tables may be (a restarted
    agent), with it."""
    content = (GOLDEN / "vpcs.json").read_text()
    softgate, ipr, nft, _ = artifact()
    softgate.apply(content)
    assert nft.calls and not any("delete table" in text for _, text, _ in nft.calls)
    restarted, _, _, _ = artifact(ipr, nft)
    calls = len(nft.calls)
    assert not [r for r in restarted.apply(content) if r.state == "error"]
    assert all("delete table" in text for _, text, _ in nft.calls[calls:])


def test_a_change_in_one_domain_applies_that_domain_only() -> None:
    content = json.loads((GOLDEN / "vpcs.json").read_text())
    clock = [0.0]
    softgate, ipr, nft, dnsmasq = artifact()
    softgate.recent.clock = lambda: clock[0]
    applied: list[str] = []
    for name, applier in (("links", softgate.links), ("dhcp", softgate.dhcp)):
        real = applier.apply_json
        applier.apply_json = (  # type: ignore[method-assign]
            lambda *args, name=name, real=real: applied.append(name) or real(*args))
    first = softgate.apply(json.dumps(content))
    calls, nft_calls, actions = len(ipr.calls), len(nft.calls), len(dnsmasq.actions)
    changed = content["netfilter"]["domains"][1]
    changed["port_forwards"] = []
    reports = softgate.apply(json.dumps(content))
    # The same reports (the port forward's went with it), one nft transaction, for the
    # changed domain; links and dnsmasq untouched.
    assert {(r.kind, r.id) for r in first} - {(r.kind, r.id) for r in reports} == {
        ("port_forward", pf["id"]) for pf in json.loads(
            (GOLDEN / "vpcs.json").read_text())["netfilter"]["domains"][1]["port_forwards"]}
    assert applied == ["links", "dhcp"]
    assert (len(ipr.calls), len(dnsmasq.actions)) == (calls, actions)
    assert [ns for ns, _, _ in nft.calls[nft_calls:]] == [changed["id"]]
    # Once RECHECK_S has passed, everything is looked at again.
    clock[0] += RECHECK_S
    assert not [r for r in softgate.apply(json.dumps(content)) if r.state == "error"]
    assert applied == ["links", "dhcp"] * 2


def test_a_removed_domain_goes_with_its_tables() -> None:
    content = json.loads((GOLDEN / "vpcs.json").read_text())
    softgate, ipr, _, _ = artifact()
    softgate.apply(json.dumps(content))
    gone = content["links"]["domains"][0]["netns"]
    for section, key in (("links", "domains"), ("netfilter", "domains")):
        content[section][key] = [d for d in content[section][key]
                                 if d.get("netns", d.get("id")) != gone]
    content["dhcp"]["networks"] = [n for n in content["dhcp"]["networks"]
                                   if n["netns"] != gone]
    assert not [r for r in softgate.apply(json.dumps(content)) if r.state == "error"]
    assert gone not in ipr.namespaces and gone not in softgate.netfilter


def test_one_bad_domain_is_reported_and_the_rest_applied() -> None:
    content = json.loads((GOLDEN / "vpcs.json").read_text())
    bad = content["netfilter"]["domains"][0]
    bad["networks"][0]["cidr"] = "10.0.0.0/33"
    softgate, _, nft, _ = artifact()
    reports = {(r.kind, r.id): r for r in softgate.apply(json.dumps(content))}
    assert reports[("domain", bad["id"])].state == "error"
    assert "netfilter" in reports[("domain", bad["id"])].reason
    good = content["netfilter"]["domains"][1]["id"]
    assert good in nft.namespaces


@pytest.mark.parametrize("content, words", [
    ("not json", "not JSON"),
    ('{"format": 2}', "format 1"),
    ('{"format": 1, "links": {}}', "missing section 'netfilter'"),
])
def test_a_broken_artifact_is_one_error(content: str, words: str) -> None:
    softgate, ipr, _, _ = artifact()
    (report,) = softgate.apply(content)
    assert (report.kind, report.state) == ("artifact", "error") and words in report.reason
    assert list(ipr.namespaces) == [None]


def test_merge_keeps_errors_and_every_reason() -> None:
    merged = merge([ObjectStatus("network", "n1", "ok"),
                    ObjectStatus("network", "n1", "error", "dnsmasq: no"),
                    ObjectStatus("network", "n2", "ok")])
    assert merged == [ObjectStatus("network", "n1", "error", "dnsmasq: no"),
                      ObjectStatus("network", "n2", "ok")]


def test_a_domain_with_a_sync_runs_conntrackd_started_once_and_restarted_on_change(
        ) -> None:
    data = json.loads((GOLDEN / "isolated.json").read_text())
    (domain,) = data["links"]["domains"]
    domain["sync"] = {"address": "169.254.252.1", "peer": "169.254.252.2"}
    softgate, ipr, _, _ = artifact()
    conntrackd = softgate.conntrackd
    assert isinstance(conntrackd, FakeConntrackd)
    reports = softgate.apply(json.dumps(data))
    assert [(r.kind, r.id, r.state) for r in reports if r.kind == "conntrack_sync"] == [
        ("conntrack_sync", domain["netns"], "ok")]
    bridge = ipr.link(domain["netns"], domain["l3vni"]["bridge"])
    assert bridge is not None and "169.254.252.1/32" in {str(a) for a in bridge.addresses}
    softgate.apply(json.dumps(data))
    domain["sync"]["peer"] = "169.254.252.3"
    softgate.apply(json.dumps(data))
    assert conntrackd.actions == [f"start {domain['netns']}", f"restart {domain['netns']}"]
    domain["sync"] = None
    reports = softgate.apply(json.dumps(data))
    assert conntrackd.configs == {} and not [r for r in reports if r.kind == "conntrack_sync"]
