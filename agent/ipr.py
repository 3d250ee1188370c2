"""The one module that imports pyroute2: links, addresses, routes, namespaces, sysctls.

`IprApi` is what the links applier uses; `Ipr` implements it with pyroute2 and
agent.ipr_fake.FakeIpr in memory. `netns=None` is the agent's own namespace (the
SoftGate's). Every failure is a LinkError whose text is one line: what was done, where,
and the kernel's reason ("vxr5: add bridge vxb7: File exists"). Calls are idempotent:
adding what is there already as asked, or deleting what is gone, is no error; adding
over something different (a veth where a bridge is wanted, a route of someone else's)
is.

Handles: pyroute2 0.9 opens a socket in a namespace by forking a helper that enters it
and passes the socket back (6-10 ms per handle here). Instead the calling thread enters
the namespace, opens the netlink socket and comes back (agent.netns), and IPRoute wraps
that socket: 0.7 ms including a first dump. Handles stay open per namespace in a small
LRU (each holds a socket and an event loop). An open socket keeps its namespace, and
the VXLAN devices in it, alive: a handle is closed before we delete its namespace, when
list_netns no longer shows the name, and when the name now stands for another namespace
(checked by inode on every use, for a namespace deleted and made again behind our back).

Routes: ours carry routing protocol PROTO and only those are listed, replaced or
deleted, so nobody else's routes (FRR's, an operator's) are ever touched.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from agent import netns as namespaces

# Our routing protocol number. Not 196 (FRR's staticd, which zebra sweeps at start)
# nor anything else iproute2, the kernel or FRR name (rt_protos, rt_protos.d/frr.conf).
PROTO: Final = 250
MAIN_TABLE: Final = 254
VXLAN_PORT: Final = 4789
IFF_UP: Final = 0x1
IFA_F_NODAD: Final = 0x02
RTN_UNICAST: Final = 1
RTN_BLACKHOLE: Final = 6
ADDRGENMODE_NONE: Final = 1
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
    def set_sysctl(self, netns: str | None, name: str, value: str) -> None: ...
    def add_veth(self, name: str, netns: str | None, peer: str, peer_netns: str | None
                 ) -> None: ...
    def add_bridge(self, netns: str | None, name: str) -> None: ...
    def add_vxlan(self, name: str, spec: Vxlan, into: str | None) -> None: ...
    def set_link(self, netns: str | None, name: str, *, up: bool | None = None,
                 mtu: int | None = None, mac: str | None = None,
                 master: str | None = None) -> None: ...
    def set_bridge(self, netns: str | None, name: str, *, mcast_snooping: bool) -> None: ...
    def set_port(self, netns: str | None, name: str, *, learning: bool,
                 neigh_suppress: bool) -> None: ...
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


@contextlib.contextmanager
def failing(what: str) -> Iterator[None]:
    """pyroute2's and the system's exceptions as one-line LinkErrors."""
    try:
        yield
    except LinkError as exc:
        raise LinkError(f"{what}: {exc}", exc.code) from None
    except NetlinkError as exc:
        reason = exc.args[1] if len(exc.args) > 1 and exc.args[1] else os.strerror(exc.code)
        raise LinkError(f"{what}: {' '.join(str(reason).split())}", exc.code) from None
    except OSError as exc:
        raise LinkError(f"{what}: {exc.strerror or exc}", exc.errno) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LinkError(f"{what}: {exc!r}") from None


@contextlib.contextmanager
def unless(code: int, done: Callable[[], bool]) -> Iterator[None]:
    """Idempotence: a LinkError with errno `code` is no error when `done()` says the
    wanted state is already there (EEXIST for an add, ENODEV/ESRCH/... for a delete)."""
    try:
        yield
    except LinkError as exc:
        if exc.code != code or not done():
            raise


class Ipr:
    """IprApi on pyroute2. Not thread-safe: one applier thread uses it."""

    def __init__(self, max_handles: int = MAX_HANDLES) -> None:
        self.max_handles = max_handles
        # netns -> (IPRoute, identity of the namespace it was opened in)
        self._handles: OrderedDict[str | None, tuple[Any, tuple[int, int]]] = OrderedDict()
        self._names: dict[str | None, dict[int, str]] = {}  # ifindex -> name, last seen

    def __enter__(self) -> Ipr:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- handles and namespaces ------------------------------------------------------

    def _ipr(self, netns: str | None) -> Any:
        """The handle for `netns`, reopened when the name now stands for another
        namespace (deleted and made again behind our back): a socket in the old one
        would keep it alive and quietly send every request there."""
        with failing(f"{where(netns)}: open netlink"):
            identity = _identity(netns)
            handle, opened = self._handles.pop(netns, (None, identity))
            if handle is not None and opened != identity:
                self._names.pop(netns, None)
                handle.close()
                handle = None
            if handle is None:
                handle = IPRoute() if netns is None else IPRoute(fileno=namespaces.socket_in(
                    netns, socket.AF_NETLINK, socket.SOCK_DGRAM).detach())
        while len(self._handles) >= self.max_handles:
            self._handles.popitem(last=False)[1][0].close()
        self._handles[netns] = (handle, identity)
        return handle

    def _forget(self, netns: str | None) -> None:
        self._names.pop(netns, None)
        handle, _ = self._handles.pop(netns, (None, None))
        if handle is not None:
            handle.close()

    def close(self) -> None:
        self._names.clear()
        while self._handles:
            self._handles.popitem()[1][0].close()

    def list_netns(self) -> list[str]:
        """Also drops handles of namespaces whose name is gone, so they do not keep
        those namespaces alive."""
        with failing("list namespaces"):
            found = namespaces.names()
        for netns in [name for name in self._handles if name is not None and name not in found]:
            self._forget(netns)
        return found

    def create_netns(self, name: str) -> None:
        """There already is fine."""
        self._forget(name)
        with unless(errno.EEXIST, lambda: name in namespaces.names()), \
                failing(f"create namespace {name}"):
            namespaces.create(name)

    def delete_netns(self, name: str) -> None:
        """Gone already is fine."""
        self._forget(name)
        with unless(errno.ENOENT, lambda: True), failing(f"delete namespace {name}"):
            namespaces.remove(name)

    # --- observation -----------------------------------------------------------------

    def links(self, netns: str | None) -> dict[str, Link]:
        ipr = self._ipr(netns)
        with failing(f"{where(netns)}: list links"):
            messages = ipr.link("dump")
            addresses = _addresses(ipr.addr("dump"))
        names = self._names[netns] = {msg["index"]: msg.get_attr("IFLA_IFNAME")
                                      for msg in messages}
        return {names[msg["index"]]: _link(msg, names, addresses.get(msg["index"], ()))
                for msg in messages}

    def link(self, netns: str | None, name: str) -> Link | None:
        ipr = self._ipr(netns)
        with failing(f"{where(netns)}: get link {name}"):
            try:
                (msg,) = ipr.link("get", ifname=name)
            except NetlinkError as exc:
                if exc.code == errno.ENODEV:
                    return None
                raise
            master = msg.get_attr("IFLA_MASTER")
            names = {master: ipr.link("get", index=master)[0].get_attr("IFLA_IFNAME")
                     } if master else {}
            addresses = _addresses(a for a in ipr.addr("dump") if a["index"] == msg["index"])
        return _link(msg, names, addresses.get(msg["index"], ()))

    def routes(self, netns: str | None) -> list[Route]:
        """Ours (PROTO) in table main; device names from the last links() of `netns`
        unless a route names an index that was not there."""
        ipr = self._ipr(netns)
        with failing(f"{where(netns)}: list routes"):
            messages = [msg for family in (socket.AF_INET, socket.AF_INET6)
                        for msg in ipr.route("dump", family=family)
                        if msg["proto"] == PROTO and _table(msg) == MAIN_TABLE]
            names = self._names.get(netns, {})
            if any(msg.get_attr("RTA_OIF") not in names for msg in messages
                   if msg.get_attr("RTA_OIF")):
                names = self._names[netns] = {msg["index"]: msg.get_attr("IFLA_IFNAME")
                                              for msg in ipr.link("dump")}
        return [_route(msg, names) for msg in messages]

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

    def set_sysctl(self, netns: str | None, name: str, value: str) -> None:
        with failing(f"{where(netns)}: sysctl {name}={value}"), namespaces.entered(netns), \
                open(_sysctl_path(name), "w") as file:
            file.write(value)

    # --- links -----------------------------------------------------------------------

    def add_veth(self, name: str, netns: str | None, peer: str, peer_netns: str | None
                 ) -> None:
        """A veth pair with each end created in its namespace, IPv6 address generation
        off on both: their link-local addresses are ours (fe80::1, fe80::2)."""
        ipr = self._ipr(netns)
        with unless(errno.EEXIST, lambda: self._paired(netns, name, peer_netns, peer)), \
                failing(f"{where(netns)}: add veth {name} (peer {peer} in "
                        f"{where(peer_netns)})"), _netns_fd(peer_netns) as fd:
            ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer, "net_ns_fd": fd})
        self._addrgenmode_none(netns, name)
        self._addrgenmode_none(peer_netns, peer)

    def _paired(self, netns: str | None, name: str, peer_netns: str | None, peer: str
                ) -> bool:
        mine, theirs = self.link(netns, name), self.link(peer_netns, peer)
        return (mine is not None and theirs is not None and mine.kind == theirs.kind == "veth"
                and mine.peer == theirs.index and theirs.peer == mine.index)

    def _addrgenmode_none(self, netns: str | None, name: str) -> None:
        spec = {"attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE",
                                                    ADDRGENMODE_NONE)]})]}
        with failing(f"{where(netns)}: set {name} addrgenmode none"):
            self._ipr(netns).link("set", ifname=name, IFLA_AF_SPEC=spec)

    def add_bridge(self, netns: str | None, name: str) -> None:
        with unless(errno.EEXIST, lambda: self._is(netns, name, "bridge")), \
                failing(f"{where(netns)}: add bridge {name}"):
            self._ipr(netns).link("add", ifname=name, kind="bridge", br_stp_state=0,
                                  br_mcast_snooping=0)

    def _is(self, netns: str | None, name: str, kind: str, vxlan: Vxlan | None = None
            ) -> bool:
        link = self.link(netns, name)
        return link is not None and link.kind == kind and link.vxlan == vxlan

    def add_vxlan(self, name: str, spec: Vxlan, into: str | None) -> None:
        """Asked for from the agent's namespace with `into` as the link's namespace: the
        kernel binds the VXLAN socket where the request came from (`link-netnsid 0` in
        `into`), as creating it here and moving it would (lab FINDINGS §5), without the
        move's synchronize_net (0.6 ms instead of 20 ms here). EEXIST is also the answer
        when another device holds the VNI: then the error stands."""
        with unless(errno.EEXIST, lambda: self._is(into, name, "vxlan", spec)), \
                failing(f"{where(into)}: add vxlan {name} (VNI {spec.vni})"), \
                _netns_fd(into) as fd:
            self._ipr(None).link(
                "add", ifname=name, kind="vxlan", vxlan_id=spec.vni, vxlan_local=spec.local,
                vxlan_port=spec.port, vxlan_learning=int(spec.learning), vxlan_ttl=spec.ttl,
                mtu=1500, net_ns_fd=fd)

    def set_link(self, netns: str | None, name: str, *, up: bool | None = None,
                 mtu: int | None = None, mac: str | None = None,
                 master: str | None = None) -> None:
        ipr = self._ipr(netns)
        changes: dict[str, Any] = {}
        if mtu is not None:
            changes["mtu"] = mtu
        if mac is not None:
            changes["address"] = mac
        with failing(f"{where(netns)}: set {name} {_describe(up, mtu, mac, master)}"):
            if master is not None:
                changes["master"] = self._index(ipr, master)
            if changes:
                ipr.link("set", ifname=name, **changes)
            if up is not None:
                ipr.link("set", ifname=name, state="up" if up else "down")

    def set_bridge(self, netns: str | None, name: str, *, mcast_snooping: bool) -> None:
        with failing(f"{where(netns)}: set bridge {name} mcast_snooping"):
            self._ipr(netns).link("set", ifname=name, kind="bridge",
                                  br_mcast_snooping=int(mcast_snooping))

    def set_port(self, netns: str | None, name: str, *, learning: bool,
                 neigh_suppress: bool) -> None:
        ipr = self._ipr(netns)
        with failing(f"{where(netns)}: set bridge port {name}"):
            ipr.brport("set", index=self._index(ipr, name), learning=int(learning),
                       neigh_suppress=int(neigh_suppress))

    def delete_link(self, netns: str | None, name: str) -> None:
        """Gone already is fine."""
        with unless(errno.ENODEV, lambda: True), failing(f"{where(netns)}: delete link {name}"):
            self._ipr(netns).link("del", ifname=name)

    def delete_links(self, netns: str | None, names: list[str]) -> None:
        """Several links in one batch (see DOOMED_GROUP); one by one should anything
        else in the namespace be in that group. Those gone already are fine."""
        ipr = self._ipr(netns)
        with failing(f"{where(netns)}: delete links {' '.join(names)}"):
            present = {msg.get_attr("IFLA_IFNAME") for msg in ipr.link("dump")} & set(names)
            if len(present) > 1:
                for name in present:
                    ipr.link("set", ifname=name, group=DOOMED_GROUP)
                members = {msg.get_attr("IFLA_IFNAME") for msg in ipr.link("dump")
                           if msg.get_attr("IFLA_GROUP") == DOOMED_GROUP}
                if members == present:
                    ipr.link("del", group=DOOMED_GROUP)
                    return
        for name in sorted(present):
            self.delete_link(netns, name)

    # --- addresses and routes --------------------------------------------------------

    def add_address(self, netns: str | None, name: str, address: Interface) -> None:
        """There already is fine."""
        ipr = self._ipr(netns)
        extra: dict[str, Any] = {}
        if address.version == 6:
            extra["flags"] = IFA_F_NODAD  # usable at once: no tentative gateway address
        elif address.network.prefixlen < 31:
            extra["broadcast"] = True  # `brd +`, as the virtual router has it
        with unless(errno.EEXIST, lambda: True), \
                failing(f"{where(netns)}: add address {address} to {name}"):
            ipr.addr("add", index=self._index(ipr, name), address=str(address.ip),
                     prefixlen=address.network.prefixlen, **extra)

    def delete_address(self, netns: str | None, name: str, address: Interface) -> None:
        """Gone already is fine."""
        ipr = self._ipr(netns)
        with unless(errno.EADDRNOTAVAIL, lambda: True), \
                failing(f"{where(netns)}: delete address {address} from {name}"):
            ipr.addr("del", index=self._index(ipr, name), address=str(address.ip),
                     prefixlen=address.network.prefixlen)

    def add_route(self, netns: str | None, route: Route, *, replace: bool = False) -> None:
        """Ours there already is fine; a route of someone else's (or another of ours to
        the same prefix, when not replacing) is an error and stays as it is."""
        ipr = self._ipr(netns)
        verb = "replace" if replace else "add"
        with unless(errno.EEXIST, lambda: route in self.routes(netns)), \
                failing(f"{where(netns)}: {verb} route {show_route(route)}"):
            ipr.route(verb, **self._route_spec(ipr, route))

    def delete_route(self, netns: str | None, route: Route) -> None:
        """Gone already (or its device gone, which takes it) is fine."""
        ipr = self._ipr(netns)
        with unless(errno.ESRCH, lambda: True), unless(errno.ENODEV, lambda: True), \
                failing(f"{where(netns)}: delete route {show_route(route)}"):
            ipr.route("del", **self._route_spec(ipr, route))

    def _route_spec(self, ipr: Any, route: Route) -> dict[str, Any]:
        spec: dict[str, Any] = {"dst": str(route.dst), "proto": PROTO, "table": MAIN_TABLE}
        if route.blackhole:
            spec["type"] = "blackhole"
            return spec
        spec["gateway"] = str(route.gateway)
        if route.dev is not None:
            spec["oif"] = self._index(ipr, route.dev)
        return spec

    @staticmethod
    def _index(ipr: Any, name: str) -> int:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise LinkError(f"no link {name}", errno.ENODEV)
        return int(found[0])


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


def _identity(netns: str | None) -> tuple[int, int]:
    path = f"{namespaces.NETNS_DIR}/{netns}" if netns else "/proc/thread-self/ns/net"
    info = os.stat(path)
    return info.st_dev, info.st_ino


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


def _nested(msg: Any, *names: str) -> Any:
    for name in names:
        if msg is None:
            return None
        msg = msg.get_attr(name)
    return msg


def _table(msg: Any) -> int:
    return int(msg.get_attr("RTA_TABLE") or msg["table"])


def _addresses(messages: Any) -> dict[int, list[Interface]]:
    found: dict[int, list[Interface]] = {}
    for msg in messages:
        # IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point.
        text = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        found.setdefault(msg["index"], []).append(
            ipaddress.ip_interface(f"{text}/{msg['prefixlen']}"))
    return found


def _link(msg: Any, names: dict[int, str], addresses: Any) -> Link:
    kind = _nested(msg, "IFLA_LINKINFO", "IFLA_INFO_KIND") or ""
    data = _nested(msg, "IFLA_LINKINFO", "IFLA_INFO_DATA")
    port = _nested(msg, "IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA")
    master = msg.get_attr("IFLA_MASTER")
    return Link(
        name=msg.get_attr("IFLA_IFNAME"), index=msg["index"], kind=kind,
        up=bool(msg["flags"] & IFF_UP), mtu=msg.get_attr("IFLA_MTU"),
        mac=(msg.get_attr("IFLA_ADDRESS") or "").lower(),
        master=names.get(master) if master else None,
        peer=msg.get_attr("IFLA_LINK") if kind == "veth" else None,
        vxlan=_vxlan(data) if kind == "vxlan" and data is not None else None,
        learning=_flag(port, "IFLA_BRPORT_LEARNING"),
        neigh_suppress=_flag(port, "IFLA_BRPORT_NEIGH_SUPPRESS"),
        mcast_snooping=_flag(data, "IFLA_BR_MCAST_SNOOPING") if kind == "bridge" else None,
        addresses=frozenset(addresses))


def _flag(nla: Any, name: str) -> bool | None:
    value = None if nla is None else nla.get_attr(name)
    return None if value is None else bool(value)


def _vxlan(data: Any) -> Vxlan:
    return Vxlan(vni=data.get_attr("IFLA_VXLAN_ID"),
                 local=data.get_attr("IFLA_VXLAN_LOCAL") or data.get_attr("IFLA_VXLAN_LOCAL6")
                 or "", port=data.get_attr("IFLA_VXLAN_PORT"),
                 learning=bool(data.get_attr("IFLA_VXLAN_LEARNING")),
                 ttl=data.get_attr("IFLA_VXLAN_TTL"))


def _route(msg: Any, names: dict[int, str]) -> Route:
    family = "::" if msg["family"] == socket.AF_INET6 else "0.0.0.0"
    dst = ipaddress.ip_network(f"{msg.get_attr('RTA_DST') or family}/{msg['dst_len']}")
    if msg["type"] == RTN_BLACKHOLE:
        return Route(dst)
    gateway = msg.get_attr("RTA_GATEWAY")
    oif = msg.get_attr("RTA_OIF")
    return Route(dst, ipaddress.ip_address(gateway) if gateway else None,
                 names.get(oif) if oif else None)
