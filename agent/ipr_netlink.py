"""rtnetlink for agent.ipr: pyroute2's message classes on a socket loop of our own.

Every request is one of pyroute2's messages (ifinfmsg, ifaddrmsg, rtmsg), encoded by
pyroute2, and every answer is decoded by pyroute2's classes. Why not pyroute2's IPRoute
around them: it spent 0.4-0.65 ms of Python on every request (pyroute2 0.9's asyncio
core, request filters) where the kernel needs 20-60 us. The kernel handles an rtnetlink
request inside sendmsg(), so here a request is one send() and one recv() of an answer
that is already queued; nothing is gained by an event loop. bench.links 100 x 1 from
empty (no change): IPRoute 1.69 s (0.71 s); this loop with a struct codec of our own
0.38 s (0.08 s); with pyroute2's codec 0.50 s (0.155 s).

pyroute2's codec is the cost that is left: it encodes a link request in 18-120 us, an
address or a route in 30-36 us, where struct took 2-10 us, and up to twice that in the
middle of an apply (a long code path, evicted from the CPU caches by the kernel's work
in between). Hence fewer requests: a new bridge or veth is asked for with NLM_F_ECHO,
and the kernel's answer gives its index (and a veth's peer's), where each was a lookup.

What is ours and not pyroute2's, and why:
- Framing: a struct read of each answer's nlmsghdr, and of an ack's error code, as
  pyroute2's Marshal itself does; pyroute2's nlmsgerr decodes an ack that carries an
  error, for the kernel's extended ack text. (We do not ask for NETLINK_CAP_ACK: the
  error ack then carries our request before the text, which is the shape nlmsgerr
  reads.)
- Which attributes of an answer are decoded (`_Only`): pyroute2 makes an object for
  each of a link's ~40 attributes, read or not (~85 us a link; ~200 with a VXLAN's and
  a bridge port's nested data). Our subclasses of pyroute2's classes step over those we
  never read and give pyroute2 those we do, which its classes decode lazily as ever:
  30-95 us a link.
- Request subclasses with dict's get (`_LinkRequest`), see there.

Only agent.ipr uses this module. Errors are NetlinkError(errno, the kernel's extended
ack text or ""); agent.ipr turns them into LinkErrors.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import socket
import struct
import types
from typing import Any, ClassVar, Final, NamedTuple

from pyroute2 import netlink
from pyroute2.netlink import rtnl
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD as _IFA_F_NODAD
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP as _IFF_UP
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ifinfmsg.plugins.vxlan import vxlan as vxlan_data
from pyroute2.netlink.rtnl.rtmsg import rtmsg

NETLINK_ROUTE: Final = 0
SOL_NETLINK: Final[int] = netlink.SOL_NETLINK
NETLINK_EXT_ACK: Final[int] = netlink.NETLINK_EXT_ACK
NETLINK_GET_STRICT_CHK: Final[int] = netlink.NETLINK_GET_STRICT_CHK

NLM_F_REQUEST: Final[int] = netlink.NLM_F_REQUEST
NLM_F_MULTI: Final[int] = netlink.NLM_F_MULTI
NLM_F_ACK: Final[int] = netlink.NLM_F_ACK
NLM_F_ECHO: Final[int] = netlink.NLM_F_ECHO
NLM_F_DUMP_INTR: Final[int] = netlink.NLM_F_DUMP_INTR
NLM_F_DUMP: Final[int] = netlink.NLM_F_DUMP
NLM_F_REPLACE: Final[int] = netlink.NLM_F_REPLACE
NLM_F_EXCL: Final[int] = netlink.NLM_F_EXCL
NLM_F_CREATE: Final[int] = netlink.NLM_F_CREATE
CREATE: Final = NLM_F_CREATE | NLM_F_EXCL  # a new object, or EEXIST
NLMSG_ERROR: Final[int] = netlink.NLMSG_ERROR
NLMSG_DONE: Final[int] = netlink.NLMSG_DONE

RTM_NEWLINK: Final[int] = rtnl.RTM_NEWLINK
RTM_DELLINK: Final[int] = rtnl.RTM_DELLINK
RTM_GETLINK: Final[int] = rtnl.RTM_GETLINK
RTM_NEWADDR: Final[int] = rtnl.RTM_NEWADDR
RTM_DELADDR: Final[int] = rtnl.RTM_DELADDR
RTM_GETADDR: Final[int] = rtnl.RTM_GETADDR
RTM_NEWROUTE: Final[int] = rtnl.RTM_NEWROUTE
RTM_DELROUTE: Final[int] = rtnl.RTM_DELROUTE
RTM_GETROUTE: Final[int] = rtnl.RTM_GETROUTE
RTN_UNICAST: Final[int] = rtnl.rt_type["unicast"]
RTN_BLACKHOLE: Final[int] = rtnl.rt_type["blackhole"]
RT_SCOPE_UNIVERSE: Final[int] = rtnl.rt_scope["universe"]
RT_SCOPE_NOWHERE: Final[int] = rtnl.rt_scope["nowhere"]  # in a delete: any scope
IFF_UP: Final[int] = _IFF_UP
IFA_F_NODAD: Final[int] = _IFA_F_NODAD
IN6_ADDR_GEN_MODE_NONE: Final = 1  # neither is in pyroute2
RTEXT_FILTER_SKIP_STATS: Final = 8  # link dumps without the counters: a third the size

HEADER: Final = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
ERROR: Final = struct.Struct("=i")  # nlmsgerr's error code, after the header
NLA: Final = struct.Struct("=HH")  # an attribute's length and type
NLA_TYPE_MASK: Final = 0x3FFF
BUFFER: Final = 1 << 16  # a dump part is at most 32 KiB; one answer never more than that


class NetlinkError(Exception):
    """The kernel refused a request: `code` is the errno, `detail` its extended ack
    message ("" when it gave none)."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


