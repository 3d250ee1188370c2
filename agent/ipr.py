"""The one module that talks to the kernel's rtnetlink: links, addresses, routes,
namespaces, sysctls (the messages, pyroute2's, and the socket loop are agent.ipr_netlink's).

`IprApi` is what the links applier uses; `Ipr` implements it on the kernel and
agent.ipr_fake.FakeIpr in memory. `netns=None` is the agent's own namespace (the
SoftGate's). Every failure is a LinkError whose text is one line: what was done, where,
and the kernel's reason ("vxr5: add bridge vxb7: File exists"). Calls are idempotent:
adding what is there already as asked, or deleting what is gone, is no error; adding
over something different (a veth where a bridge is wanted, a route of someone else's)
is.

Handles (agent.ipr_handles): a netlink socket per namespace, a small LRU of them open.
An open socket keeps its namespace, and the VXLAN devices in it, alive: a handle is
closed before we delete its namespace, when list_netns no longer shows the name, and
when the name now stands for another namespace.

Link indexes (addresses, routes and masters name links by index) are remembered per
namespace, from its last links(), from the kernel's echo of a bridge or veth we made
(kernels that echo RTM_NEWLINK; others give the ack alone) and from lookups: the
applier lists a namespace's links before it changes anything there. A request naming a
remembered index the kernel no longer knows is made once more with a fresh one.

Routes: ours carry routing protocol PROTO and only those are listed, replaced or
deleted, so nobody else's routes (FRR's, an operator's) are ever touched.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

from agent import ipr_netlink as nl
from agent import netns as namespaces
from agent.ipr_handles import Handle, Handles
from agent.ipr_netlink import NetlinkError

# Our routing protocol number. Not 196 (FRR's staticd, which zebra sweeps at start)
# nor anything else iproute2, the kernel or FRR name (rt_protos, rt_protos.d/frr.conf).
PROTO: Final = 250
MAIN_TABLE: Final = 254
VXLAN_PORT: Final = 4789
MAX_HANDLES: Final = 32
# Links about to be deleted together are put in this group first: `ip link del group`
# unregisters them in one batch, one set of RCU grace periods (~30 ms here) for all
# instead of one per link.
DOOMED_GROUP: Final = 0x7678

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class LinkError(RuntimeError):
    """A netlink request, namespace or sysctl operation failed; `str()` is one line,
    `code` the errno when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Vxlan:
    """What a VXLAN device is made of; the kernel cannot change these in place."""

    vni: int
    local: str
    port: int = VXLAN_PORT
    learning: bool = False
    ttl: int = 64


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    kind: str  # "veth", "bridge", "vxlan", ... ("" for lo)
    up: bool  # administratively (IFF_UP), not carrier
    mtu: int
    mac: str
    master: str | None = None
    peer: int | None = None  # a veth's peer index (in the peer's namespace)
    vxlan: Vxlan | None = None
    learning: bool | None = None  # bridge port flags, None when not enslaved
    neigh_suppress: bool | None = None
    mcast_snooping: bool | None = None  # bridges only
    addresses: frozenset[Interface] = frozenset()


@dataclass(frozen=True)
class Route:
    """A unicast route (gateway and dev) or, with neither, a blackhole; table main."""

    dst: Network
    gateway: Address | None = None
    dev: str | None = None

    @property
    def blackhole(self) -> bool:
        return self.gateway is None and self.dev is None


