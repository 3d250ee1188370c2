"""Bring a SoftGate's namespaces, links, addresses and routes to the desired `links`.

Observe, diff, apply, against what the kernel really has every time: nothing is
remembered between applies, so an agent that restarts onto a kernel that is already right
changes nothing (no flush, no link recreated), and one that finds something changed
behind its back repairs exactly that.

Order, for each apply:
1. SoftGate level ("links" status): forwarding sysctls; strays of ours in the SoftGate's
   namespace (only `vxp<N>` belongs there: a `vxv<N>` there was made by hand or by a
   create-then-move that died half-way) deleted; our routes (protocol ipr.PROTO) that no
   domain wants deleted; blackholes for the pools.
2. Domains no longer wanted: their `vxpub` (which takes the SoftGate-side `vxp<N>` with
   it) and VXLAN devices deleted in one batch, then the namespace. Explicitly, because
   the kernel tears a namespace down asynchronously, and not at all while something
   else holds it (FRR's `zebra -n` binds every VRF namespace into its own mount
   namespace; a dnsmasq may still run in it): a VNI would stay bound on the SoftGate's
   socket and `vxp<N>` with its routes would stay up.
3. Every wanted domain that exists: our links that it does not want, or that have the
   wrong kind or VXLAN parameters (which the kernel cannot change in place), deleted, all
   domains before any is built, so a VNI can move from one domain to another.
4. Each domain in turn ("domain" status, plus one "segment" status per network):
   namespace (new ones all made first, and FRR's adoption of them awaited before any
   link goes in) and its sysctls; uplink veth pair and addresses; default routes to the
   SoftGate; L3VNI VXLAN + bridge (router MAC); segments (VXLAN or VLAN bridge, gateway
   MAC and addresses); the SoftGate's routes for the domain's prefixes over the uplink.
   A new link gets its addresses only once FRR lists it. One domain's error is reported
   and the next domain goes on.
5. SoftGate-side uplinks (`vxp<N>`) of domains that are gone.

Only names of ours (docs/softgate-state.md) are ever deleted: namespaces `vxr<N>`, links
`vxp<N>`, `vxpub`, `vxb<N>`, `vxv<N>`, `vxl<N>`, and routes with our protocol number.
A domain that parse_links left out (LinksState.kept) is not touched at all.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Final, Protocol

from agent.ipr import (
    Interface,
    IprApi,
    Link,
    LinkError,
    Network,
    Route,
    Vxlan,
    show_route,
    where,
)
from agent.links_state import (
    NETNS_RE,
    UPLINK_ROOT_RE,
    Domain,
    LinksState,
    Segment,
    parse_links,
)
from agent.status import ObjectStatus
from agent.uplink import DOMAIN_V4, DOMAIN_V6, ROOT_V4, ROOT_V6

log = logging.getLogger(__name__)

VXLAN_MTU: Final = 1500
FORWARDING: Final = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.conf.all.rp_filter": "0",  # replies may come back over another domain's path
    "net.ipv4.conf.default.rp_filter": "0",
}
# A new namespace starts with these at 1 and br_netfilter sends bridged frames through
# the ip hooks and conntrack (FINDINGS gotcha 1). Absent when br_netfilter is not loaded.
# A domain's connections may move between the SoftGates of a pair and back: a flow that
# went on through the standby comes back with sequence numbers past the window this
# SoftGate last saw. Strict window tracking would call those packets invalid and cut the
# connection on fail-back (docs/softgate-pair.md).
CONNTRACK: Final = {"net.netfilter.nf_conntrack_tcp_be_liberal": "1"}
BRIDGE_NF: Final = {
    "net.bridge.bridge-nf-call-iptables": "0",
    "net.bridge.bridge-nf-call-ip6tables": "0",
    "net.bridge.bridge-nf-call-arptables": "0",
}
OUR_LINK_RE: Final = re.compile(r"vx(pub|[pbvl][0-9]{1,8})")
# Ours, but never at home in the SoftGate's namespace: only vxp<N> lives there.
ROOT_STRAY_RE: Final = re.compile(r"vx(pub|[bvl][0-9]{1,8})")


@dataclass
class ApplyResult:
    statuses: list[ObjectStatus] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # what was done, in order
    # Namespaces made by this apply: empty of everything else (nftables tables, ...).
    created: set[str] = field(default_factory=set)
    desired: LinksState | None = None  # what was applied (apply_json: as parsed)

    @property
    def ok(self) -> bool:
        return all(status.state == "ok" for status in self.statuses)


@dataclass(frozen=True)
class _Want:
    kind: str
    vxlan: Vxlan | None = None


class RoutingDaemon(Protocol):
    """What the routing daemon (FRR's zebra, agent.frr) must have seen before the next
    step (agent.frr says why); each returns once it has, at once where no routing daemon
    runs, and raises LinkError when it does not see it in time."""

    def await_adoption(self, namespaces: list[str]) -> None:
        """New namespaces taken on as VRFs: before any link goes into them."""

    def await_links(self, netns: str | None, names: list[str]) -> None:
        """New links known: before any address goes onto them."""


class NoRoutingDaemon:
    def await_adoption(self, namespaces: list[str]) -> None:
        pass

    def await_links(self, netns: str | None, names: list[str]) -> None:
        pass


class LinksApplier:
    """Stateless between applies; one apply at a time."""

    def __init__(self, ipr: IprApi, *, vlan_trunk: str | None = None,
                 routing: RoutingDaemon | None = None) -> None:
        self.ipr = ipr
        self.vlan_trunk = vlan_trunk
        self.routing = routing or NoRoutingDaemon()

    def apply_json(self, data: object) -> ApplyResult:
        """A full resync from the service's JSON: bad domains reported and left alone."""
        desired, problems = parse_links(data)
        result = self.apply(desired)
        result.statuses[:0] = problems
        result.desired = desired
        return result

    def apply(self, desired: LinksState) -> ApplyResult:
        return _Run(self, desired).run()


class _Run:
    """One apply: the desired state, what was observed, what was done."""

    def __init__(self, applier: LinksApplier, desired: LinksState) -> None:
        self.ipr = applier.ipr
        self.vlan_trunk = applier.vlan_trunk
        self.routing = applier.routing
        # Links made by this apply that the routing daemon is not yet known to have seen.
        self.unseen: dict[str | None, list[str]] = {}
        self.desired = desired
        self.result = ApplyResult()
        self.root_links: dict[str, Link] = {}
        self.root_routes: dict[Network, Route] = {}  # ours, as observed (and then made)
        self.softgate_errors: list[str] = []
        vtep = desired.vtep_address
        self.vxlan_of: Callable[[int], Vxlan] = lambda vni: Vxlan(vni, str(vtep))

    def run(self) -> ApplyResult:
        try:
            self._softgate()
            self._remove_domains()
            present = set(self.ipr.list_netns())
        except LinkError as exc:
            # Blind to what the SoftGate has: building on a guess could tear uplinks down.
            self.softgate_errors.append(str(exc))
            for domain in self.desired.domains:
                self._domain_failed(domain, LinkError(f"softgate not readable: {exc}"))
        else:
            self._domains(present)
            self._remove_uplinks()
        errors = "; ".join(self.softgate_errors)
        self.result.statuses.insert(0, ObjectStatus("links", "softgate",
                                                    "error" if errors else "ok", errors))
        return self.result

    def _domains(self, present: set[str]) -> None:
        observed = {d.netns: self._observe(d) for d in self.desired.domains
                    if d.netns in present}
        observed.update(self._new_namespaces(
            [d.netns for d in self.desired.domains if d.netns not in present]))
        for domain in self.desired.domains:
            links = observed[domain.netns]
            if isinstance(links, LinkError):
                self._domain_failed(domain, links)
            else:
                self._domain(domain, links)

    def _new_namespaces(self, names: list[str]) -> dict[str, dict[str, Link] | LinkError]:
        """Every new namespace made first, then the routing daemon's adoption awaited for
        all of them at once (zebra polls each new one about once a second); their links
        as made, or the error that stops the domain until the next apply."""
        made: dict[str, dict[str, Link] | LinkError] = {}
        for netns in names:
            try:
                self._do(f"create namespace {netns}", partial(self.ipr.create_netns, netns))
            except LinkError as exc:
                made[netns] = exc
            else:
                self.result.created.add(netns)
                made[netns] = {"lo": _made("lo", "")}
        adopting = [netns for netns, links in made.items() if not isinstance(links, LinkError)]
        if adopting:
            try:
                self.routing.await_adoption(adopting)
            except LinkError as exc:
                made.update({netns: exc for netns in adopting})
        return made

    # --- helpers ---------------------------------------------------------------------

    def _do(self, what: str, action: Callable[[], None]) -> None:
        self.result.changes.append(what)
        log.info("links: %s", what)
        action()

    def _status(self, kind: str, ident: str, error: str = "") -> None:
        self.result.statuses.append(
            ObjectStatus(kind, ident, "error" if error else "ok", error))

    def _sysctls(self, netns: str | None, wanted: dict[str, str]) -> None:
        """Those that differ, set in one go (one visit to the namespace)."""
        current = self.ipr.sysctls(netns, list(wanted))
        changes: dict[str, str] = {}
        for name, value in wanted.items():
            if current[name] is None and name in BRIDGE_NF:
                continue
            if current[name] is None:
                raise LinkError(f"{where(netns)}: this kernel has no sysctl {name}")
            if current[name] != value:
                changes[name] = value
        if changes:
            self._do(f"{where(netns)}: sysctl "
                     + " ".join(f"{name}={value}" for name, value in changes.items()),
                     partial(self.ipr.set_sysctls, netns, changes))

    def _route(self, netns: str | None, want: Route, seen: Route | None) -> None:
        """Add, or replace one of ours; a route of someone else's to the same prefix
        makes the add fail (File exists) and is left as it is."""
        if seen == want:
            return
        replace = seen is not None
        verb = "replace" if replace else "add"
        self._do(f"{where(netns)}: {verb} route {show_route(want)}",
                 lambda: self.ipr.add_route(netns, want, replace=replace))

    def _delete_route(self, netns: str | None, route: Route) -> None:
        self._do(f"{where(netns)}: delete route {show_route(route)}",
                 lambda: self.ipr.delete_route(netns, route))

    def _delete_link(self, netns: str | None, name: str) -> None:
        self._do(f"{where(netns)}: delete link {name}",
                 lambda: self.ipr.delete_link(netns, name))

    def _delete_links(self, netns: str | None, names: list[str]) -> None:
        if names:
            self._do(f"{where(netns)}: delete links {' '.join(names)}",
                     lambda: self.ipr.delete_links(netns, names))

    # --- 1. the SoftGate's own namespace ---------------------------------------------

    def _softgate(self) -> None:
        """Raises LinkError only when the SoftGate's links or routes cannot be read."""
        try:
            self._sysctls(None, FORWARDING)
        except LinkError as exc:
            self.softgate_errors.append(str(exc))
        self.root_links = self.ipr.links(None)
        for name in sorted(self.root_links):
            if ROOT_STRAY_RE.fullmatch(name):
                self._try_softgate(partial(self._delete_link, None, name))
                del self.root_links[name]
        self._root_route_gc()
        for net in self.desired.blackholes:
            self._try_softgate(partial(self._route, None, Route(net), self.root_routes.get(net)))
            self.root_routes[net] = Route(net)

    def _try_softgate(self, action: Callable[[], None]) -> None:
        try:
            action()
        except LinkError as exc:
            self.softgate_errors.append(str(exc))

    def _root_route_gc(self) -> None:
        wanted = {route.dst for route in self._wanted_root_routes()}
        kept = {"vxp" + name[3:] for name in self.desired.kept}
        for route in self.ipr.routes(None):
            if route.dst in wanted:
                self.root_routes[route.dst] = route
            elif route.dev not in kept:
                self._try_softgate(partial(self._delete_route, None, route))

    def _wanted_root_routes(self) -> list[Route]:
        routes = [Route(net) for net in self.desired.blackholes]
        for domain in self.desired.domains:
            routes += _domain_root_routes(domain)
        return routes

    # --- 2. and 5. domains that are gone ---------------------------------------------

    def _remove_domains(self) -> None:
        wanted = {d.netns for d in self.desired.domains} | set(self.desired.kept)
        for netns in self.ipr.list_netns():
            if NETNS_RE.fullmatch(netns) and netns not in wanted:
                try:
                    self._remove_domain(netns)
                except LinkError as exc:
                    self._status("domain", netns, f"removing: {exc}")

    def _remove_domain(self, netns: str) -> None:
        links = self.ipr.links(netns)
        self._delete_links(netns, sorted(
            name for name, link in links.items()
            if name == "vxpub" or (link.kind == "vxlan" and OUR_LINK_RE.fullmatch(name))))
        self.root_links.pop("vxp" + netns[3:], None)  # gone with vxpub
        self._do(f"delete namespace {netns}", lambda: self.ipr.delete_netns(netns))

    def _remove_uplinks(self) -> None:
        wanted = {d.uplink.root for d in self.desired.domains}
        wanted |= {"vxp" + name[3:] for name in self.desired.kept}
        for name in sorted(self.root_links):
            if UPLINK_ROOT_RE.fullmatch(name) and name not in wanted:
                self._try_softgate(partial(self._delete_link, None, name))

    # --- 3. what a domain has that it should not -------------------------------------

    def _observe(self, domain: Domain) -> dict[str, Link] | LinkError:
        """The domain's links, after deleting ours that it does not want as they are."""
        try:
            links = self.ipr.links(domain.netns)
            wanted = self._wanted_links(domain)
            doomed = sorted(name for name, link in links.items() if OUR_LINK_RE.fullmatch(name)
                            and not _as_wanted(link, wanted.get(name)))
            self._delete_links(domain.netns, doomed)
            for name in doomed:
                del links[name]
            return links
        except LinkError as exc:
            return exc

    def _wanted_links(self, domain: Domain) -> dict[str, _Want]:
        wanted = {domain.uplink.domain: _Want("veth")}
        if domain.l3vni is not None:
            wanted[domain.l3vni.bridge] = _Want("bridge")
            wanted[domain.l3vni.vxlan] = _Want("vxlan", self.vxlan_of(domain.l3vni.vni))
        for segment in domain.segments:
            wanted[segment.bridge] = _Want("bridge")
            if segment.vxlan is not None and segment.vni is not None:
                wanted[segment.vxlan] = _Want("vxlan", self.vxlan_of(segment.vni))
        return wanted

    # --- 4. building a domain --------------------------------------------------------

    def _domain_failed(self, domain: Domain, exc: LinkError) -> None:
        for segment in domain.segments:
            self._status("segment", segment.network, f"domain {domain.netns}: {exc}")
        self._status("domain", domain.netns, str(exc))

    def _domain(self, domain: Domain, links: dict[str, Link]) -> None:
        netns = domain.netns
        try:
            new = netns in self.result.created
            self._sysctls(netns, {**FORWARDING, **BRIDGE_NF, **CONNTRACK})
            if "lo" in links and not links["lo"].up:  # local sockets (dnsmasq, FRR) need it
                self._do(f"{netns}: set lo up", lambda: self.ipr.set_link(netns, "lo", up=True))
            renewed = self._uplink(domain, links)
            self._default_routes(netns, new)
            if domain.l3vni is not None:
                l3vni = domain.l3vni
                router_mac = self.desired.router_mac  # pinned: see links_state.router_mac
                bridge = self._bridge(netns, links, l3vni.bridge, router_mac)
                self._vxlan(netns, links, l3vni.vxlan, self.vxlan_of(l3vni.vni), l3vni.bridge,
                            suppress=False)
                sync: set[Interface] = set()
                if domain.sync is not None:  # agent.conntrackd's, routed by FRR
                    sync.add(domain.sync.interface_address)
                self._finish(netns, bridge, mac=router_mac, addresses=sync)
        except LinkError as exc:
            self._domain_failed(domain, exc)
            return
        for segment in domain.segments:
            try:
                self._segment(netns, links, segment)
            except LinkError as exc:
                self._status("segment", segment.network, str(exc))
            else:
                self._status("segment", segment.network)
        try:
            self._domain_root_routes(domain, renewed)
        except LinkError as exc:
            self._status("domain", netns, str(exc))
        else:
            self._status("domain", netns)

    def _uplink(self, domain: Domain, links: dict[str, Link]) -> bool:
        """The veth pair, checked to be one pair (each end's peer is the other); True
        when it was (re)made, which takes the routes over the old one with it."""
        netns, names = domain.netns, domain.uplink
        root, inner = self.root_links.get(names.root), links.get(names.domain)
        renewed = root is None or inner is None or not (
            root.kind == inner.kind == "veth" and root.peer == inner.index
            and inner.peer == root.index)
        if root is None or inner is None or renewed:  # (the Nones spelt out for mypy)
            if inner is not None:
                self._delete_link(netns, names.domain)
            if root is not None:
                self._delete_link(None, names.root)
            self._do(f"softgate: add veth {names.root} (peer {names.domain} in {netns})",
                     lambda: self.ipr.add_veth(names.root, None, names.domain, netns))
            self.unseen.setdefault(None, []).append(names.root)
            self.unseen.setdefault(netns, []).append(names.domain)
            root, inner = _made(names.root, "veth"), _made(names.domain, "veth")
            links[names.domain] = inner
        self._finish(None, root, addresses={ROOT_V4, ROOT_V6})
        self._finish(netns, inner, addresses={DOMAIN_V4, DOMAIN_V6})
        self.root_links[names.root] = root
        return renewed

    def _default_routes(self, netns: str, new: bool) -> None:
        wanted = {route.dst: route for route in (
            Route(ipaddress.ip_network("0.0.0.0/0"), ROOT_V4.ip, "vxpub"),
            Route(ipaddress.ip_network("::/0"), ROOT_V6.ip, "vxpub"))}
        seen: dict[Network, Route] = {}
        for route in [] if new else self.ipr.routes(netns):
            if route.dst in wanted and route.dst not in seen:
                seen[route.dst] = route
            else:
                self._delete_route(netns, route)
        for dst, route in wanted.items():
            self._route(netns, route, seen.get(dst))

    def _domain_root_routes(self, domain: Domain, renewed: bool) -> None:
        for want in _domain_root_routes(domain):
            seen = self.root_routes.get(want.dst)
            if renewed and seen is not None and seen.dev == domain.uplink.root:
                seen = None  # went with the old veth
            self._route(None, want, seen)
            self.root_routes[want.dst] = want

    def _segment(self, netns: str, links: dict[str, Link], segment: Segment) -> None:
        bridge = self._bridge(netns, links, segment.bridge, self.desired.gateway_mac)
        if segment.vxlan is not None and segment.vni is not None:
            self._vxlan(netns, links, segment.vxlan, self.vxlan_of(segment.vni),
                        segment.bridge, suppress=True)
        else:
            self._vlan_port(netns, segment)
        addresses: set[Interface] = {segment.gateway}
        if segment.gateway6 is not None:
            addresses.add(segment.gateway6)
        self._finish(netns, bridge, mac=self.desired.gateway_mac, addresses=addresses)

    def _vlan_port(self, netns: str, segment: Segment) -> None:
        """The seam for VLAN hand-off. Production hosts attach `<trunk>.<vlan>` (an 802.1Q
        sub-interface of the trunk, made in the SoftGate's namespace and moved in like a
        VXLAN device) to the `vxl<vlan>` bridge. This kernel has no 802.1Q (lab FINDINGS
        §0), so here a VLAN segment is its bridge alone and `vlan_trunk` stays None; a
        trunk set without the port code is refused rather than silently ignored."""
        if self.vlan_trunk is not None:
            raise LinkError(f"{netns}: VLAN port {self.vlan_trunk}.{segment.vlan} for "
                            f"{segment.bridge}: 802.1Q ports are not implemented")

    def _bridge(self, netns: str, links: dict[str, Link], name: str, mac: str | None
                ) -> Link:
        """A new bridge is made with its MAC (when it has one to have) and up, by one
        request; _finish then gives it its addresses."""
        link = links.get(name)
        if link is None:
            self._do(f"{netns}: add bridge {name}" + (f" address {mac}" if mac else "") + " up",
                     lambda: self.ipr.add_bridge(netns, name, mac=mac, up=True))
            self.unseen.setdefault(netns, []).append(name)
            link = links[name] = _made(name, "bridge", mac=mac or "", up=True)
        elif link.mcast_snooping:
            self._do(f"{netns}: set bridge {name} mcast_snooping 0",
                     lambda: self.ipr.set_bridge(netns, name, mcast_snooping=False))
        return link

    def _vxlan(self, netns: str, links: dict[str, Link], name: str, spec: Vxlan,
               bridge: str, *, suppress: bool) -> None:
        """Made from the SoftGate's namespace into the domain's (its UDP socket stays in
        the SoftGate's) with its MTU and master; then the port flags (EVPN fills the FDB:
        no learning; ARP/ND suppression on L2VNIs only), and up with them or after."""
        link = links.get(name)
        if link is None:
            self._do(f"{netns}: add vxlan {name} (VNI {spec.vni}, local {spec.local}) "
                     f"master {bridge}",
                     lambda: self.ipr.add_vxlan(name, spec, netns, master=bridge))
            self.unseen.setdefault(netns, []).append(name)
            link = _made(name, "vxlan", vxlan=spec, master=bridge)
        moved = link.master != bridge
        mtu = VXLAN_MTU if link.mtu != VXLAN_MTU else None
        if moved or mtu is not None:
            self._do(f"{netns}: set {name}" + (f" mtu {mtu}" if mtu else "")
                     + (f" master {bridge}" if moved else ""),
                     lambda: self.ipr.set_link(netns, name, mtu=mtu,
                                               master=bridge if moved else None))
        up = None if link.up else True
        if moved or link.learning is not False or link.neigh_suppress is not suppress:
            self._do(f"{netns}: set bridge port {name} learning off neigh_suppress "
                     f"{'on' if suppress else 'off'}" + (" up" if up else ""),
                     lambda: self.ipr.set_port(netns, name, learning=False,
                                               neigh_suppress=suppress, up=up))
        elif up:
            self._do(f"{netns}: set {name} up", lambda: self.ipr.set_link(netns, name, up=True))
        links[name] = link

    def _finish(self, netns: str | None, link: Link, *, addresses: set[Interface],
                mac: str | None = None) -> None:
        """MAC, exactly these addresses (the kernel's own IPv6 link-local ones aside),
        then up. Addresses go onto a new link only once the routing daemon knows it."""
        name = link.name
        if mac is not None and link.mac != mac:
            self._do(f"{where(netns)}: set {name} address {mac}",
                     lambda: self.ipr.set_link(netns, name, mac=mac))
        if addresses - link.addresses and name in self.unseen.get(netns, ()):
            self.routing.await_links(netns, self.unseen.pop(netns))
        for address in _sorted(addresses - link.addresses):
            self._do(f"{where(netns)}: add address {address} to {name}",
                     partial(self.ipr.add_address, netns, name, address))
        for address in _sorted(link.addresses - addresses):
            if not (address.version == 6 and address.ip.is_link_local):
                self._do(f"{where(netns)}: delete address {address} from {name}",
                         partial(self.ipr.delete_address, netns, name, address))
        if not link.up:
            self._do(f"{where(netns)}: set {name} up",
                     lambda: self.ipr.set_link(netns, name, up=True))


def _made(name: str, kind: str, *, vxlan: Vxlan | None = None, master: str | None = None,
          mac: str = "", up: bool = False) -> Link:
    """A link as the kernel has it right after we made it (not read back: a dump per
    new link was a third of a domain's build time): down unless made up, the MAC and
    master it was made with, a new bridge port's flags (learning, no suppression), no
    address (our veths have IPv6 address generation off; the kernel's own link-local
    ones are ignored), MTU 1500, the VXLAN parameters asked for."""
    port = master is not None
    return Link(name, 0, kind, up, VXLAN_MTU, mac, master=master, vxlan=vxlan,
                learning=True if port else None, neigh_suppress=False if port else None,
                mcast_snooping=False if kind == "bridge" else None)


def _as_wanted(link: Link, want: _Want | None) -> bool:
    """Whether an existing link of ours can stay (and be fixed in place if need be)."""
    return want is not None and link.kind == want.kind and (
        want.vxlan is None or link.vxlan == want.vxlan)


def _domain_root_routes(domain: Domain) -> list[Route]:
    """The domain's public IPs and routed prefixes, via the uplink into the domain."""
    dev = domain.uplink.root
    return ([Route(net, DOMAIN_V4.ip, dev) for net in domain.routes]
            + [Route(net, DOMAIN_V6.ip, dev) for net in domain.routes6])


def _sorted(addresses: Iterable[Interface]) -> list[Interface]:
    return sorted(addresses, key=lambda a: (a.version, int(a.ip), a.network.prefixlen))