class _LinkRequest(ifinfmsg):  # type: ignore[misc]  # pyroute2 has no type hints
    """pyroute2's message, encoded by pyroute2, with dict's get: pyroute2's encoder asks
    msg.get(field) for each field of the fixed part, and nlmsg's get looks for an
    attribute of that name first (name mangling, a scan of the attributes, per field).
    A request's fields are plain keys, so dict.get gives the same answer, 8-18 us sooner
    a message (of 25-130)."""

    __slots__ = ()
    get = dict.get


class _AddrRequest(ifaddrmsg):  # type: ignore[misc]
    __slots__ = ()
    get = dict.get


class _RouteRequest(rtmsg):  # type: ignore[misc]
    __slots__ = ()
    get = dict.get


class Request:
    """A request: one of pyroute2's message classes, its fields and attributes (pyroute2's
    names and values, nested ones as {"attrs": [...]}). Encoded afresh for each send, as
    pyroute2 changes a message it encodes (a dump is asked for again when interrupted)."""

    __slots__ = ("attrs", "fields", "kind")

    def __init__(self, kind: Any, fields: dict[str, int], attrs: list[tuple[str, Any]]
                 ) -> None:
        self.kind = kind
        self.fields = fields
        self.attrs = attrs

    def message(self, kind: int, flags: int, seq: int) -> Any:
        msg = self.kind()
        for name, value in self.fields.items():
            msg[name] = value
        msg["attrs"] = list(self.attrs)
        msg["header"] = {"type": kind, "flags": flags, "sequence_number": seq, "pid": 0}
        return msg

    def encode(self, kind: int, flags: int, seq: int = 0) -> bytes:
        msg = self.message(kind, flags, seq)
        msg.encode()
        return bytes(msg.data)


