"""softgate.json: a SoftGate's links, nftables, DHCP/DNS and metadata, applied in order.

The artifact (docs/softgate-state.md) has one section per applier. Links go first: the
namespaces, bridges and uplinks they make are where nftables tables, dnsmasq and the
metadata server live. A domain whose namespace could not be made is reported and its
rules wait for the next attempt; the other domains go on.

Reports of the three appliers are merged per object: a network that nftables took but
dnsmasq did not is one "error" with both reasons.

Load balancers: the health loop (agent.lb_health) runs in its own thread and re-applies
a domain when a backend's verdict changes; every netfilter apply, from either side,
goes through `apply_with_health` under one lock, so a new desired state never brings a
dead backend back and the two never interleave on a domain.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.conntrackd import ConntrackdControl, SyncSpec, sync_specs
from agent.dhcp_apply import DhcpApplier
from agent.dhcp_state import DhcpState, DhcpStateError
from agent.frr import FrrError, FrrReload
from agent.ipr import LinkError
from agent.lb_health import HealthChecker, apply_with_health, run_health_loop
from agent.lb_probe import Prober
from agent.links_apply import LinksApplier
from agent.netfilter_apply import DomainApplier
from agent.netfilter_state import RoutingDomain, StateError
from agent.nft import NftRunner
from agent.status import ARTIFACT, ObjectStatus

log = logging.getLogger(__name__)

FORMAT = 1
SOFTGATE_JSON = "softgate.json"
NFT_PARALLEL = 8
RECHECK_S = 240.0  # under the agent's resync period (daemon.RESYNC_S)
LINKS = "links"
DHCP = "dhcp"
SYNC = "sync"
SYNC_KIND = "conntrack_sync"


@dataclass(frozen=True)
class LinksOutcome:
    ready: set[str]  # namespaces in place
    reports: list[ObjectStatus]
    created: set[str]  # namespaces just made: nothing of ours in them yet
    sync: tuple[SyncSpec, ...]  # the domains' conntrack sync, from the links section


def apply_links(links: LinksApplier, data: object) -> LinksOutcome:
    result = links.apply_json(data)
    sync = sync_specs(result.desired) if result.desired is not None else ()
    return LinksOutcome(ready_namespaces(result.statuses), list(result.statuses),
                        set(result.created), sync)


def ready_namespaces(reports: Iterable[ObjectStatus]) -> set[str]:
    """The domains whose namespace the links reported in place."""
    return {s.id for s in reports if s.kind == "domain" and s.state == "ok"}


@dataclass(frozen=True)
class _Done:
    data: Any
    at: float
    reports: tuple[ObjectStatus, ...]


class RecentlyApplied:
    """Parts of softgate.json (a section, a domain's rules) applied without an error less
    than RECHECK_S ago, by key. The same part again is not re-applied: a port forward
    changes one domain's rules, yet re-reading 100 namespaces' links costs most of a
    second and re-parsing every domain and every VM's DHCP entry most of the rest. The
    agent's resync (every RESYNC_S) re-applies everything, so no part goes unchecked for
    much longer than that."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._done: dict[str, _Done] = {}

    def reports(self, key: str, data: Any) -> list[ObjectStatus] | None:
        """The reports of the last clean apply of exactly `data`, if still recent."""
        done = self._done.get(key)
        if done is None or done.data != data or self.clock() - done.at >= RECHECK_S:
            return None
        return list(done.reports)

    def record(self, key: str, data: Any, reports: Iterable[ObjectStatus]) -> None:
        kept = tuple(reports)
        if all(report.state == "ok" for report in kept):
            self._done[key] = _Done(data, self.clock(), kept)
        else:
            self._done.pop(key, None)

    def keep_only(self, keys: set[str]) -> None:
        self._done = {key: done for key, done in self._done.items() if key in keys}

    def clear(self) -> None:
        self._done.clear()


class ZebraWatch:
    """links_apply.RoutingDaemon over FRR: the SoftGate's own namespace is VRF default."""

    def __init__(self, frr: FrrReload) -> None:
        self.frr = frr

    def await_adoption(self, namespaces: list[str]) -> None:
        with _as_link_error():
            self.frr.await_adopted(namespaces)

    def await_links(self, netns: str | None, names: list[str]) -> None:
        with _as_link_error():
            self.frr.await_links(netns or "default", names)


@contextmanager
def _as_link_error() -> Iterator[None]:
    try:
        yield
    except FrrError as exc:
        raise LinkError(str(exc)) from None


class SoftGateArtifact:
    def __init__(self, links: LinksApplier, nft: NftRunner, dhcp: DhcpApplier,
                 prober: Prober, conntrackd: ConntrackdControl) -> None:
        self.links = links
        self.nft = nft
        self.dhcp = dhcp
        self.conntrackd = conntrackd
        self.health = HealthChecker(prober)
        self.netfilter: dict[str, DomainApplier] = {}  # by namespace
        self.desired: dict[str, RoutingDomain] = {}  # what the service wants, by namespace
        self.dhcp_state: DhcpState | None = None  # None: not known (agent start)
        self.lock = threading.Lock()  # netfilter appliers: the config and health loops
        self.recent = RecentlyApplied()
        self.sync: tuple[SyncSpec, ...] = ()  # of the links section last applied

    @classmethod
    def real(cls, state_dir: Path, frr: FrrReload | None) -> SoftGateArtifact:
        """`frr`: the FRR whose zebra takes the routing domains on; None where there is
        none (a benchmark's sandbox)."""
        from agent.conntrackd import Conntrackd
        from agent.dnsmasq import Dnsmasq
        from agent.ipr import Ipr
        from agent.lb_probe import SocketProber
        from agent.metadata_process import MetadataServer
        from agent.nft import Nft

        dhcp = DhcpApplier(Dnsmasq(state_dir / "dnsmasq"),
                           MetadataServer(state_dir / "metadata"))
        routing = ZebraWatch(frr) if frr is not None else None
        return cls(LinksApplier(Ipr(), routing=routing), Nft(), dhcp, SocketProber(),
                   Conntrackd(state_dir / "conntrackd"))

    def start_health_loop(self, report: Callable[[list[ObjectStatus]], None]
                          ) -> threading.Event:
        """Probe load-balancer backends in a daemon thread; set the event to stop it."""
        stop = threading.Event()

        def desired() -> Mapping[str, RoutingDomain]:
            with self.lock:
                return {netns: d for netns, d in self.desired.items() if netns in self.netfilter}

        def apply(netns: str) -> None:
            with self.lock:
                result = apply_with_health(self.netfilter[netns], self.desired[netns],
                                           self.health)
            report(list(result.statuses))

        threading.Thread(target=run_health_loop, args=(self.health, desired, apply, stop),
                         name="lb-health", daemon=True).start()
        return stop

    def apply(self, content: str) -> list[ObjectStatus]:
        try:
            data = _parse(content)
        except ValueError as exc:
            return [ObjectStatus(ARTIFACT, SOFTGATE_JSON, "error", str(exc))]
        links = self._links(data["links"])
        reports = list(links.reports)
        with self.lock:
            reports += self._netfilter(data["netfilter"], links)
        reports += self._dhcp(data["dhcp"], links.ready)
        reports += self._sync(links)
        return merge(reports)

    def _links(self, section: Any) -> LinksOutcome:
        """Apply the links section unless it was applied cleanly a short while ago. When
        it does run, it may have made namespaces anew, empty: what lives in them (rules,
        dnsmasq) is then applied again too, however recent."""
        recent = self.recent.reports(LINKS, section)
        if recent is not None:
            return LinksOutcome(ready_namespaces(recent), recent, set(), self.sync)
        self.recent.clear()
        outcome = apply_links(self.links, section)
        self.recent.record(LINKS, section, outcome.reports)
        self.sync = outcome.sync  # the same section next time: the same sync
        return outcome

    def _netfilter(self, section: Any, links: LinksOutcome) -> list[ObjectStatus]:
        domains = section.get("domains") if isinstance(section, dict) else None
        if not isinstance(domains, list):
            return [ObjectStatus(ARTIFACT, SOFTGATE_JSON, "error",
                                 "netfilter.domains: expected a list")]
        reports: list[ObjectStatus] = []
        wanted: set[str] = set()
        due: list[tuple[RoutingDomain, Any]] = []
        ready = links.ready
        for index, item in enumerate(domains):
            recent = self._recent_domain(item, ready)
            if recent is not None:
                wanted.add(item["id"])
                reports += recent
                continue
            try:
                domain = RoutingDomain.from_json(item)
            except StateError as exc:
                name = item.get("id") if isinstance(item, dict) else None
                reports.append(ObjectStatus("domain", str(name or f"netfilter[{index}]"),
                                            "error", f"netfilter: {exc}"))
                continue
            wanted.add(domain.id)
            self.desired[domain.id] = domain
            if domain.id not in ready:
                reports.append(ObjectStatus("domain", domain.id, "error",
                                            "netfilter waits for the namespace"))
                self.netfilter.pop(domain.id, None)  # made anew: rebuild its tables then
                continue
            self.netfilter.setdefault(domain.id, DomainApplier(self.nft, domain.id))
            due.append((domain, item))
        reports += self._apply_domains(due, links.created)
        for gone in set(self.netfilter) - wanted:
            # Its namespace went with the links; the tables went with the namespace.
            del self.netfilter[gone]
        for gone in set(self.desired) - wanted:
            del self.desired[gone]
        self.recent.keep_only({LINKS, DHCP, SYNC} | {_netfilter_key(id) for id in wanted})
        return reports

    def _recent_domain(self, item: Any, ready: set[str]) -> list[ObjectStatus] | None:
        ident = item.get("id") if isinstance(item, dict) else None
        if not isinstance(ident, str) or ident not in ready or ident not in self.netfilter:
            return None
        return self.recent.reports(_netfilter_key(ident), item)

    def _apply_domains(self, due: list[tuple[RoutingDomain, Any]], created: set[str]
                       ) -> list[ObjectStatus]:
        """Each domain's one nft transaction, several at once: an `nft -f` spends most of
        its time waiting on the kernel, not on a CPU (bench.softgate: 100 domains 2.1 s
        one after another, 0.5 s eight at a time). Each domain has its own applier."""
        def one(domain: RoutingDomain, item: Any) -> list[ObjectStatus]:
            statuses = list(apply_with_health(self.netfilter[domain.id], domain,
                                              self.health,
                                              fresh=domain.id in created).statuses)
            self.recent.record(_netfilter_key(domain.id), item, statuses)
            return statuses

        if len(due) <= 1:
            return [status for domain, item in due for status in one(domain, item)]
        with ThreadPoolExecutor(max_workers=NFT_PARALLEL) as pool:
            return [status for statuses in pool.map(one, *zip(*due, strict=True))
                    for status in statuses]

    def _dhcp(self, section: Any, ready: set[str]) -> list[ObjectStatus]:
        section = _ready_networks(section, ready)
        recent = self.recent.reports(DHCP, section)
        if recent is not None:
            return recent
        try:
            new_state, result = self.dhcp.apply_json(self.dhcp_state, section)
        except DhcpStateError as exc:
            return [ObjectStatus(ARTIFACT, SOFTGATE_JSON, "error", f"dhcp: {exc}")]
        self.dhcp_state = new_state
        reports = [ObjectStatus(s.kind, s.id, "ok" if s.ok else "error", s.reason)
                   for s in result.statuses]
        self.recent.record(DHCP, section, reports)
        return reports

    def _sync(self, links: LinksOutcome) -> list[ObjectStatus]:
        """conntrackd in each ready domain with a sync (none without a peer SoftGate),
        restarted in a namespace just made; an instance of a domain without one, or not
        ready, stops."""
        due = tuple(spec for spec in links.sync if spec.netns in links.ready)
        waiting = [ObjectStatus(SYNC_KIND, spec.netns, "error",
                                "conntrack sync waits for the namespace")
                   for spec in links.sync if spec.netns not in links.ready]
        recent = self.recent.reports(SYNC, due)
        if recent is not None and not links.created:
            return recent + waiting
        answers = self.conntrackd.apply(due, fresh=links.created)
        reports = [ObjectStatus(SYNC_KIND, netns, "error" if error else "ok", error)
                   for netns, error in sorted(answers.items())]
        self.recent.record(SYNC, due, reports)
        return reports + waiting


def _netfilter_key(domain_id: str) -> str:
    return f"netfilter {domain_id}"


def _parse(content: str) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise ValueError(f"softgate.json is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"softgate.json: expected an object with format {FORMAT}")
    missing = [key for key in ("links", "netfilter", "dhcp") if key not in data]
    if missing:
        raise ValueError(f"softgate.json: missing section {missing[0]!r}")
    return data


def _ready_networks(section: Any, ready: set[str]) -> Any:
    """The DHCP section without networks whose namespace is not there (yet): dnsmasq
    cannot start in it. They come back with the next apply."""
    if not isinstance(section, dict) or not isinstance(section.get("networks"), list):
        return section  # let the parser say what is wrong
    networks = [net for net in section["networks"]
                if not isinstance(net, dict) or net.get("netns") in ready]
    return {**section, "networks": networks}


def merge(reports: Iterable[ObjectStatus]) -> list[ObjectStatus]:
    """One report per (kind, id): an error wins, and every reason is kept."""
    merged: dict[tuple[str, str], ObjectStatus] = {}
    for report in reports:
        key = (report.kind, report.id)
        seen = merged.get(key)
        if seen is None:
            merged[key] = report
            continue
        state = "error" if "error" in (seen.state, report.state) else seen.state
        reasons = [r for r in (seen.reason, report.reason) if r]
        merged[key] = ObjectStatus(report.kind, report.id, state, "; ".join(reasons))
    return [merged[key] for key in sorted(merged)]
