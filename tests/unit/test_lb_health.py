"""agent.lb_health with the fake prober: state machine, verdict mapping, statuses, loop."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from agent import conntrack
from agent.lb_health import (
    FALL,
    RISE,
    Change,
    Health,
    HealthChecker,
    apply_with_health,
    forget_udp_flows,
    reason,
    run_health_loop,
    step,
    with_health,
)
from agent.lb_probe import FakeProber, ProbeResult, Target
from agent.netfilter_apply import DomainApplier
from agent.netfilter_compile import compile_domain
from agent.netfilter_state import RoutingDomain
from agent.nft_fake import FakeNft
from tests.unit.netfilter_samples import domain

NS = "vxr5000001"
ALIVE, DEAD, UNKNOWN = (ProbeResult("alive", "connected"),
                        ProbeResult("dead", "connection refused"),
                        ProbeResult("unknown", "no probe socket"))


def _run(health: Health, *results: ProbeResult, start: float = 100.0) -> list[Health]:
    states = []
    for i, result in enumerate(results):
        health = step(health, result, start + i)
        states.append(health)
    return states


def test_thresholds_are_the_documented_ones() -> None:
    assert (FALL, RISE) == (2, 2)


def test_one_failure_is_forgiven_two_take_it_out() -> None:
    states = _run(Health(), DEAD, ALIVE, DEAD, DEAD)
    assert [s.alive for s in states] == [True, True, True, False]
    assert states[-1].silent_since == 102.0  # the first failure of the run that counted
    assert reason(states[-1]) == ("health check: no answer since 1970-01-01T00:01:42Z "
                                  "(connection refused)")


def test_it_comes_back_after_two_answers_in_a_row() -> None:
    dead = Health(alive=False, silent_since=50.0, detail="connection refused")
    states = _run(dead, ALIVE, DEAD, ALIVE, ALIVE)
    assert [s.alive for s in states] == [False, False, False, True]
    assert "answered 1 of the 2 probes" in reason(states[0])
    assert states[1].silent_since == 101.0 and reason(states[-1]) == ""


def test_unknown_changes_nothing() -> None:
    health = Health(alive=True, streak=1, silent_since=7.0, detail="x")
    assert step(health, UNKNOWN, 99.0) == health


def test_custom_thresholds() -> None:
    states = _run(Health(), DEAD, DEAD, DEAD)
    assert [s.alive for s in states] == [True, False, False]
    assert not step(Health(), DEAD, 0.0, fall=1).alive
    assert step(Health(alive=False), ALIVE, 0.0, rise=1).alive


# ---------------------------------------------------------------- checker and mapping

def _target(ip: str, port: int, protocol: str = "tcp") -> Target:
    return Target(NS, protocol, IPv4Address(ip), port)  # type: ignore[arg-type]


def _checker(prober: FakeProber) -> tuple[HealthChecker, list[float]]:
    now = [1000.0]
    return HealthChecker(prober, clock=lambda: now[0]), now


def test_checker_probes_each_backend_once_and_reports_changes() -> None:
    iso = domain("isolated")
    prober = FakeProber()
    checker, now = _checker(prober)
    assert checker.check({NS: iso}) == []
    probed = prober.rounds[0]
    # lb1's 10.1.1.23 is dead by the service: not probed. lb1 (tcp 8080), lb2 (udp 53)
    # and lb3 (tcp 443) share addresses but not ports: five distinct targets.
    assert _target("10.1.1.23", 8080) not in probed
    assert set(probed) == {_target("10.1.1.21", 8080), _target("10.1.1.22", 8080),
                           _target("10.1.1.21", 53, "udp"), _target("10.1.1.22", 53, "udp"),
                           _target("10.1.1.21", 443), _target("10.1.1.22", 443)}
    prober.set({_target("10.1.1.22", 8080): "dead"})
    assert checker.check({NS: iso}) == []  # the first failure is forgiven
    now[0] += 1
    changes = checker.check({NS: iso})
    assert [(c.domain, c.lb, str(c.ip), c.port, c.alive) for c in changes] == \
        [(NS, "lb1", "10.1.1.22", 8080, False)]
    assert changes[0].reason.startswith("health check: no answer since ")


def test_a_backend_shared_by_two_balancers_changes_in_both() -> None:
    data = domain("isolated")
    lb1 = data.load_balancers[0]
    twin = replace(lb1, id="lb9", public_port=8081)
    both = replace(data, load_balancers=(*data.load_balancers, twin))
    prober = FakeProber({_target("10.1.1.21", 8080): "dead"})
    checker, _ = _checker(prober)
    checker.check({NS: both})
    assert len(prober.rounds[0]) == 6  # lb9 adds no probe
    assert {c.lb for c in checker.check({NS: both})} == {"lb1", "lb9"}


def test_with_health_marks_dead_backends_and_keeps_the_rest() -> None:
    iso = domain("isolated")
    assert with_health(NS, iso, {}) is iso
    dead = _target("10.1.1.22", 8080)
    marked = with_health(NS, iso, {dead: False, _target("10.1.1.21", 8080): True})
    lb1 = marked.load_balancers[0]
    assert [(str(b.ip), b.alive) for b in lb1.backends] == \
        [("10.1.1.21", True), ("10.1.1.22", False), ("10.1.1.23", False)]
    assert marked.load_balancers[1:] == iso.load_balancers[1:]  # same ip, other ports
    # A verdict never brings back what the service took out, nor applies to another ns.
    assert with_health(NS, iso, {_target("10.1.1.23", 8080): True}) is iso
    assert with_health("other", iso, {dead: False}) is iso


def test_a_health_change_is_a_slot_map_delta_only() -> None:
    fake = FakeNft()
    applier = DomainApplier(fake, NS)
    prober = FakeProber()
    checker, _ = _checker(prober)
    iso = domain("isolated")
    checker.check({NS: iso})
    assert apply_with_health(applier, iso, checker).mode == "full"
    prober.set({_target("10.1.1.22", 8080): "dead"})
    checker.check({NS: iso})
    checker.check({NS: iso})
    result = apply_with_health(applier, iso, checker)
    assert result.mode == "delta"
    delta = fake.calls[-1][1]
    touched = {line.split()[4] for line in delta.splitlines() if "element" in line}
    assert touched == {"slots"} and "chain" not in delta and "table" not in delta
    slots = compile_domain(applier.applied or iso)[2].elements["slots"]
    lb1 = {v for k, v in slots.items() if k.startswith("203.0.113.4 . tcp . 80 . ")}
    assert lb1 == {"10.1.1.21 . 8080"}
    bad = [s for s in result.statuses if s.state == "error"]
    assert [(s.kind, s.id) for s in bad] == [("lb_backend", "lb1/10.1.1.22:8080")]
    assert bad[0].reason.startswith("health check: no answer since ")
    ok = {s.id for s in result.statuses if s.kind == "lb_backend" and s.state == "ok"}
    assert "lb2/10.1.1.21:53" in ok and "lb1/10.1.1.23:8080" not in ok
    # Back again: two answers, and the status turns ok.
    prober.set({_target("10.1.1.22", 8080): "alive"})
    checker.check({NS: iso})
    assert apply_with_health(applier, iso, checker).mode == "noop"  # not yet back
    changes = checker.check({NS: iso})
    assert [c.alive for c in changes] == [True]
    result = apply_with_health(applier, iso, checker)
    assert result.mode == "delta" and result.ok


def test_a_new_desired_state_does_not_revive_a_dead_backend() -> None:
    fake = FakeNft()
    applier = DomainApplier(fake, NS)
    prober = FakeProber({_target("10.1.1.22", 8080): "dead"})
    checker, _ = _checker(prober)
    iso = domain("isolated")
    for _ in range(FALL):
        checker.check({NS: iso})
    newer = replace(iso, port_forwards=iso.port_forwards[1:])
    apply_with_health(applier, newer, checker)
    assert applier.applied is not None
    assert not applier.applied.load_balancers[0].backends[1].alive


def test_a_removed_backend_is_forgotten() -> None:
    prober = FakeProber({_target("10.1.1.22", 8080): "dead"})
    checker, _ = _checker(prober)
    iso = domain("isolated")
    for _ in range(FALL):
        checker.check({NS: iso})
    assert checker.verdicts()[_target("10.1.1.22", 8080)] is False
    checker.check({NS: replace(iso, load_balancers=())})
    assert checker.verdicts() == {}
    assert checker.health(_target("10.1.1.22", 8080)) is None


# ---------------------------------------------------------------- the loop

def test_loop_applies_changed_domains_and_retries_failures() -> None:
    iso = domain("isolated")
    prober = FakeProber({_target("10.1.1.22", 8080): "dead"})
    checker, _ = _checker(prober)
    stop = threading.Event()
    calls: list[str] = []

    def apply(netns: str) -> None:
        calls.append(netns)
        if len(calls) == 1:
            raise RuntimeError("nft refused")  # retried next round
        if len(calls) == 2:
            stop.set()

    domains: dict[str, RoutingDomain] = {NS: iso, "vxr5000002": domain("vpc")}
    run_health_loop(checker, lambda: domains, apply, stop, interval=0.0)
    assert calls == [NS, NS]
    assert len(prober.rounds) == FALL + 1


def test_loop_drops_pending_domains_that_are_gone() -> None:
    prober = FakeProber({_target("10.1.1.22", 8080): "dead"})
    checker, _ = _checker(prober)
    stop = threading.Event()
    domains: dict[str, RoutingDomain] = {NS: domain("isolated")}
    calls: list[str] = []

    def apply(netns: str) -> None:
        calls.append(netns)
        domains.clear()  # the domain is deleted while its apply fails
        raise RuntimeError("namespace gone")

    def desired() -> dict[str, RoutingDomain]:
        if len(prober.rounds) > FALL + 2:
            stop.set()
        return domains

    run_health_loop(checker, desired, apply, stop, interval=0.0)
    assert calls == [NS]


@pytest.mark.parametrize("verdict", ["alive", "dead"])
def test_fake_prober_answers_every_target(verdict: str) -> None:
    target = _target("10.0.0.1", 80)
    results = FakeProber({target: verdict}).probe_all([target, target], 0.5)  # type: ignore[dict-item]
    assert list(results) == [target] and results[target].verdict == verdict


def test_after_apply_sees_each_change_once_applied() -> None:
    iso = domain("isolated")
    dead = _target("10.1.1.22", 53, "udp")
    prober = FakeProber({dead: "dead"})
    checker, _ = _checker(prober)
    stop = threading.Event()
    events: list[str] = []

    def after(change: Change) -> None:
        events.append(f"after {change.lb} {change.protocol} {change.public_ip}:"
                      f"{change.public_port} -> {change.ip}:{change.port} {change.alive}")
        stop.set()

    run_health_loop(checker, lambda: {NS: iso}, lambda netns: events.append("apply"),
                    stop, interval=0.0, after_apply=after)
    assert events == ["apply", "after lb2 udp 203.0.113.4:53 -> 10.1.1.22:53 False"]


def test_only_dead_udp_backends_have_their_flows_forgotten(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(conntrack, "forget_flows", lambda *args: calls.append(args) or 3)
    vip = IPv4Address("203.0.113.4")
    udp_dead = Change(NS, "lb2", IPv4Address("10.1.1.22"), 53, False, "x", "udp", vip, 53)
    forget_udp_flows(udp_dead)
    forget_udp_flows(replace(udp_dead, alive=True))
    forget_udp_flows(replace(udp_dead, protocol="tcp"))
    assert calls == [(NS, "udp", vip, 53, IPv4Address("10.1.1.22"), 53)]


@pytest.mark.parametrize(("code", "stderr", "expected"), [
    (0, "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.\n", 2),
    (1, "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n", 0),
    (1, "conntrack v1.4.7 (conntrack-tools): Operation failed: invalid parameters\n", None),
])
def test_conntrack_forget_flows_reads_the_count(monkeypatch: pytest.MonkeyPatch, code: int,
                                                stderr: str, expected: int | None) -> None:
    seen: list[list[str]] = []

    def fake_run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        return subprocess.CompletedProcess(command, code, "", stderr)

    monkeypatch.setattr(subprocess, "run", fake_run)
    args = (NS, "udp", IPv4Address("203.0.113.4"), 53, IPv4Address("10.1.1.22"), 5000)
    if expected is None:
        with pytest.raises(conntrack.ConntrackError, match="invalid parameters"):
            conntrack.forget_flows(*args)
    else:
        assert conntrack.forget_flows(*args) == expected
    assert seen[0][:7] == ["ip", "netns", "exec", NS, "conntrack", "-D", "-p"]
    assert "--reply-src" in seen[0] and "10.1.1.22" in seen[0] and "5000" in seen[0]


def test_a_failing_round_does_not_end_the_loop() -> None:
    prober = FakeProber()
    checker, _ = _checker(prober)
    stop = threading.Event()
    asked: list[int] = []

    def desired() -> dict[str, RoutingDomain]:
        asked.append(1)
        if len(asked) == 1:
            raise RuntimeError("state not loaded yet")
        stop.set()
        return {NS: domain("isolated")}

    run_health_loop(checker, desired, lambda netns: None, stop, interval=0.0)
    assert len(asked) == 2 and len(prober.rounds) == 1
