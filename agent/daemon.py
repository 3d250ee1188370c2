"""The agent's loop: long-poll the device's artifacts, apply what changed, report status.

- Each artifact (frr.conf, softgate.json) has one applier; an applier works from what
  the system really has (observe, diff, apply), so applying an unchanged artifact changes
  nothing and a restarted agent, which starts from generation 0, flushes nothing.
- An artifact whose apply reported an error is applied again with backoff (1 s doubling
  to a minute), from the text already fetched: no service needed for a retry.
- Every `resync_s` every artifact is applied again even when unchanged: events are hints,
  and this repairs drift (a route someone deleted, a dnsmasq that died).
- When the service is unreachable nothing is torn down: the data plane keeps forwarding
  on the last applied state, and the agent retries with backoff. Status reports that could
  not be sent are kept (the newest per object) and sent with the next report.
- A report the service already has (the same state and reason) is not sent again, but
  at the resync: one port forward added to a SoftGate of 2,000 objects sends two reports,
  the port forward's and the artifact's. Each apply reports its artifact (kind
  "artifact"), always sent: its generation is the one the device has applied.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import vxgate_log
from agent.frr import FrrControl, FrrError
from agent.service_client import Service, ServiceUnreachable
from agent.status import ARTIFACT, ObjectStatus

log = logging.getLogger(__name__)

# Links and namespaces before FRR: FRR's netns VRFs name the namespaces softgate.json makes,
# and a VTEP leaf's VNIs (leaf.json) are VXLAN devices for FRR's advertise-all-vni.
APPLY_ORDER = ("softgate.json", "leaf.json", "frr.conf")
LONG_POLL_S = 25
RESYNC_S = 300.0
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0


class ArtifactApplier(Protocol):
    def apply(self, content: str) -> list[ObjectStatus]:
        """Make the system match `content`; one report per object, errors included."""


@dataclass
class _Artifact:
    content: str
    sha256: str
    applied_sha256: str = ""  # of the content last applied without an error
    failures: int = 0
    retry_at: float = 0.0


@dataclass
class AgentLoop:
    service: Service
    appliers: Mapping[str, ArtifactApplier]
    long_poll_s: int = LONG_POLL_S
    resync_s: float = RESYNC_S
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    generation: int = 0
    artifacts: dict[str, _Artifact] = field(default_factory=dict)
    unsent: dict[tuple[str, str], ObjectStatus] = field(default_factory=dict)
    sent: dict[tuple[str, str], ObjectStatus] = field(default_factory=dict)
    service_failures: int = 0
    _resync_at: float = 0.0
    _unsent_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._resync_at = self.clock() + self.resync_s

    def run(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            self.step()

    def step(self) -> None:
        """One round: fetch (waiting at most until the next retry is due), apply, report."""
        try:
            fetched = self.service.fetch(self.generation, self._wait_s())
        except ServiceUnreachable as exc:
            self._service_down(exc)
        else:
            if self.service_failures:  # says the outage is over, for the operator
                log.info("service reachable again after %d failed attempt(s)",
                         self.service_failures)
            self.service_failures = 0
            for artifact in fetched.artifacts:
                self._desire(artifact.name, artifact.content)
            self.generation = fetched.generation
        self._resync_if_due()
        self._apply_due()
        self._send_reports()

    def _desire(self, name: str, content: str) -> None:
        digest = hashlib.sha256(content.encode()).hexdigest()
        current = self.artifacts.get(name)
        if current is None or current.sha256 != digest:
            self.artifacts[name] = _Artifact(content, digest)

    def _wait_s(self) -> int:
        """Long-poll as long as nothing of ours is due earlier."""
        return max(0, min(self.long_poll_s, int(self._until_due())))

    def _until_due(self) -> float:
        due = [a.retry_at for a in self.artifacts.values() if self._needs_apply(a)]
        due.append(self._resync_at)
        return min(due) - self.clock()

    def _resync_if_due(self) -> None:
        if self.clock() < self._resync_at:
            return
        self._resync_at = self.clock() + self.resync_s
        self.sent.clear()  # and tell the service everything again
        for artifact in self.artifacts.values():
            artifact.applied_sha256 = ""  # apply again: observe and repair
            artifact.retry_at = 0.0

    @staticmethod
    def _needs_apply(artifact: _Artifact) -> bool:
        return artifact.applied_sha256 != artifact.sha256

    def _apply_due(self) -> None:
        now = self.clock()
        for name in sorted(self.artifacts, key=_order):
            artifact = self.artifacts[name]
            if self._needs_apply(artifact) and artifact.retry_at <= now:
                self._apply(name, artifact)

    def _apply(self, name: str, artifact: _Artifact) -> None:
        # Every line of this apply, the appliers' included, names the artifact.
        token = vxgate_log.bind(artifact=name, generation=self.generation)
        try:
            self._apply_bound(name, artifact)
        finally:
            vxgate_log.reset(token)

    def _apply_bound(self, name: str, artifact: _Artifact) -> None:
        applier = self.appliers.get(name)
        started = self.clock()
        if applier is None:
            reports = [ObjectStatus(ARTIFACT, name, "error",
                                    "this agent has no applier for this artifact")]
        else:
            try:
                reports = applier.apply(artifact.content)
            except Exception as exc:  # an applier bug must not end the loop
                log.exception("applying %s failed", name)
                reports = [ObjectStatus(ARTIFACT, name, "error",
                                        f"{type(exc).__name__}: {exc}")]
        failed = [r for r in reports if r.state == "error"]
        if not any(r.kind == ARTIFACT and r.id == name for r in reports):
            reports.append(ObjectStatus(ARTIFACT, name, "error" if failed else "ok",
                                        f"{len(failed)} object(s) failed" if failed else ""))
        log.info("applied %s: %d objects, %d errors, %.2f s", name, len(reports), len(failed),
                 self.clock() - started)
        if failed:
            artifact.failures += 1
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (artifact.failures - 1))
            artifact.retry_at = self.clock() + delay
            log.warning("%s: %d object(s) failed, retry in %.0f s; first: %s %s: %s",
                        name, len(failed), delay, failed[0].kind, failed[0].id,
                        failed[0].reason)
        else:
            artifact.failures, artifact.applied_sha256 = 0, artifact.sha256
        self.enqueue(reports)

    def enqueue(self, reports: list[ObjectStatus]) -> None:
        """Reports to send with the next round; any thread (the health loop) may call."""
        with self._unsent_lock:
            for report in reports:
                self.unsent[(report.kind, report.id)] = report

    def _send_reports(self) -> None:
        with self._unsent_lock:
            sending, self.unsent = self.unsent, {}
        sending = {key: report for key, report in sending.items()
                   if report.kind == ARTIFACT or self.sent.get(key) != report}
        if not sending:
            return
        try:
            self.service.report(self.generation, list(sending.values()))
        except ServiceUnreachable as exc:
            log.info("status report kept for later: %s", exc)
            with self._unsent_lock:  # what came in meanwhile is newer: it wins
                self.unsent = {**sending, **self.unsent}
        else:
            self.sent.update(sending)

    def _service_down(self, exc: ServiceUnreachable) -> None:
        self.service_failures += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self.service_failures - 1))
        log.warning("service unreachable (%s); data plane kept as is, retry in %.0f s",
                    exc, delay)
        # A retry of a failed apply needs no service: do not sleep past it.
        self.sleep(max(0.0, min(delay, self._until_due())))


def _order(name: str) -> tuple[int, str]:
    return (APPLY_ORDER.index(name) if name in APPLY_ORDER else len(APPLY_ORDER), name)


class FrrArtifact:
    """frr.conf: the whole text, applied as a delta by agent.frr."""

    def __init__(self, frr: FrrControl) -> None:
        self.frr = frr

    def apply(self, content: str) -> list[ObjectStatus]:
        try:
            self.frr.apply(content)
        except FrrError as exc:
            return [ObjectStatus("frr", "frr.conf", "error", str(exc))]
        return [ObjectStatus("frr", "frr.conf", "ok")]