class Socket:
    """A NETLINK_ROUTE socket, in whatever namespace `sock` was made in. Requests one
    at a time; an answer with another sequence number (left behind by a request that
    was interrupted) is skipped. Answers are whole messages, header included."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0
        self.broken = False  # a request's answers were not all read: open another socket
        self.buffer = bytearray(BUFFER)
        try:
            # The kernel's reason text. Not NETLINK_CAP_ACK: an error ack then carries
            # our request before the text, which is the shape pyroute2's nlmsgerr reads
            # (an ack without an error never carries the request).
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            # Dumps filtered by the kernel (routes by protocol, addresses by link);
            # before Linux 4.20 it is not there and we filter what comes anyway.
            with contextlib.suppress(OSError):
                sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            sock.bind((0, 0))
        except BaseException:
            sock.close()
            raise

    @classmethod
    def open(cls) -> Socket:
        return cls(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                 NETLINK_ROUTE))

    def close(self) -> None:
        self.sock.close()

    def ack(self, kind: int, flags: int, request: Request, *, echo: bool = False
            ) -> list[bytes]:
        """A change: returns once the kernel has acknowledged it. With `echo`, also what
        the kernel made, as it tells its listeners (a new link, its index with it), for
        a link made in the socket's own namespace by a kernel that echoes RTM_NEWLINK
        (this one, 6.18, does); [] otherwise. Not for a link made in another namespace:
        its echo is sent there, to whichever socket has our port id."""
        self._send(kind, flags | NLM_F_ACK | (NLM_F_ECHO if echo else 0), request)
        return [message for _, message in self._answers(to_the_end=True)]

    def get(self, kind: int, request: Request) -> bytes:
        """One object's answer."""
        self._send(kind, 0, request)
        answers = self._answers(to_the_end=False)
        if not answers:
            raise NetlinkError(errno.ENODATA, "no answer")
        return answers[0][1]

    def dump(self, kind: int, request: Request) -> list[bytes]:
        """Every object of a dump. A dump the kernel marks inconsistent (something
        changed while it ran) is asked for again."""
        for _ in range(5):
            self._send(kind, NLM_F_DUMP, request)
            answers = self._answers(to_the_end=True)
            if not any(flags & NLM_F_DUMP_INTR for flags, _ in answers):
                break
        return [message for _, message in answers]

    def _send(self, kind: int, flags: int, request: Request) -> None:
        self.seq = self.seq % 0xFFFFFFFF + 1
        self.broken = True  # until its last answer is read
        self.sock.send(request.encode(kind, flags | NLM_F_REQUEST, self.seq))

    def _answers(self, *, to_the_end: bool) -> list[tuple[int, bytes]]:
        """(flags, message) of each answer to the last request, up to its NLMSG_DONE or
        ack when `to_the_end`, else up to the first that is not part of a dump;
        NetlinkError when the kernel refused the request."""
        answers: list[tuple[int, bytes]] = []
        while True:
            size = self.sock.recv_into(self.buffer)
            data = bytes(self.buffer[:size])
            offset = 0
            while offset + HEADER.size <= size:
                length, kind, flags, seq, _ = HEADER.unpack_from(data, offset)
                message = data[offset:offset + length]
                offset += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if kind in (NLMSG_ERROR, NLMSG_DONE):
                    self.broken = False
                    code = (-ERROR.unpack_from(message, HEADER.size)[0]
                            if len(message) >= HEADER.size + ERROR.size else 0)
                    if code > 0:
                        raise NetlinkError(code, ack_text(message))
                    return answers
                answers.append((flags, message))
                if not to_the_end and not flags & NLM_F_MULTI:
                    self.broken = False
                    return answers


def ack_text(message: bytes) -> str:
    """The extended ack's message of an error ack (or of a dump's NLMSG_DONE), as
    pyroute2's nlmsgerr reads it; "" when the kernel gave none."""
    ack = netlink.nlmsgerr(message)
    try:
        ack.decode()
    except Exception:  # pyroute2's decode errors have no common base but Exception
        return ""
    text = ack.get_attr("NLMSGERR_ATTR_MSG")
    return " ".join(text.split()) if isinstance(text, str) else ""


# --- requests ------------------------------------------------------------------------