class IprApi(Protocol):
    def list_netns(self) -> list[str]: ...
    def create_netns(self, name: str) -> None: ...
    def delete_netns(self, name: str) -> None: ...
    def links(self, netns: str | None) -> dict[str, Link]: ...
    def link(self, netns: str | None, name: str) -> Link | None: ...
    def routes(self, netns: str | None) -> list[Route]: ...
    def sysctls(self, netns: str | None, names: list[str]) -> dict[str, str | None]: ...
    def set_sysctls(self, netns: str | None, values: dict[str, str]) -> None: ...
    def add_veth(self, name: str, netns: str | None, peer: str, peer_netns: str | None
                 ) -> None: ...
    def add_bridge(self, netns: str | None, name: str, *, mac: str | None = None,
                   up: bool = False) -> None: ...
    def add_vxlan(self, name: str, spec: Vxlan, into: str | None, *,
                  master: str | None = None) -> None: ...
    def set_link(self, netns: str | None, name: str, *, up: bool | None = None,
                 mtu: int | None = None, mac: str | None = None,
                 master: str | None = None) -> None: ...
    def set_bridge(self, netns: str | None, name: str, *, mcast_snooping: bool) -> None: ...
    def set_port(self, netns: str | None, name: str, *, learning: bool,
                 neigh_suppress: bool, up: bool | None = None) -> None: ...
    def release(self, netns: str | None, name: str) -> None: ...
    def delete_link(self, netns: str | None, name: str) -> None: ...
    def delete_links(self, netns: str | None, names: list[str]) -> None: ...
    def add_address(self, netns: str | None, name: str, address: Interface) -> None: ...
    def delete_address(self, netns: str | None, name: str, address: Interface) -> None: ...
    def add_route(self, netns: str | None, route: Route, *, replace: bool = False
                  ) -> None: ...
    def delete_route(self, netns: str | None, route: Route) -> None: ...
    def close(self) -> None: ...


def where(netns: str | None) -> str:
    return netns or "softgate"


