"""Load-balancer backend health: who gets new connections, decided by probes.

Every INTERVAL the agent probes every backend of every load balancer from inside its
routing domain (agent.lb_probe), feeds each result to a small state machine per backend
(`step`: FALL failures in a row take it out, RISE answers in a row bring it back), and,
for the domains where a verdict changed, applies the desired state with those verdicts
(`with_health`) through the domain's DomainApplier. That is a delta of the load
balancer's slot map only: a dead backend owns no slots (agent.netfilter_lb), so new
connections go to the others, while every established connection, to whichever
backend, stays: its NAT binding lives in conntrack and no rule or table is replaced.

The service's `alive: false` wins over any probe: such a backend is not probed at all.
A backend we have not probed yet counts as alive, so that an agent restart or a new
member never takes traffic away before a probe said so.

Status: every probed backend is reported as ObjectStatus kind "lb_backend", id
"<lb id>/<ip>:<port>": "ok", or "error" with "health check: no answer since <time>".
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final

from agent import conntrack
from agent.lb_probe import Prober, ProbeResult, Target
from agent.netfilter_apply import ApplyResult, DomainApplier
from agent.netfilter_state import IPv4, LoadBalancer, PortProtocol, RoutingDomain
from agent.status import ObjectStatus

log = logging.getLogger(__name__)

# A dead backend keeps receiving its share of new connections until it is taken out,
# about FALL * INTERVAL: 2 s. Probing every backend once a second costs one round of
# non-blocking sockets (1,000 backends: well under 0.1 s when they answer).
INTERVAL: Final = 1.0
# Half the interval, so a round of silent backends still ends before the next starts.
# On the SoftGate's own segments a live backend completes a handshake in well under a
# millisecond; 0.5 s forgives a loaded one.
PROBE_TIMEOUT: Final = 0.5
# One lost probe (a dropped SYN, a full accept queue) must not take a backend out.
FALL: Final = 2
# A restarting backend must answer twice before it gets traffic back: a port that is
# open for an instant (a crash loop) does not flap the slot map every second.
RISE: Final = 2
_UNKNOWN: Final = ProbeResult("unknown", "not probed")


@dataclass(frozen=True)
class Health:
    """What we believe of one backend, from its probes so far."""

    alive: bool = True
    streak: int = 0  # probes in a row that disagree with `alive`
    silent_since: float | None = None  # wall time of the first failure since an answer
    detail: str = ""  # the last probe's words


def step(health: Health, result: ProbeResult, now: float, rise: int = RISE,
         fall: int = FALL) -> Health:
    """The state after one probe (pure). "unknown" (our own trouble) changes nothing."""
    if result.verdict == "unknown":
        return health
    answered = result.verdict == "alive"
    silent_since = None if answered else (
        now if health.silent_since is None else health.silent_since)
    if answered == health.alive:
        return Health(health.alive, 0, silent_since, result.detail)
    streak = health.streak + 1
    if streak >= (fall if health.alive else rise):
        return Health(answered, 0, silent_since, result.detail)
    return Health(health.alive, streak, silent_since, result.detail)


def _utc(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def reason(health: Health, rise: int = RISE) -> str:
    """The status reason of a backend taken out (empty for a live one)."""
    if health.alive:
        return ""
    if health.silent_since is None:  # dead, but answering again: on its way back
        return (f"health check: answered {health.streak} of the {rise} probes needed to "
                "come back")
    return f"health check: no answer since {_utc(health.silent_since)} ({health.detail})"


@dataclass(frozen=True)
class Change:
    """A backend of one load balancer in one domain changed state."""

    domain: str  # the routing domain's namespace
    lb: str
    ip: IPv4
    port: int
    alive: bool
    reason: str
    protocol: PortProtocol = "tcp"  # the load balancer's
    public_ip: IPv4 | None = None
    public_port: int = 0


def target_of(netns: str | None, lb: LoadBalancer, ip: IPv4, port: int) -> Target:
    return Target(netns, lb.protocol, ip, port)


def _users(domains: Mapping[str, RoutingDomain]
           ) -> dict[Target, list[tuple[str, LoadBalancer]]]:
    """Each backend to probe, with the (netns, load balancer) pairs that use it: a
    backend shared by two load balancers (same protocol, address, port) is probed once."""
    users: dict[Target, list[tuple[str, LoadBalancer]]] = defaultdict(list)
    for netns, domain in sorted(domains.items()):
        for lb in domain.load_balancers:
            for backend in lb.backends:
                if backend.alive:  # the service's "dead" is final: nothing to probe
                    users[target_of(netns, lb, backend.ip, backend.port)].append((netns, lb))
    return users


class HealthChecker:
    """Probes all backends once per `check` and keeps each backend's Health. One thread
    (the health loop) calls `check`; others may read verdicts and statuses meanwhile."""

    def __init__(self, prober: Prober, *, rise: int = RISE, fall: int = FALL,
                 timeout: float = PROBE_TIMEOUT, clock: Callable[[], float] = time.time
                 ) -> None:
        self.prober = prober
        self.rise, self.fall, self.timeout = rise, fall, timeout
        self.clock = clock
        self._health: dict[Target, Health] = {}
        self._lock = threading.Lock()  # readers never see a round half-applied

    def check(self, domains: Mapping[str, RoutingDomain]) -> list[Change]:
        """One round over `domains` (namespace -> desired state): probe every backend at
        once, update each state machine, return the backends that changed state."""
        users = _users(domains)
        results = self.prober.probe_all(sorted(users), self.timeout)  # without the lock
        now = self.clock()
        changes: list[Change] = []
        with self._lock:
            # A backend gone from every load balancer is forgotten: if it comes back, it
            # starts afresh (alive until probed).
            self._health = {t: h for t, h in self._health.items() if t in users}
            for target in sorted(users):
                before = self._health.get(target, Health())
                after = step(before, results.get(target, _UNKNOWN), now, self.rise,
                             self.fall)
                self._health[target] = after
                if after.alive != before.alive:
                    changes += [Change(netns, lb.id, target.ip, target.port, after.alive,
                                       reason(after, self.rise), lb.protocol, lb.public_ip,
                                       lb.public_port)
                                for netns, lb in users[target]]
        return changes

    def health(self, target: Target) -> Health | None:
        with self._lock:
            return self._health.get(target)

    def verdicts(self) -> dict[Target, bool]:
        with self._lock:
            return {target: health.alive for target, health in self._health.items()}

    def statuses(self, netns: str | None, domain: RoutingDomain) -> list[ObjectStatus]:
        """One "lb_backend" status per probed backend of `domain`."""
        with self._lock:
            known = dict(self._health)
        statuses = []
        for lb in domain.load_balancers:
            for backend in lb.backends:
                health = known.get(target_of(netns, lb, backend.ip, backend.port))
                if health is None or not backend.alive:
                    continue
                ident = f"{lb.id}/{backend.ip}:{backend.port}"
                statuses.append(ObjectStatus("lb_backend", ident, "ok") if health.alive else
                                ObjectStatus("lb_backend", ident, "error",
                                             reason(health, self.rise)))
        return statuses


def with_health(netns: str | None, domain: RoutingDomain,
                verdicts: Mapping[Target, bool]) -> RoutingDomain:
    """`domain` with each backend's `alive` also false where its health check says dead
    (never the other way round). Unchanged objects are returned as they are, so an
    unchanged verdict gives an equal domain and the applier a no-op."""
    balancers = []
    for lb in domain.load_balancers:
        backends = tuple(
            replace(b, alive=False)
            if b.alive and not verdicts.get(target_of(netns, lb, b.ip, b.port), True) else b
            for b in lb.backends)
        balancers.append(lb if backends == lb.backends else replace(lb, backends=backends))
    if balancers == list(domain.load_balancers):
        return domain
    return replace(domain, load_balancers=tuple(balancers))


def apply_with_health(applier: DomainApplier, desired: RoutingDomain,
                      checker: HealthChecker, *, fresh: bool = False) -> ApplyResult:
    """How the agent applies a domain, whether its desired state or a verdict changed:
    the health verdicts on top of the desired state (a new desired state must not bring
    a dead backend back), plus one status per probed backend. `fresh`: DomainApplier's."""
    result = applier.apply(with_health(applier.netns, desired, checker.verdicts()),
                           fresh=fresh)
    statuses = checker.statuses(applier.netns, desired)
    return ApplyResult(result.mode, (*result.statuses, *statuses))