def _link(attrs: list[tuple[str, Any]], *, index: int = 0, up: bool | None = None
          ) -> Request:
    """An ifinfomsg; `up` changes IFF_UP (None: leaves it as it is)."""
    fields = {"index": index}
    if up is not None:
        fields.update(flags=IFF_UP if up else 0, change=IFF_UP)
    return Request(_LinkRequest, fields, attrs)


def named(name: str, *, up: bool | None = None, mtu: int | None = None,
          mac: str | None = None, master: int | None = None, group: int | None = None
          ) -> Request:
    """A link request that names its link (the kernel looks it up by name), with what
    it changes: IFF_UP, MTU, MAC, master (an index), group."""
    attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", name)]
    for attr, value in (("IFLA_MTU", mtu), ("IFLA_ADDRESS", mac), ("IFLA_MASTER", master),
                        ("IFLA_GROUP", group)):
        if value is not None:
            attrs.append((attr, value))
    return _link(attrs, up=up)


def group(number: int) -> Request:
    """Every link of group `number` (a delete of them all)."""
    return _link([("IFLA_GROUP", number)])


def _linkinfo(kind: str, *data: tuple[str, Any]) -> tuple[str, Any]:
    return ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", kind),
                                        ("IFLA_INFO_DATA", {"attrs": list(data)})]})


def veth(name: str, peer: str, peer_netns_fd: int) -> Request:
    theirs = {"attrs": [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd)]}
    return _link([("IFLA_IFNAME", name), _linkinfo("veth", ("VETH_INFO_PEER", theirs))])


def bridge(name: str, *, mac: str | None = None, up: bool = False) -> Request:
    """No STP (a bridge per segment, no loops) and no multicast snooping; the kernel
    sets the MAC before it brings the bridge up."""
    attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", name)]
    if mac is not None:
        attrs.append(("IFLA_ADDRESS", mac))
    attrs.append(_linkinfo("bridge", ("IFLA_BR_STP_STATE", 0), ("IFLA_BR_MCAST_SNOOPING", 0)))
    return _link(attrs, up=up or None)


def bridge_options(name: str, *, mcast_snooping: bool) -> Request:
    return _link([("IFLA_IFNAME", name),
                  _linkinfo("bridge", ("IFLA_BR_MCAST_SNOOPING", int(mcast_snooping)))])


def vxlan(name: str, *, vni: int, local: str, port: int, learning: bool, ttl: int,
          mtu: int, netns_fd: int, master: int | None = None) -> Request:
    """Made in the namespace of `netns_fd`, enslaved to `master` there when given."""
    six = ipaddress.ip_address(local).version == 6
    attrs: list[tuple[str, Any]] = [
        ("IFLA_IFNAME", name), ("IFLA_MTU", mtu), ("IFLA_NET_NS_FD", netns_fd),
        _linkinfo("vxlan", ("IFLA_VXLAN_ID", vni),
                  ("IFLA_VXLAN_LOCAL6" if six else "IFLA_VXLAN_LOCAL", local),
                  ("IFLA_VXLAN_PORT", port), ("IFLA_VXLAN_LEARNING", int(learning)),
                  ("IFLA_VXLAN_TTL", ttl))]
    if master is not None:
        attrs.append(("IFLA_MASTER", master))
    return _link(attrs)


def addrgenmode_none(name: str) -> Request:
    """No IPv6 link-local address of the kernel's making on this link."""
    inet6 = {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE)]}
    return _link([("IFLA_IFNAME", name),
                  ("IFLA_AF_SPEC", {"attrs": [("AF_INET6", inet6)]})])


def bridge_port(name: str, *, learning: bool, neigh_suppress: bool,
                up: bool | None = None) -> Request:
    port = {"attrs": [("IFLA_BRPORT_LEARNING", int(learning)),
                      ("IFLA_BRPORT_NEIGH_SUPPRESS", int(neigh_suppress))]}
    return _link([("IFLA_IFNAME", name), (
        "IFLA_LINKINFO", {"attrs": [("IFLA_INFO_SLAVE_KIND", "bridge"),
                                    ("IFLA_INFO_SLAVE_DATA", port)]})], up=up)


