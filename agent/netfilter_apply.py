"""Bring one routing domain's nftables from the last-applied state to the desired one.

Per change: the delta (element and ACL-chain changes only) when we know what the kernel
holds and the delta is smaller than the whole; otherwise, or when the kernel refuses the
delta (someone changed the tables behind our back, or we restarted), the whole ruleset.
Both are one atomic transaction.

Should the kernel refuse the whole ruleset, one bad object must not keep every other
object out: the applier checks (`nft -c`, nothing committed) the domain's base (its
networks, source NAT, ACLs) and then each object on top of it, applies everything that
passed, and reports the rest as errors with nft's message. Every call returns one
status per object: (kind, id, ok|error, reason).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

from agent import netfilter_render as render
from agent.netfilter_compile import TableData, compile_domain
from agent.netfilter_lb import LEASTCONN_NOTE
from agent.netfilter_state import RoutingDomain
from agent.nft import NftError, NftRunner
from agent.status import ObjectStatus

log = logging.getLogger(__name__)
Mode = Literal["noop", "delta", "full", "partial"]



@dataclass(frozen=True)
class ApplyResult:
    mode: Mode
    statuses: tuple[ObjectStatus, ...]

    @property
    def ok(self) -> bool:
        return all(s.state == "ok" for s in self.statuses)


def object_ids(domain: RoutingDomain) -> list[tuple[str, str]]:
    """(kind, id) of every tenant object."""
    result = [("static_nat", str(s.public_ip)) for s in domain.static_nats]
    result += [("port_forward", p.id) for p in domain.port_forwards]
    result += [("firewall_rule", r.id) for r in domain.firewall_rules]
    result += [("load_balancer", lb.id) for lb in domain.load_balancers]
    return result


def objects_of(domain: RoutingDomain) -> list[tuple[str, str, RoutingDomain]]:
    """(kind, id, the base domain plus only this object) for every tenant object: what
    the applier checks one by one when the kernel refused the whole."""
    base = base_of(domain)
    alone = [replace(base, static_nats=(s,)) for s in domain.static_nats]
    alone += [replace(base, port_forwards=(p,)) for p in domain.port_forwards]
    alone += [replace(base, firewall_rules=(r,)) for r in domain.firewall_rules]
    alone += [replace(base, load_balancers=(lb,)) for lb in domain.load_balancers]
    return [(kind, ident, one) for (kind, ident), one in zip(object_ids(domain), alone,
                                                              strict=True)]


def base_of(domain: RoutingDomain) -> RoutingDomain:
    """The domain without its per-rule objects: networks, ACLs and source NAT."""
    return replace(domain, static_nats=(), port_forwards=(), firewall_rules=(),
                   load_balancers=())


def _base_statuses(domain: RoutingDomain, state: Literal["ok", "error"],
                   reason: str) -> list[ObjectStatus]:
    statuses = [ObjectStatus("network", n.id, state, reason) for n in domain.networks]
    if domain.source_nat_ip is not None:
        statuses.append(ObjectStatus("source_nat", str(domain.source_nat_ip), state, reason))
    return statuses


class DomainApplier:
    """Keeps what it last applied to one namespace; not thread-safe (one per domain)."""

    def __init__(self, nft: NftRunner, netns: str | None) -> None:
        self.nft = nft
        self.netns = netns
        self.applied: RoutingDomain | None = None
        self._applied_tables: tuple[TableData, ...] | None = None

    def forget(self) -> None:
        """Next apply rebuilds everything (e.g. after the namespace was recreated)."""
        self.applied, self._applied_tables = None, None

    def apply(self, desired: RoutingDomain, *, fresh: bool = False) -> ApplyResult:
        """`fresh`: the namespace was just made, none of our tables can be there."""
        if fresh:
            self.forget()
        tables = compile_domain(desired)
        if self._applied_tables is not None:
            mode = self._try_delta(tables)
            if mode is not None:
                self._remember(desired, tables)
                return ApplyResult(mode, tuple(self._statuses(desired, {})))
        full = render.render_tables(tables, fresh=fresh)
        try:
            self.nft.apply(self.netns, full)
        except NftError as exc:
            log.warning("netns %s: whole ruleset refused, isolating objects: %s",
                        self.netns, exc)
            return self._apply_partial(desired, str(exc))
        self._remember(desired, tables)
        return ApplyResult("full", tuple(self._statuses(desired, {})))

    def _try_delta(self, tables: tuple[TableData, ...]) -> Mode | None:
        assert self._applied_tables is not None
        try:
            delta = render.delta_tables(self._applied_tables, tables)
        except ValueError:
            return None  # a new skeleton: only a rebuild installs it
        if not delta:
            return "noop"
        if delta.count("\n") > sum(len(s) for t in tables for s in t.elements.values()):
            return None  # touching more than the whole holds: rebuilding is cheaper
        try:
            self.nft.apply(self.netns, delta)
        except NftError as exc:
            log.info("netns %s: delta refused, rebuilding: %s", self.netns, exc)
            return None
        return "delta"

    def _remember(self, domain: RoutingDomain, tables: tuple[TableData, ...]) -> None:
        self.applied, self._applied_tables = domain, tables

    def _apply_partial(self, desired: RoutingDomain, whole_error: str) -> ApplyResult:
        base = base_of(desired)
        try:
            self.nft.apply(self.netns, render.render_full(base), check=True)
        except NftError as exc:
            failed = {key: str(exc) for key in object_ids(desired)}
            statuses = _base_statuses(desired, "error", str(exc))
            statuses += [ObjectStatus(k, i, "error", f"base refused: {exc}")
                         for k, i in failed]
            self.forget()  # what the kernel holds is unknown now
            return ApplyResult("partial", tuple(statuses))
        failed = {}
        for kind, ident, alone in objects_of(desired):
            try:
                self.nft.apply(self.netns, render.render_full(alone), check=True)
            except NftError as exc:
                failed[(kind, ident)] = str(exc)
        good = _without(desired, failed)
        try:
            self.nft.apply(self.netns, render.render_full(good))
        except NftError as exc:
            # Each object passed alone but not together: report the whole error on all.
            self.forget()
            statuses = _base_statuses(desired, "error", whole_error)
            statuses += [ObjectStatus(k, i, "error", str(exc))
                         for k, i in object_ids(desired)]
            return ApplyResult("partial", tuple(statuses))
        self._remember(good, compile_domain(good))
        return ApplyResult("partial", tuple(self._statuses(desired, failed)))

    def _statuses(self, domain: RoutingDomain,
                  failed: dict[tuple[str, str], str]) -> list[ObjectStatus]:
        statuses = _base_statuses(domain, "ok", "")
        leastconn = {lb.id for lb in domain.load_balancers if lb.algorithm == "leastconn"}
        for kind, ident in object_ids(domain):
            if (kind, ident) in failed:
                statuses.append(ObjectStatus(kind, ident, "error", failed[(kind, ident)]))
            elif kind == "load_balancer" and ident in leastconn:
                statuses.append(ObjectStatus(kind, ident, "ok", LEASTCONN_NOTE))
            else:
                statuses.append(ObjectStatus(kind, ident, "ok"))
        return statuses


def _without(domain: RoutingDomain, failed: dict[tuple[str, str], str]) -> RoutingDomain:
    return replace(
        domain,
        static_nats=tuple(s for s in domain.static_nats
                          if ("static_nat", str(s.public_ip)) not in failed),
        port_forwards=tuple(p for p in domain.port_forwards
                            if ("port_forward", p.id) not in failed),
        firewall_rules=tuple(r for r in domain.firewall_rules
                             if ("firewall_rule", r.id) not in failed),
        load_balancers=tuple(lb for lb in domain.load_balancers
                             if ("load_balancer", lb.id) not in failed))