def forget_udp_flows(change: Change) -> None:
    """After a UDP backend was taken out: its load-balanced flows are forgotten, so their
    next packets go to a live backend (agent.conntrack.forget_flows says why)."""
    if change.alive or change.protocol != "udp" or change.public_ip is None:
        return
    forgotten = conntrack.forget_flows(change.domain, "udp", change.public_ip,
                                       change.public_port, change.ip, change.port)
    log.info("netns %s: load balancer %s: %d flows to %s:%s forgotten", change.domain,
             change.lb, forgotten, change.ip, change.port)


def run_health_loop(checker: HealthChecker,
                    desired: Callable[[], Mapping[str, RoutingDomain]],
                    apply: Callable[[str], None], stop: threading.Event,
                    interval: float = INTERVAL,
                    clock: Callable[[], float] = time.monotonic,
                    after_apply: Callable[[Change], None] = forget_udp_flows) -> None:
    """Rounds every `interval` until `stop` is set. `desired()` gives the current desired
    domains by namespace; `apply(netns)` re-applies one domain (apply_with_health, under
    the lock the agent holds for that domain's applier); then `after_apply` runs for each
    of its changes (new connections no longer reach a dead backend only from then on).
    A domain whose apply failed is retried every round until it succeeds."""
    pending: dict[str, list[Change]] = {}
    while not stop.is_set():
        started = clock()
        try:
            domains = desired()
            changes = checker.check(domains)
        except Exception:  # a bad round must not end health checking for good
            log.exception("health check round failed")
            stop.wait(interval)
            continue
        for change in changes:
            log.warning("netns %s: load balancer %s backend %s:%s %s%s", change.domain,
                        change.lb, change.ip, change.port,
                        "alive again" if change.alive else "taken out: ", change.reason)
            pending.setdefault(change.domain, []).append(change)
        for netns in sorted(pending):
            # A domain deleted meanwhile has nothing left to apply.
            if netns not in domains or _apply_one(netns, pending[netns], apply,
                                                  after_apply):
                del pending[netns]
        stop.wait(max(0.0, interval - (clock() - started)))


def _apply_one(netns: str, changes: list[Change], apply: Callable[[str], None],
               after_apply: Callable[[Change], None]) -> bool:
    try:
        apply(netns)
    except Exception:  # reported, retried next round; the loop must go on
        log.exception("netns %s: applying health verdicts failed", netns)
        return False
    for change in changes:
        try:
            after_apply(change)
        except Exception:  # the slot map is right already; stale flows age out
            log.exception("netns %s: after a health change of %s:%s", netns, change.ip,
                          change.port)
    return True