class failing:  # lower case: used as a function, `with failing("what was done"):`
    """The kernel's and the system's exceptions as one-line LinkErrors: the errno's
    text, and the kernel's own words when it gave some ("File exists (A VXLAN device
    with the specified VNI already exists)"). A class, not a generator: entered for
    every request, and a generator context costs several times as much."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, trace: object) -> None:
        what = self.what
        if isinstance(exc, LinkError):
            raise LinkError(f"{what}: {exc}", exc.code) from None
        if isinstance(exc, NetlinkError):
            reason = os.strerror(exc.code) + (f" ({exc.detail})" if exc.detail else "")
            raise LinkError(f"{what}: {reason}", exc.code) from None
        if isinstance(exc, OSError):
            raise LinkError(f"{what}: {exc.strerror or exc}", exc.errno) from None
        if isinstance(exc, (ValueError, KeyError, TypeError)):
            raise LinkError(f"{what}: {exc!r}") from None


class unless:  # lower case: used as a function
    """Idempotence: a LinkError with errno `code` is no error when `done()` says the
    wanted state is already there (EEXIST for an add, ENODEV/ESRCH/... for a delete)."""

    def __init__(self, code: int, done: Callable[[], bool]) -> None:
        self.code = code
        self.done = done

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, trace: object) -> bool:
        return isinstance(exc, LinkError) and exc.code == self.code and self.done()


class Ipr:
    """IprApi on the kernel. Not thread-safe: one applier thread uses it."""

    def __init__(self, max_handles: int = MAX_HANDLES) -> None:
        self._handles = Handles(max_handles)

    def __enter__(self) -> Ipr:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- handles and namespaces ------------------------------------------------------

    def _handle(self, netns: str | None) -> Handle:
        with failing(f"{where(netns)}: open netlink"):
            return self._handles.get(netns)

    def _nl(self, netns: str | None) -> nl.Socket:
        return self._handle(netns).socket()

    def close(self) -> None:
        self._handles.close()

    def list_netns(self) -> list[str]:
        """Also drops handles of namespaces whose name is gone, so they do not keep
        those namespaces alive."""
        with failing("list namespaces"):
            found = namespaces.names()
        for netns in self._handles.known():
            if netns is not None and netns not in found:
                self._handles.forget(netns)
        return found

    def create_netns(self, name: str) -> None:
        """There already is fine."""
        self._handles.forget(name)
        with unless(errno.EEXIST, lambda: name in namespaces.names()), \
                failing(f"create namespace {name}"):
            namespaces.create(name)

    def delete_netns(self, name: str) -> None:
        """Gone already is fine."""
        self._handles.forget(name)
        with unless(errno.ENOENT, lambda: True), failing(f"delete namespace {name}"):
            namespaces.remove(name)

    # --- link indexes ----------------------------------------------------------------

    @staticmethod
    def _index(handle: Handle, name: str) -> int:
        if name not in handle.indexes:
            try:
                answer = handle.socket().get(nl.RTM_GETLINK, nl.link_get(name=name))
            except NetlinkError as exc:
                if exc.code == errno.ENODEV:
                    raise LinkError(f"no link {name}", errno.ENODEV) from None
                raise
            handle.indexes[name] = nl.link_indexes(answer)[0]
        return handle.indexes[name]

    def _on(self, handle: Handle, name: str, request: Callable[[int], object],
            stale: tuple[int, ...] = (errno.ENODEV,)) -> None:
        """`request` with the index of link `name` (in `handle`'s namespace); once more
        with a fresh one when it fails as a remembered index would (the link made again
        behind our back)."""
        remembered = handle.indexes.get(name)
        try:
            request(self._index(handle, name))
        except NetlinkError as exc:
            if exc.code not in stale or remembered is None:
                raise
            del handle.indexes[name]
            if self._index(handle, name) == remembered:
                raise
            request(self._index(handle, name))

    # --- observation -----------------------------------------------------------------

    def links(self, netns: str | None) -> dict[str, Link]:
        handle = self._handle(netns)
        with failing(f"{where(netns)}: list links"):
            answers = nl.all_links(handle.socket())
            addresses = nl.addresses(handle.socket().dump(nl.RTM_GETADDR, nl.addr_dump()))
        handle.indexes = {answer.name: answer.ifindex for answer in answers}
        names = {answer.ifindex: answer.name for answer in answers}
        return {answer.name: _link(answer, names, addresses.get(answer.ifindex, ()))
                for answer in answers}

    def link(self, netns: str | None, name: str) -> Link | None:
        handle = self._handle(netns)
        sock = handle.socket()
        with failing(f"{where(netns)}: get link {name}"):
            try:
                answer = nl.link_answer(sock.get(nl.RTM_GETLINK, nl.link_get(name=name)))
            except NetlinkError as exc:
                if exc.code == errno.ENODEV:
                    return None
                raise
            names: dict[int, str] = {}
            if answer.master:
                names[answer.master] = nl.link_answer(sock.get(
                    nl.RTM_GETLINK, nl.link_get(index=answer.master))).name
            addresses = nl.addresses(sock.dump(nl.RTM_GETADDR, nl.addr_dump(answer.ifindex)))
        handle.indexes[name] = answer.ifindex
        return _link(answer, names, addresses.get(answer.ifindex, ()))

    def routes(self, netns: str | None) -> list[Route]:
        """Ours (PROTO) in table main; device names from the last links() of `netns`
        unless a route names an index that was not there."""
        handle = self._handle(netns)
        sock = handle.socket()
        with failing(f"{where(netns)}: list routes"):
            answers = [answer for family in (socket.AF_INET, socket.AF_INET6)
                       for answer in map(nl.route_answer, sock.dump(
                           nl.RTM_GETROUTE, nl.route_dump(family, PROTO)))
                       if answer.protocol == PROTO and answer.table == MAIN_TABLE]
            names = {index: name for name, index in handle.indexes.items()}
            if any(answer.oif not in names for answer in answers if answer.oif):
                found = nl.all_links(sock)
                handle.indexes = {link.name: link.ifindex for link in found}
                names = {link.ifindex: link.name for link in found}
        return [_route(answer, names) for answer in answers]

    # --- sysctls ---------------------------------------------------------------------

    def sysctls(self, netns: str | None, names: list[str]) -> dict[str, str | None]:
        """Current values; None for a sysctl this kernel does not have."""
        values: dict[str, str | None] = {}
        with failing(f"{where(netns)}: read sysctls"), namespaces.entered(netns):
            for name in names:
                try:
                    with open(_sysctl_path(name)) as file:
                        values[name] = file.read().strip()
                except FileNotFoundError:
                    values[name] = None
        return values

    def set_sysctls(self, netns: str | None, values: dict[str, str]) -> None:
        """In order, all from one visit to the namespace; the first that fails stops."""
        with namespaces.entered(netns):
            for name, value in values.items():
                with failing(f"{where(netns)}: sysctl {name}={value}"), \
                        open(_sysctl_path(name), "w") as file:
                    file.write(value)

    # --- links -----------------------------------------------------------------------

    def add_veth(self, name: str, netns: str | None, peer: str, peer_netns: str | None
                 ) -> None:
        """A veth pair with each end created in its namespace, IPv6 address generation
        off on both: their link-local addresses are ours (fe80::1, fe80::2)."""
        handle = self._handle(netns)
        echoed: list[bytes] = []  # none when the pair was there already
        with unless(errno.EEXIST, lambda: self._paired(netns, name, peer_netns, peer)), \
                failing(f"{where(netns)}: add veth {name} (peer {peer} in "
                        f"{where(peer_netns)})"), _netns_fd(peer_netns) as fd:
            echoed = handle.socket().ack(nl.RTM_NEWLINK, nl.CREATE, nl.veth(name, peer, fd),
                                         echo=True)
        for message in echoed:  # our end, and its peer's index (IFLA_LINK) with it
            handle.indexes[name], theirs = nl.link_indexes(message)
            if theirs:
                self._handle(peer_netns).indexes[peer] = theirs
        self._addrgenmode_none(netns, name)
        self._addrgenmode_none(peer_netns, peer)

    def _paired(self, netns: str | None, name: str, peer_netns: str | None, peer: str
                ) -> bool:
        mine, theirs = self.link(netns, name), self.link(peer_netns, peer)
        return (mine is not None and theirs is not None and mine.kind == theirs.kind == "veth"
                and mine.peer == theirs.index and theirs.peer == mine.index)

    def _addrgenmode_none(self, netns: str | None, name: str) -> None:
        with failing(f"{where(netns)}: set {name} addrgenmode none"):
            self._nl(netns).ack(nl.RTM_NEWLINK, 0, nl.addrgenmode_none(name))

    def add_bridge(self, netns: str | None, name: str, *, mac: str | None = None,
                   up: bool = False) -> None:
        """With its MAC and up in the same request, when asked: the MAC is there
        before the bridge is up (its IPv6 link-local address is made from it)."""
        handle = self._handle(netns)
        with unless(errno.EEXIST, lambda: self._is(netns, name, "bridge", mac=mac, up=up)), \
                failing(f"{where(netns)}: add bridge {name}"):
            _remember(handle, name, handle.socket().ack(
                nl.RTM_NEWLINK, nl.CREATE, nl.bridge(name, mac=mac, up=up), echo=True))

    def _is(self, netns: str | None, name: str, kind: str, vxlan: Vxlan | None = None, *,
            mac: str | None = None, up: bool = False, master: str | None = None) -> bool:
        """Whether link `name` is there as an add asked for it."""
        link = self.link(netns, name)
        return (link is not None and link.kind == kind and link.vxlan == vxlan
                and mac in (None, link.mac) and (link.up or not up)
                and master in (None, link.master))

    def add_vxlan(self, name: str, spec: Vxlan, into: str | None, *,
                  master: str | None = None) -> None:
        """Asked for from the agent's namespace with `into` as the link's namespace: the
        kernel binds the VXLAN socket where the request came from (`link-netnsid 0` in
        `into`), as creating it here and moving it would (lab FINDINGS §5), without the
        move's synchronize_net (0.6 ms instead of 20 ms here). Enslaved to bridge
        `master` (of `into`) by the same request when asked; down. EEXIST is also the
        answer when another device holds the VNI: then the error stands."""
        with unless(errno.EEXIST, lambda: self._is(into, name, "vxlan", spec, master=master)), \
                failing(f"{where(into)}: add vxlan {name} (VNI {spec.vni})"), \
                _netns_fd(into) as fd:
            def made(index: int | None) -> None:
                self._nl(None).ack(nl.RTM_NEWLINK, nl.CREATE, nl.vxlan(
                    name, vni=spec.vni, local=spec.local, port=spec.port,
                    learning=spec.learning, ttl=spec.ttl, mtu=1500, netns_fd=fd, master=index))

            if master is None:
                made(None)
            else:  # a master index unknown in `into` is EINVAL, and nothing is made
                self._on(self._handle(into), master, made, stale=(errno.ENODEV, errno.EINVAL))

    def set_link(self, netns: str | None, name: str, *, up: bool | None = None,
                 mtu: int | None = None, mac: str | None = None,
                 master: str | None = None) -> None:
        """One request; two when a link is both enslaved and brought up, so that it is
        never up outside its bridge (the kernel applies IFF_UP before the master)."""
        with failing(f"{where(netns)}: set {name} {_describe(up, mtu, mac, master)}"):
            handle = self._handle(netns)
            sock = handle.socket()
            if master is not None:
                self._on(handle, master, lambda index: sock.ack(
                    nl.RTM_NEWLINK, 0, nl.named(name, mtu=mtu, mac=mac, master=index)),
                    stale=(errno.ENODEV, errno.EINVAL))
                mtu = mac = None
            if mtu is not None or mac is not None or up is not None:
                sock.ack(nl.RTM_NEWLINK, 0, nl.named(name, up=up, mtu=mtu, mac=mac))

    def set_bridge(self, netns: str | None, name: str, *, mcast_snooping: bool) -> None:
        with failing(f"{where(netns)}: set bridge {name} mcast_snooping"):
            self._nl(netns).ack(nl.RTM_NEWLINK, 0, nl.bridge_options(
                name, mcast_snooping=mcast_snooping))

    def set_port(self, netns: str | None, name: str, *, learning: bool,
                 neigh_suppress: bool, up: bool | None = None) -> None:
        """Bridge port flags and, when asked, IFF_UP in one request: the kernel sets the
        port's flags first (no moment up with learning on)."""
        with failing(f"{where(netns)}: set bridge port {name}"):
            self._nl(netns).ack(nl.RTM_NEWLINK, 0, nl.bridge_port(
                name, learning=learning, neigh_suppress=neigh_suppress, up=up))

    def release(self, netns: str | None, name: str) -> None:
        """Take a link out of its bridge (`nomaster`); one in none is fine."""
        with failing(f"{where(netns)}: release {name} from its bridge"):
            self._nl(netns).ack(nl.RTM_NEWLINK, 0, nl.named(name, master=0))

    def delete_link(self, netns: str | None, name: str) -> None:
        """Gone already is fine."""
        handle = self._handle(netns)
        handle.indexes.pop(name, None)
        with unless(errno.ENODEV, lambda: True), failing(f"{where(netns)}: delete link {name}"):
            handle.socket().ack(nl.RTM_DELLINK, 0, nl.named(name))

    def delete_links(self, netns: str | None, names: list[str]) -> None:
        """Several links in one batch (see DOOMED_GROUP); one by one should anything
        else in the namespace be in that group. Those gone already are fine."""
        handle = self._handle(netns)
        sock = handle.socket()
        for name in names:
            handle.indexes.pop(name, None)
        with failing(f"{where(netns)}: delete links {' '.join(names)}"):
            present = {link.name for link in nl.all_links(sock)} & set(names)
            if len(present) > 1:
                for name in present:
                    sock.ack(nl.RTM_NEWLINK, 0, nl.named(name, group=DOOMED_GROUP))
                members = {link.name for link in nl.all_links(sock)
                           if link.group == DOOMED_GROUP}
                if members == present:
                    sock.ack(nl.RTM_DELLINK, 0, nl.group(DOOMED_GROUP))
                    return
        for name in sorted(present):
            self.delete_link(netns, name)

    # --- addresses and routes --------------------------------------------------------

    def add_address(self, netns: str | None, name: str, address: Interface) -> None:
        """There already is fine."""
        handle = self._handle(netns)
        flags, broadcast = 0, None
        if address.version == 6:
            flags = nl.IFA_F_NODAD  # usable at once: no tentative gateway address
        elif address.network.prefixlen < 31:
            broadcast = str(address.network.broadcast_address)  # `brd +`, as the VR has
        with unless(errno.EEXIST, lambda: True), \
                failing(f"{where(netns)}: add address {address} to {name}"):
            self._on(handle, name, lambda index: handle.socket().ack(
                nl.RTM_NEWADDR, nl.CREATE, nl.addr(index, str(address.ip),
                                                   address.network.prefixlen, flags=flags,
                                                   broadcast=broadcast)))

    def delete_address(self, netns: str | None, name: str, address: Interface) -> None:
        """Gone already is fine."""
        handle = self._handle(netns)
        with unless(errno.EADDRNOTAVAIL, lambda: True), \
                failing(f"{where(netns)}: delete address {address} from {name}"):
            self._on(handle, name, lambda index: handle.socket().ack(nl.RTM_DELADDR, 0, nl.addr(
                index, str(address.ip), address.network.prefixlen)))

    def add_route(self, netns: str | None, route: Route, *, replace: bool = False) -> None:
        """Ours there already is fine; a route of someone else's (or another of ours to
        the same prefix, when not replacing) is an error and stays as it is."""
        verb = "replace" if replace else "add"
        flags = nl.NLM_F_CREATE | (nl.NLM_F_REPLACE if replace else nl.NLM_F_EXCL)
        with unless(errno.EEXIST, lambda: route in self.routes(netns)), \
                failing(f"{where(netns)}: {verb} route {show_route(route)}"):
            self._route(netns, nl.RTM_NEWROUTE, flags, route, nl.RT_SCOPE_UNIVERSE)

    def delete_route(self, netns: str | None, route: Route) -> None:
        """Gone already (or its device gone, which takes it) is fine."""
        with unless(errno.ESRCH, lambda: True), unless(errno.ENODEV, lambda: True), \
                failing(f"{where(netns)}: delete route {show_route(route)}"):
            self._route(netns, nl.RTM_DELROUTE, 0, route, nl.RT_SCOPE_NOWHERE)

    def _route(self, netns: str | None, kind: int, flags: int, route: Route, scope: int
               ) -> None:
        handle = self._handle(netns)

        def request(oif: int | None) -> None:
            handle.socket().ack(kind, flags, nl.route(
                str(route.dst), protocol=PROTO, table=MAIN_TABLE, scope=scope,
                kind=nl.RTN_BLACKHOLE if route.blackhole else nl.RTN_UNICAST,
                gateway=None if route.gateway is None else str(route.gateway), oif=oif))

        if route.dev is None:
            request(None)
        else:
            self._on(handle, route.dev, request)


# --- helpers -------------------------------------------------------------------------


def _is_an_ipr_api(ipr: Ipr) -> IprApi:
    return ipr  # mypy checks here that Ipr has every method of the protocol


@contextlib.contextmanager
def _netns_fd(netns: str | None) -> Iterator[int]:
    """An open descriptor of a namespace, for IFLA_NET_NS_FD."""
    path = f"{namespaces.NETNS_DIR}/{netns}" if netns else "/proc/thread-self/ns/net"
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def _remember(handle: Handle, name: str, echoed: list[bytes]) -> None:
    """The index of link `name`, made by a request with echo, when the kernel told it:
    addresses, routes and ports name it next (a lookup of its own otherwise)."""
    for message in echoed:
        handle.indexes[name] = nl.link_indexes(message)[0]


def _sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def _describe(up: bool | None, mtu: int | None, mac: str | None, master: str | None) -> str:
    parts = [f"mtu {mtu}" if mtu is not None else "", f"address {mac}" if mac else "",
             f"master {master}" if master else "",
             ("up" if up else "down") if up is not None else ""]
    return " ".join(part for part in parts if part)


def show_route(route: Route) -> str:
    if route.blackhole:
        return f"blackhole {route.dst}"
    return f"{route.dst} via {route.gateway}" + (f" dev {route.dev}" if route.dev else "")


def _link(answer: nl.LinkAnswer, names: dict[int, str], addresses: Iterable[Interface]
          ) -> Link:
    return Link(
        name=answer.name, index=answer.ifindex, kind=answer.kind, up=answer.up, mtu=answer.mtu,
        mac=answer.mac, master=names.get(answer.master) if answer.master else None,
        peer=answer.link if answer.kind == "veth" else None,
        vxlan=Vxlan(*answer.vxlan) if answer.vxlan is not None else None,
        learning=answer.learning, neigh_suppress=answer.neigh_suppress,
        mcast_snooping=answer.mcast_snooping, addresses=frozenset(addresses))


def _route(answer: nl.RouteAnswer, names: dict[int, str]) -> Route:
    dst = ipaddress.ip_network(answer.dst)
    if answer.kind == nl.RTN_BLACKHOLE:
        return Route(dst)
    return Route(dst, ipaddress.ip_address(answer.gateway) if answer.gateway else None,
                 names.get(answer.oif) if answer.oif else None)
