"""FakeIpr: agent.ipr's IprApi in memory, for unit tests of the links applier.

It keeps namespaces (None is the agent's own, always there), their links with addresses
and bridge-port flags, routes (ours, and foreign ones a test adds), and sysctls with a
new namespace's kernel defaults. Like agent.ipr it is idempotent (adding what is
there as asked, deleting what is gone: no error), and it refuses what the kernel
refuses: a name taken by another kind of link, a too long name, a missing namespace or
link, a master that is not a bridge, a second VXLAN device with the same VNI on the
agent's UDP socket, a route to a prefix someone else routes, a unicast route over a down
link or to a gateway not on it. It also does what the
kernel does on its own: deleting a veth end deletes its peer, deleting a link drops its
routes and frees its ports, deleting a namespace deletes its links.

`calls` records every change (not observations): an apply that finds everything right
must leave it empty. `fail_when` makes any change whose description contains one of its
strings fail, to play a kernel that refuses one object.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Final

from agent.ipr import (
    PROTO,
    Interface,
    IprApi,
    Link,
    LinkError,
    Route,
    Vxlan,
    show_route,
    where,
)

_IFNAME_RE: Final = re.compile(r"[^/\s:]{1,15}")
DEFAULT_SYSCTLS: Final = {
    "net.ipv4.ip_forward": "0",
    "net.ipv6.conf.all.forwarding": "0",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.bridge.bridge-nf-call-arptables": "1",
    "net.netfilter.nf_conntrack_tcp_be_liberal": "0",
}


def _fail(code: int, what: str) -> LinkError:
    return LinkError(f"{what}: {os.strerror(code)}")


@dataclass
class FakeNamespace:
    links: dict[str, Link] = field(default_factory=dict)
    routes: list[tuple[Route, int]] = field(default_factory=list)  # (route, proto)
    sysctls: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SYSCTLS))
    next_index: int = 2  # 1 is lo


@dataclass
class FakeIpr:
    namespaces: dict[str | None, FakeNamespace] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail_when: list[str] = field(default_factory=list)
    underlay: dict[int, str] = field(default_factory=dict)  # VNI -> VXLAN device name
    peers: dict[tuple[str | None, str], tuple[str | None, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if None not in self.namespaces:
            self.namespaces[None] = self._fresh()

    @staticmethod
    def _fresh() -> FakeNamespace:
        space = FakeNamespace()
        space.links["lo"] = Link("lo", 1, "", False, 65536, "00:00:00:00:00:00")
        return space

    def _change(self, what: str) -> None:
        self.calls.append(what)
        for marker in self.fail_when:
            if marker in what:
                raise LinkError(f"{what}: Operation not permitted (injected)")

    def _ns(self, netns: str | None, what: str) -> FakeNamespace:
        if netns not in self.namespaces:
            raise _fail(errno.ENOENT, what)
        return self.namespaces[netns]

    def _link(self, netns: str | None, name: str, what: str) -> Link:
        link = self._ns(netns, what).links.get(name)
        if link is None:
            raise _fail(errno.ENODEV, what)
        return link

    def _put(self, netns: str | None, link: Link) -> None:
        self.namespaces[netns].links[link.name] = link

    # --- namespaces ------------------------------------------------------------------

    def list_netns(self) -> list[str]:
        return sorted(name for name in self.namespaces if name is not None)

    def create_netns(self, name: str) -> None:
        self._change(f"create namespace {name}")
        if name not in self.namespaces:
            self.namespaces[name] = self._fresh()

    def delete_netns(self, name: str) -> None:
        self._change(f"delete namespace {name}")
        space = self.namespaces.get(name)
        if space is None:
            return
        for link in list(space.links):
            self._remove_link(name, link)
        del self.namespaces[name]

    # --- observation -----------------------------------------------------------------

    def links(self, netns: str | None) -> dict[str, Link]:
        return dict(self._ns(netns, f"{where(netns)}: list links").links)

    def link(self, netns: str | None, name: str) -> Link | None:
        return self.links(netns).get(name)

    def routes(self, netns: str | None) -> list[Route]:
        space = self._ns(netns, f"{where(netns)}: list routes")
        return [route for route, proto in space.routes if proto == PROTO]

    def sysctls(self, netns: str | None, names: list[str]) -> dict[str, str | None]:
        values = self._ns(netns, f"{where(netns)}: read sysctls").sysctls
        return {name: values.get(name) for name in names}

    def set_sysctls(self, netns: str | None, values: dict[str, str]) -> None:
        for name, value in values.items():
            what = f"{where(netns)}: sysctl {name}={value}"
            self._change(what)
            current = self._ns(netns, what).sysctls
            if name not in current:
                raise _fail(errno.ENOENT, what)
            current[name] = value

    # --- links -----------------------------------------------------------------------

    def _new(self, netns: str | None, name: str, kind: str, what: str, **extra: Any
             ) -> Link:
        space = self._ns(netns, what)
        if not _IFNAME_RE.fullmatch(name):
            raise _fail(errno.ERANGE if len(name) > 15 else errno.EINVAL, what)
        if name in space.links:
            raise _fail(errno.EEXIST, what)
        index = space.next_index
        space.next_index += 1
        mac = f"02:fa:{index >> 8 & 0xff:02x}:{index & 0xff:02x}:{len(self.namespaces):02x}:01"
        link = replace(Link(name, index, kind, False, 1500, mac), **extra)
        space.links[name] = link
        return link

    def add_veth(self, name: str, netns: str | None, peer: str, peer_netns: str | None
                 ) -> None:
        what = f"{where(netns)}: add veth {name} (peer {peer} in {where(peer_netns)})"
        self._change(what)
        self._ns(peer_netns, what)
        if self.peers.get((netns, name)) == (peer_netns, peer):
            return
        if peer in self.namespaces[peer_netns].links:
            raise _fail(errno.EEXIST, what)
        mine = self._new(netns, name, "veth", what)
        theirs = self._new(peer_netns, peer, "veth", what, peer=mine.index)
        self._put(netns, replace(mine, peer=theirs.index))
        self.peers[(netns, name)] = (peer_netns, peer)
        self.peers[(peer_netns, peer)] = (netns, name)

    def add_bridge(self, netns: str | None, name: str, *, mac: str | None = None,
                   up: bool = False) -> None:
        what = f"{where(netns)}: add bridge {name} mac={mac} up={up}"
        self._change(what)
        existing = self._ns(netns, what).links.get(name)
        if existing is not None and existing.kind == "bridge" and mac in (
                None, existing.mac) and (existing.up or not up):
            return
        bridge = self._new(netns, name, "bridge", what, mcast_snooping=False)
        self._put(netns, self._upped(replace(bridge, mac=mac or bridge.mac, up=up)))

    def add_vxlan(self, name: str, spec: Vxlan, into: str | None, *,
                  master: str | None = None) -> None:
        what = f"softgate: add vxlan {name} (VNI {spec.vni}) into {where(into)} master={master}"
        self._change(what)
        existing = self._ns(into, what).links.get(name)
        if existing is not None and existing.kind == "vxlan" and existing.vxlan == spec \
                and master in (None, existing.master):
            return
        if spec.vni in self.underlay or existing is not None:
            raise _fail(errno.EEXIST, what)
        if master is not None:
            self._bridge_of(into, master, what)
        port = master is not None  # a new bridge port learns and does not suppress
        self._new(into, name, "vxlan", what, vxlan=spec, master=master,
                  learning=True if port else None, neigh_suppress=False if port else None)
        self.underlay[spec.vni] = name

    def _bridge_of(self, netns: str | None, name: str, what: str) -> Link:
        """A master must be a bridge of the same namespace (EINVAL from the kernel)."""
        bridge = self._ns(netns, what).links.get(name)
        if bridge is None or bridge.kind != "bridge":
            raise _fail(errno.EINVAL, what)
        return bridge

    def set_link(self, netns: str | None, name: str, *, up: bool | None = None,
                 mtu: int | None = None, mac: str | None = None,
                 master: str | None = None) -> None:
        what = f"{where(netns)}: set {name} up={up} mtu={mtu} mac={mac} master={master}"
        self._change(what)
        link = self._link(netns, name, what)
        if master is not None:
            self._bridge_of(netns, master, what)
            if link.kind == "bridge":
                raise _fail(errno.EINVAL, what)
            link = replace(link, master=master, learning=True, neigh_suppress=False)
        link = replace(link, mtu=mtu or link.mtu, mac=mac or link.mac,
                       up=link.up if up is None else up)
        self._put(netns, self._upped(link))

    @staticmethod
    def _upped(link: Link) -> Link:
        """What the kernel adds to a bridge or VXLAN device that is up: its own EUI-64
        link-local address, which the applier must ignore."""
        if link.up and link.kind in ("bridge", "vxlan") and not _has_link_local(link):
            auto = ipaddress.ip_interface(f"fe80::ff:fe00:{link.index:x}/64")
            link = replace(link, addresses=link.addresses | {auto})
        return link

    def set_bridge(self, netns: str | None, name: str, *, mcast_snooping: bool) -> None:
        what = f"{where(netns)}: set bridge {name} mcast_snooping={mcast_snooping}"
        self._change(what)
        link = self._link(netns, name, what)
        if link.kind != "bridge":
            raise _fail(errno.EOPNOTSUPP, what)
        self._put(netns, replace(link, mcast_snooping=mcast_snooping))

    def set_port(self, netns: str | None, name: str, *, learning: bool,
                 neigh_suppress: bool, up: bool | None = None) -> None:
        what = f"{where(netns)}: set bridge port {name} up={up}"
        self._change(what)
        link = self._link(netns, name, what)
        if link.master is None:
            raise _fail(errno.EOPNOTSUPP, what)
        self._put(netns, self._upped(replace(link, learning=learning,
                                             neigh_suppress=neigh_suppress,
                                             up=link.up if up is None else up)))

    def release(self, netns: str | None, name: str) -> None:
        what = f"{where(netns)}: release {name} from its bridge"
        self._change(what)
        link = self._link(netns, name, what)
        self._put(netns, replace(link, master=None, learning=None, neigh_suppress=None))

    def delete_link(self, netns: str | None, name: str) -> None:
        what = f"{where(netns)}: delete link {name}"
        self._change(what)
        if name in self._ns(netns, what).links:
            self._remove_link(netns, name)

    def delete_links(self, netns: str | None, names: list[str]) -> None:
        what = f"{where(netns)}: delete links {' '.join(names)}"
        self._change(what)
        space = self._ns(netns, what)
        for name in names:
            if name in space.links:  # a veth peer deleted earlier in the batch is gone
                self._remove_link(netns, name)

    def _remove_link(self, netns: str | None, name: str) -> None:
        space = self.namespaces[netns]
        link = space.links.pop(name)
        space.routes = [(r, p) for r, p in space.routes if r.dev != name]
        for other in list(space.links.values()):
            if other.master == name:
                space.links[other.name] = replace(other, master=None, learning=None,
                                                  neigh_suppress=None)
        if link.vxlan is not None:
            self.underlay.pop(link.vxlan.vni, None)
        peer = self.peers.pop((netns, name), None)
        if peer is not None:  # one veth end gone takes the other with it
            self.peers.pop(peer, None)
            self._remove_link(*peer)

    # --- addresses and routes --------------------------------------------------------

    def add_address(self, netns: str | None, name: str, address: Interface) -> None:
        what = f"{where(netns)}: add address {address} to {name}"
        self._change(what)
        link = self._link(netns, name, what)
        self._put(netns, replace(link, addresses=link.addresses | {address}))

    def delete_address(self, netns: str | None, name: str, address: Interface) -> None:
        what = f"{where(netns)}: delete address {address} from {name}"
        self._change(what)
        link = self._link(netns, name, what)
        self._put(netns, replace(link, addresses=link.addresses - {address}))

    def add_route(self, netns: str | None, route: Route, *, replace: bool = False) -> None:
        self.add_foreign_route(netns, route, PROTO, replace=replace)

    def add_foreign_route(self, netns: str | None, route: Route, proto: int = 4, *,
                          replace: bool = False) -> None:
        """A route with any protocol number (4: static, as `ip route add` makes)."""
        what = f"{where(netns)}: {'replace' if replace else 'add'} route {show_route(route)}"
        self._change(what)
        space = self._ns(netns, what)
        self._check_nexthop(netns, route, what)
        same = [(r, p) for r, p in space.routes if r.dst == route.dst]
        if same == [(route, proto)]:
            return
        if same and not replace:
            raise _fail(errno.EEXIST, what)
        space.routes = [(r, p) for r, p in space.routes if r.dst != route.dst]
        space.routes.append((route, proto))

    def _check_nexthop(self, netns: str | None, route: Route, what: str) -> None:
        if route.blackhole:
            return
        if route.dev is None or route.gateway is None:
            raise _fail(errno.EINVAL, what)
        link = self._link(netns, route.dev, what)
        on_link = route.gateway.is_link_local or any(
            route.gateway in address.network for address in link.addresses
            if address.version == route.gateway.version)
        if not link.up or not on_link:
            raise _fail(errno.ENETUNREACH, what)

    def delete_route(self, netns: str | None, route: Route) -> None:
        what = f"{where(netns)}: delete route {show_route(route)}"
        self._change(what)
        space = self._ns(netns, what)
        if (route, PROTO) in space.routes:
            space.routes.remove((route, PROTO))

    def close(self) -> None:
        pass

    # --- for tests -------------------------------------------------------------------

    def foreign_routes(self, netns: str | None) -> list[Route]:
        return [route for route, proto in self.namespaces[netns].routes if proto != PROTO]


def _is_an_ipr_api(fake: FakeIpr) -> IprApi:
    return fake  # mypy checks here that FakeIpr has every method of the protocol


def _has_link_local(link: Link) -> bool:
    return any(a.version == 6 and a.ip.is_link_local for a in link.addresses)