def link_dump() -> Request:
    return _link([("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)])


def link_get(*, name: str | None = None, index: int = 0) -> Request:
    """One link (its counters too: asking to skip them costs more to encode than they
    cost the kernel to fill)."""
    return _link([] if name is None else [("IFLA_IFNAME", name)], index=index)


def addr_dump(index: int = 0) -> Request:
    """Every address of the namespace, or of link `index` (the kernel filters when
    strict checking is on; the caller filters again)."""
    return Request(_AddrRequest, {"family": socket.AF_UNSPEC, "index": index}, [])


def addr(index: int, address: str, prefixlen: int, *, flags: int = 0,
         broadcast: str | None = None) -> Request:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    attrs = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
    if broadcast is not None:
        attrs.append(("IFA_BROADCAST", broadcast))
    return Request(_AddrRequest, {"family": family, "prefixlen": prefixlen, "flags": flags,
                               "scope": RT_SCOPE_UNIVERSE, "index": index}, attrs)


def route_dump(family: int, protocol: int) -> Request:
    """Routes of one family; only those of `protocol` when the kernel filters."""
    return Request(_RouteRequest, {"family": family, "proto": protocol}, [])


def route(dst: str, *, protocol: int, table: int, kind: int, scope: int,
          gateway: str | None = None, oif: int | None = None) -> Request:
    network = ipaddress.ip_network(dst)
    # rtm_table holds tables up to 255; RTA_TABLE the others (and then wins).
    attrs: list[tuple[str, Any]] = [] if table < 256 else [("RTA_TABLE", table)]
    if network.prefixlen:
        attrs.append(("RTA_DST", str(network.network_address)))
    if gateway is not None:
        attrs.append(("RTA_GATEWAY", gateway))
    if oif is not None:
        attrs.append(("RTA_OIF", oif))
    family = socket.AF_INET6 if network.version == 6 else socket.AF_INET
    return Request(_RouteRequest, {"family": family, "dst_len": network.prefixlen,
                           "table": table if table < 256 else 0, "proto": protocol,
                           "scope": scope, "type": kind}, attrs)


# --- answers -------------------------------------------------------------------------


def _wanted(cls: Any, *names: str, decode_as: dict[str, str] | None = None
            ) -> dict[int, tuple[str, str]]:
    """Attribute type -> (name, pyroute2 type) of `names`, as pyroute2 class `cls`
    declares them (an nla_map entry's position is its type unless it names one);
    `decode_as` decodes some as another of pyroute2's types."""
    found: dict[int, tuple[str, str]] = {}
    for position, entry in enumerate(cls.nla_map):
        key, name, kind = (entry[:3] if isinstance(entry[0], int)
                           else (position, entry[0], entry[1]))
        if name in names:
            found[key] = (name, (decode_as or {}).get(name, kind))
    assert len(found) == len(names), f"{cls.__name__} lacks some of {names}"
    return found


class _Only(netlink.nlmsg_base):  # type: ignore[misc]  # pyroute2 has no type hints
    """pyroute2's decode_nlas, but for the attributes in `only` alone: the others are
    stepped over, without the object pyroute2 makes for each. Those kept are pyroute2's
    own NLA classes (found by name on the message class, or by its functions that pick
    one, as pyroute2 does), in pyroute2's lazy slots: decoded when first read."""

    only: ClassVar[dict[int, tuple[str, str]]] = {}

    def decode_nlas(self, offset: int) -> None:
        data, end, attrs = self.data, self.offset + self.length, self["attrs"]
        header, wanted_one = NLA.unpack_from, self.only.get  # locals: ~40 turns a link
        while offset + 4 <= end:
            length, kind = header(data, offset)
            if length < 4:
                break
            wanted = wanted_one(kind & NLA_TYPE_MASK)
            if wanted is not None:
                cls = getattr(self, wanted[1])
                if isinstance(cls, types.FunctionType):  # chooses by what came before
                    cls = cls(self, data=data, offset=offset)
                attrs.append(netlink.nla_slot(wanted[0], cls(
                    data=data, offset=offset, length=min(length, end - offset), parent=self)))
            offset += (length + 3) & ~3


class _VxlanData(_Only, vxlan_data):  # type: ignore[misc]
    only = _wanted(vxlan_data, "IFLA_VXLAN_ID", "IFLA_VXLAN_LOCAL",
                   "IFLA_VXLAN_LOCAL6", "IFLA_VXLAN_PORT", "IFLA_VXLAN_LEARNING",
                   "IFLA_VXLAN_TTL")


class _BridgeData(_Only, ifinfmsg.ifinfo.bridge_data):  # type: ignore[misc]
    only = _wanted(ifinfmsg.ifinfo.bridge_data, "IFLA_BR_MCAST_SNOOPING")


class _PortData(_Only, ifinfmsg.ifinfo.bridge_slave_data):  # type: ignore[misc]
    only = _wanted(ifinfmsg.ifinfo.bridge_slave_data, "IFLA_BRPORT_LEARNING",
                   "IFLA_BRPORT_NEIGH_SUPPRESS")


class _LinkInfo(_Only, ifinfmsg.ifinfo):  # type: ignore[misc]
    only = _wanted(ifinfmsg.ifinfo, "IFLA_INFO_KIND", "IFLA_INFO_DATA", "IFLA_INFO_SLAVE_KIND",
                   "IFLA_INFO_SLAVE_DATA")
    data_map: ClassVar[dict[str, Any]] = {"vxlan": _VxlanData, "bridge": _BridgeData}
    bridge_slave_data = _PortData


class _Link(_Only, ifinfmsg):  # type: ignore[misc]
    # IFLA_ADDRESS as `ip link` shows it, of whatever length: pyroute2's l2addr reads 6
    # bytes, also of a tunnel's 4.
    only = _wanted(ifinfmsg, "IFLA_ADDRESS", "IFLA_IFNAME", "IFLA_MTU", "IFLA_LINK",
                   "IFLA_MASTER", "IFLA_LINKINFO", "IFLA_GROUP",
                   decode_as={"IFLA_ADDRESS": "hex"})
    ifinfo = _LinkInfo


class _Index(_Only, ifinfmsg):  # type: ignore[misc]
    """The fixed part, and the link's IFLA_LINK (a veth's peer index)."""

    only = _wanted(ifinfmsg, "IFLA_LINK")


class _Addr(_Only, ifaddrmsg):  # type: ignore[misc]
    only = _wanted(ifaddrmsg, "IFA_ADDRESS", "IFA_LOCAL")


class _Route(_Only, rtmsg):  # type: ignore[misc]
    only = _wanted(rtmsg, "RTA_DST", "RTA_OIF", "RTA_GATEWAY", "RTA_TABLE")


def _decoded(cls: Any, message: bytes) -> Any:
    msg = cls(message)
    msg.decode()
    return msg


def _values(msg: Any) -> dict[str, Any]:
    """The attributes of a decoded message or NLA by name (the last of a name repeated
    wins), each decoded now; {} for None."""
    return {} if msg is None else {slot.name: slot.value for slot in msg["attrs"]}


def _slots(msg: Any) -> dict[str, Any]:
    """pyroute2's slots by name: an attribute is decoded when its `.value` is read."""
    return {slot.name: slot for slot in msg["attrs"]}


def link_indexes(message: bytes) -> tuple[int, int | None]:
    """The index of an RTM_NEWLINK answer, and its IFLA_LINK (a veth's peer's index,
    in the peer's namespace)."""
    msg = _decoded(_Index, message)
    return int(msg["index"]), _values(msg).get("IFLA_LINK")


class LinkAnswer(NamedTuple):
    ifindex: int
    name: str
    up: bool
    mtu: int
    mac: str
    master: int  # 0: none
    link: int | None  # IFLA_LINK: a veth's peer index (in the peer's namespace)
    group: int | None
    kind: str  # "" for lo
    vxlan: tuple[int, str, int, bool, int] | None  # VNI, local, port, learning, TTL
    learning: bool | None  # bridge port flags, None when not enslaved
    neigh_suppress: bool | None
    mcast_snooping: bool | None  # bridges only


def link_answer(message: bytes) -> LinkAnswer:
    msg = _decoded(_Link, message)
    found = _values(msg)
    info = _values(found.get("IFLA_LINKINFO"))
    kind = info.get("IFLA_INFO_KIND") or ""
    data = _values(info.get("IFLA_INFO_DATA")) if kind in ("vxlan", "bridge") else {}
    port = (_values(info.get("IFLA_INFO_SLAVE_DATA"))
            if info.get("IFLA_INFO_SLAVE_KIND") == "bridge" else None)
    return LinkAnswer(
        ifindex=msg["index"], name=found.get("IFLA_IFNAME") or "",
        up=bool(msg["flags"] & IFF_UP), mtu=found.get("IFLA_MTU") or 0,
        mac=found.get("IFLA_ADDRESS") or "", master=found.get("IFLA_MASTER") or 0,
        link=found.get("IFLA_LINK"), group=found.get("IFLA_GROUP"), kind=kind,
        vxlan=_vxlan(data) if kind == "vxlan" else None,
        learning=_flag(port, "IFLA_BRPORT_LEARNING"),
        neigh_suppress=_flag(port, "IFLA_BRPORT_NEIGH_SUPPRESS"),
        mcast_snooping=_flag(data, "IFLA_BR_MCAST_SNOOPING") if kind == "bridge" else None)


def all_links(sock: Socket) -> list[LinkAnswer]:
    return [link_answer(message) for message in sock.dump(RTM_GETLINK, link_dump())]


def _vxlan(data: dict[str, Any]) -> tuple[int, str, int, bool, int]:
    return (data.get("IFLA_VXLAN_ID") or 0,
            data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6") or "",
            data.get("IFLA_VXLAN_PORT") or 0, bool(data.get("IFLA_VXLAN_LEARNING")),
            data.get("IFLA_VXLAN_TTL") or 0)


def _flag(found: dict[str, Any] | None, name: str) -> bool | None:
    value = None if found is None else found.get(name)
    return None if value is None else bool(value)


Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def addresses(messages: list[bytes]) -> dict[int, list[Interface]]:
    """RTM_NEWADDR answers by link index. IFA_LOCAL is the address itself, IFA_ADDRESS
    the peer's on a point-to-point link (and the address itself when there is no
    IFA_LOCAL, as with IPv6): only the one read is decoded."""
    found: dict[int, list[Interface]] = {}
    for message in messages:
        msg = _decoded(_Addr, message)
        slots = _slots(msg)
        slot = slots.get("IFA_LOCAL") or slots.get("IFA_ADDRESS")
        if slot is not None and isinstance(slot.value, str):
            found.setdefault(msg["index"], []).append(_interface(slot.value, msg["prefixlen"]))
    return found


@functools.lru_cache(maxsize=4096)
def _interface(text: str, prefixlen: int) -> Interface:
    """Cached: the same few addresses are read back on every pass (parsing one is as
    slow as decoding its message)."""
    kind = ipaddress.IPv6Interface if ":" in text else ipaddress.IPv4Interface
    return kind((text, prefixlen))


class RouteAnswer(NamedTuple):
    dst: str  # a CIDR
    protocol: int
    table: int
    kind: int  # RTN_*
    gateway: str | None
    oif: int | None


def route_answer(message: bytes) -> RouteAnswer:
    msg = _decoded(_Route, message)
    found = _values(msg)
    dst = found.get("RTA_DST") or ("::" if msg["family"] == socket.AF_INET6 else "0.0.0.0")
    return RouteAnswer(f"{dst}/{msg['dst_len']}", msg["proto"],
                       found.get("RTA_TABLE") or msg["table"], msg["type"],
                       found.get("RTA_GATEWAY"), found.get("RTA_OIF"))
