"""The agent loop against a fake service and fake appliers, on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from agent.daemon import RESYNC_S, AgentLoop, FrrArtifact
from agent.frr import FakeFrr
from agent.service_client import Artifact, Fetched, ServiceUnreachable
from agent.status import ObjectStatus


@dataclass
class FakeService:
    artifacts: dict[str, str] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)
    generation: int = 0
    down: bool = False
    waits: list[int] = field(default_factory=list)
    reports: list[tuple[int, list[ObjectStatus]]] = field(default_factory=list)

    def publish(self, name: str, content: str) -> None:
        self.generation += 1
        self.artifacts[name], self.generations[name] = content, self.generation

    def fetch(self, since: int, wait: int) -> Fetched:
        self.waits.append(wait)
        if self.down:
            raise ServiceUnreachable("connection refused")
        changed = tuple(Artifact(name, self.generations[name], "", content)
                        for name, content in sorted(self.artifacts.items())
                        if self.generations[name] > since)
        return Fetched(self.generation, changed)

    def report(self, generation: int, reports: list[ObjectStatus]) -> None:
        if self.down:
            raise ServiceUnreachable("connection refused")
        self.reports.append((generation, reports))


@dataclass
class Recorder:
    """An applier that records contents; `fail` makes its applies report an error."""

    applied: list[str] = field(default_factory=list)
    fail: bool = False

    def apply(self, content: str) -> list[ObjectStatus]:
        self.applied.append(content)
        return [ObjectStatus("thing", "1", "error" if self.fail else "ok",
                             "broken" if self.fail else "")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make(service: FakeService, **appliers: Recorder) -> tuple[AgentLoop, Clock]:
    clock = Clock()
    named = {name.replace("_", "."): applier for name, applier in appliers.items()}
    return AgentLoop(service, named, clock=clock, sleep=clock.sleep), clock


def test_applies_new_artifacts_in_order_and_reports() -> None:
    service = FakeService()
    service.publish("frr.conf", "frr text")
    service.publish("softgate.json", "{}")
    order: list[str] = []
    frr, softgate = Recorder(), Recorder()
    frr.apply = lambda c: order.append("frr") or [ObjectStatus("frr", "frr.conf", "ok")]  # type: ignore[method-assign]
    softgate.apply = lambda c: order.append("sg") or [ObjectStatus("x", "1", "ok")]  # type: ignore[method-assign]
    loop, _ = make(service, frr_conf=frr, softgate_json=softgate)
    loop.step()
    assert order == ["sg", "frr"]  # namespaces before the FRR VRFs that name them
    assert loop.generation == 2
    (generation, reports), = service.reports
    assert generation == 2 and {(r.kind, r.id) for r in reports} == {
        ("frr", "frr.conf"), ("x", "1"), ("artifact", "frr.conf"),
        ("artifact", "softgate.json")}
    loop.step()  # nothing new: nothing applied, nothing reported, a long wait
    assert order == ["sg", "frr"] and len(service.reports) == 1
    assert service.waits[-1] == 25


def test_only_changed_reports_are_sent_but_all_at_the_resync() -> None:
    service = FakeService()
    service.publish("softgate.json", "v1")
    softgate = Recorder()
    softgate.apply = lambda c: [ObjectStatus("x", "1", "ok"),  # type: ignore[method-assign]
                                ObjectStatus("x", "2", "ok" if c == "v1" else "error", c)]
    loop, clock = make(service, softgate_json=softgate)
    loop.step()
    service.publish("softgate.json", "v2")
    loop.step()
    sent = [(generation, sorted((r.kind, r.id) for r in reports))
            for generation, reports in service.reports]
    # The artifact's own report always goes: it carries the generation applied.
    assert sent[1] == (2, [("artifact", "softgate.json"), ("x", "2")])
    clock.now += RESYNC_S
    loop.step()
    assert sorted(r.id for r in service.reports[-1][1]) == ["1", "2", "softgate.json"]


def test_a_failed_apply_is_retried_with_backoff_without_the_service() -> None:
    service = FakeService()
    service.publish("softgate.json", "{}")
    applier = Recorder(fail=True)
    loop, clock = make(service, softgate_json=applier)
    loop.step()
    assert len(applier.applied) == 1
    assert service.reports[-1][1][0].state == "error"
    loop.step()  # retry not due yet: the fetch waits only until it is
    assert len(applier.applied) == 1 and service.waits[-1] <= 1
    clock.now += 1
    service.down = True  # a retry needs no service
    loop.step()
    assert len(applier.applied) == 2
    service.down = False
    clock.now += 1.5
    loop.step()
    assert len(applier.applied) == 2  # second delay is 2 s
    clock.now += 2
    applier.fail, service.down = False, False
    loop.step()
    assert len(applier.applied) == 3
    assert service.reports[-1][1][0].state == "ok"  # the newest per object wins


def test_service_down_keeps_everything_and_backs_off() -> None:
    service = FakeService()
    service.publish("softgate.json", "{}")
    applier = Recorder()
    loop, clock = make(service, softgate_json=applier)
    loop.step()
    service.down = True
    start = clock.now
    for _ in range(8):
        loop.step()
    assert clock.now - start == pytest.approx(1 + 2 + 4 + 8 + 16 + 32 + 60 + 60)
    assert applier.applied == ["{}"]  # nothing torn down or re-applied
    service.down = False
    service.publish("softgate.json", '{"a": 1}')
    loop.step()
    assert applier.applied == ["{}", '{"a": 1}']


def test_resync_reapplies_unchanged_artifacts() -> None:
    service = FakeService()
    service.publish("softgate.json", "{}")
    applier = Recorder()
    loop, clock = make(service, softgate_json=applier)
    loop.step()
    clock.now += 301
    loop.step()
    assert applier.applied == ["{}", "{}"]


def test_unknown_artifact_and_applier_crash_are_reported_not_fatal() -> None:
    service = FakeService()
    service.publish("mystery.txt", "?")
    service.publish("softgate.json", "{}")
    crashing = Recorder()
    crashing.apply = lambda c: 1 / 0  # type: ignore[method-assign, assignment, return-value]
    loop, _ = make(service, softgate_json=crashing)
    loop.step()
    reports = {(r.kind, r.id): r for r in service.reports[-1][1]}
    assert "no applier" in reports[("artifact", "mystery.txt")].reason
    assert "ZeroDivisionError" in reports[("artifact", "softgate.json")].reason


def test_frr_artifact_reports_frr_errors() -> None:
    frr = FakeFrr()
    artifact = FrrArtifact(frr)
    assert artifact.apply("a") == [ObjectStatus("frr", "frr.conf", "ok")]
    frr.refuse = "vtysh failed"
    (report,) = artifact.apply("b")
    assert (report.state, report.reason) == ("error", "vtysh failed")
    assert frr.running == "a"
