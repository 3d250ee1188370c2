"""agent.netfilter_apply against FakeNft: delta or whole, fallbacks, per-object status."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from agent.netfilter_apply import DomainApplier
from agent.netfilter_lb import LEASTCONN_NOTE
from agent.netfilter_render import render_full
from agent.netfilter_state import PortForward, PortRange
from agent.nft import NftError, one_line
from agent.nft_fake import FakeNft
from tests.unit.netfilter_samples import domain

PF_NEW = PortForward("pf9", IPv4Address("203.0.113.2"), "tcp", PortRange(8080, 8080),
                     IPv4Address("10.1.1.13"), PortRange(80, 80))


def _applier() -> tuple[FakeNft, DomainApplier]:
    fake = FakeNft()
    return fake, DomainApplier(fake, "vxt-ns")


def test_first_apply_is_whole_then_deltas_then_noop() -> None:
    fake, applier = _applier()
    iso = domain("isolated")
    assert applier.apply(iso).mode == "full"
    more = replace(iso, port_forwards=(*iso.port_forwards, PF_NEW))
    result = applier.apply(more)
    assert result.mode == "delta" and result.ok
    assert fake.calls[-1][1].count("element") == 1
    assert applier.apply(more).mode == "noop"
    assert len(fake.calls) == 2
    reference = FakeNft()
    reference.apply("x", render_full(more))
    assert fake.list_ruleset("vxt-ns") == reference.list_ruleset("x")


def test_every_object_gets_a_status() -> None:
    _, applier = _applier()
    result = applier.apply(domain("isolated"))
    kinds = {(s.kind, s.id) for s in result.statuses}
    assert ("port_forward", "pf3") in kinds and ("static_nat", "203.0.113.3") in kinds
    assert ("firewall_rule", "6") in kinds and ("network", "201") in kinds
    assert ("source_nat", "203.0.113.2") in kinds
    lb3 = next(s for s in result.statuses if s.id == "lb3")
    assert lb3.state == "ok" and lb3.reason == LEASTCONN_NOTE


def test_drift_makes_the_delta_fail_and_the_whole_repair_it() -> None:
    fake, applier = _applier()
    iso = domain("isolated")
    applier.apply(iso)
    fake.namespaces["vxt-ns"] = {}  # someone flushed the ruleset behind our back
    smaller = replace(iso, port_forwards=iso.port_forwards[1:])
    result = applier.apply(smaller)
    assert result.mode == "full" and result.ok
    reference = FakeNft()
    reference.apply("x", render_full(smaller))
    assert fake.list_ruleset("vxt-ns") == reference.list_ruleset("x")


def test_a_refused_object_does_not_keep_the_others_out() -> None:
    fake, applier = _applier()
    fake.fail_when = ["10.1.1.13 . 80"]  # the kernel refuses PF_NEW's element
    iso = domain("isolated")
    result = applier.apply(replace(iso, port_forwards=(*iso.port_forwards, PF_NEW)))
    assert result.mode == "partial"
    bad = [s for s in result.statuses if s.state == "error"]
    assert [(s.kind, s.id) for s in bad] == [("port_forward", "pf9")]
    assert "10.1.1.13 . 80" in bad[0].reason and "\n" not in bad[0].reason
    ruleset = fake.list_ruleset("vxt-ns")
    assert "203.0.113.2 . tcp . 2222 : 10.1.1.12 . 22" in ruleset
    assert "8080" not in ruleset.split("pf_port", 1)[1].split("}", 1)[0]
    assert applier.applied == iso  # what the kernel holds now


def test_a_refused_base_fails_everything_and_forgets() -> None:
    fake, applier = _applier()
    fake.fail_when = ["10.1.1.0/24 : drop"]
    result = applier.apply(domain("isolated"))
    assert result.mode == "partial" and not any(s.state == "ok" for s in result.statuses)
    assert applier.applied is None


def test_forget_forces_a_rebuild() -> None:
    fake, applier = _applier()
    applier.apply(domain("vpc"))
    applier.forget()
    assert applier.apply(domain("vpc")).mode == "full"
    assert [check for _, _, check in fake.calls] == [False, False]


def test_nft_errors_are_one_line() -> None:
    stderr = ("/dev/stdin:12:68-95: Error: Could not process rule: File exists\n"
              "add element inet t s { 1.2.3.4 }\n"
              "                       ^^^^^^^\n")
    assert one_line(stderr) == ("/dev/stdin:12:68-95: Error: Could not process rule: File "
                                "exists | add element inet t s { 1.2.3.4 }")
    assert isinstance(NftError("x"), RuntimeError)
