"""Just enough rtnetlink for agent.ipr: a socket, and the few messages it sends and reads.

Why not pyroute2: it spent 0.4-0.65 ms of Python on every request (its event loop,
request filters, generic attribute machinery) where the kernel needs 20-60 us, and
decoding a dump cost as much again; building 100 routing domains took ~4,300 requests
and 1.7 s. Encoded with struct, a request costs ~10 us of Python here. The kernel
handles an rtnetlink request inside sendmsg(), so a request is one send() and one recv()
of an answer that is already queued: nothing is gained by pipelining.

Only agent.ipr uses this module. Errors are NetlinkError(errno, the kernel's extended
ack text or ""); agent.ipr turns them into LinkErrors.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import struct
from typing import Final, NamedTuple

NETLINK_ROUTE: Final = 0
SOL_NETLINK: Final = 270
NETLINK_CAP_ACK: Final = 10
NETLINK_EXT_ACK: Final = 11
NETLINK_GET_STRICT_CHK: Final = 12

NLM_F_REQUEST: Final = 0x1
NLM_F_MULTI: Final = 0x2
NLM_F_ACK: Final = 0x4
NLM_F_DUMP_INTR: Final = 0x10
NLM_F_DUMP: Final = 0x300
NLM_F_REPLACE: Final = 0x100
NLM_F_EXCL: Final = 0x200
NLM_F_CREATE: Final = 0x400
CREATE: Final = NLM_F_CREATE | NLM_F_EXCL  # a new object, or EEXIST
NLM_F_CAPPED: Final = 0x100  # in an ack: our request is left out but for its header
NLM_F_ACK_TLVS: Final = 0x200  # in an ack: attributes (the kernel's reason) follow
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLMSGERR_ATTR_MSG: Final = 1
NLA_F_NESTED: Final = 0x8000
NLA_TYPE_MASK: Final = 0x3FFF

RTM_NEWLINK: Final = 16
RTM_DELLINK: Final = 17
RTM_GETLINK: Final = 18
RTM_NEWADDR: Final = 20
RTM_DELADDR: Final = 21
RTM_GETADDR: Final = 22
RTM_NEWROUTE: Final = 24
RTM_DELROUTE: Final = 25
RTM_GETROUTE: Final = 26

IFLA_ADDRESS: Final = 1
IFLA_IFNAME: Final = 3
IFLA_MTU: Final = 4
IFLA_LINK: Final = 5
IFLA_MASTER: Final = 10
IFLA_LINKINFO: Final = 18
IFLA_AF_SPEC: Final = 26
IFLA_GROUP: Final = 27
IFLA_NET_NS_FD: Final = 28
IFLA_EXT_MASK: Final = 29
IFLA_INFO_KIND: Final = 1
IFLA_INFO_DATA: Final = 2
IFLA_INFO_SLAVE_KIND: Final = 4
IFLA_INFO_SLAVE_DATA: Final = 5
VETH_INFO_PEER: Final = 1
IFLA_VXLAN_ID: Final = 1
IFLA_VXLAN_LOCAL: Final = 4
IFLA_VXLAN_TTL: Final = 5
IFLA_VXLAN_LEARNING: Final = 7
IFLA_VXLAN_PORT: Final = 15
IFLA_VXLAN_LOCAL6: Final = 17
IFLA_BR_STP_STATE: Final = 5
IFLA_BR_MCAST_SNOOPING: Final = 23
IFLA_BRPORT_LEARNING: Final = 8
IFLA_BRPORT_NEIGH_SUPPRESS: Final = 32
IFLA_INET6_ADDR_GEN_MODE: Final = 8
IN6_ADDR_GEN_MODE_NONE: Final = 1
IFF_UP: Final = 0x1
RTEXT_FILTER_SKIP_STATS: Final = 8  # link dumps without the counters: a third the size
IFA_ADDRESS: Final = 1
IFA_LOCAL: Final = 2
IFA_BROADCAST: Final = 4
IFA_F_NODAD: Final = 0x02
RTA_DST: Final = 1
RTA_OIF: Final = 4
RTA_GATEWAY: Final = 5
RTA_TABLE: Final = 15
RTN_UNICAST: Final = 1
RTN_BLACKHOLE: Final = 6
RT_SCOPE_UNIVERSE: Final = 0
RT_SCOPE_NOWHERE: Final = 255  # in a delete: whatever the route's scope

HEADER: Final = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
IFINFO: Final = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
IFADDR: Final = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
RTMSG: Final = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table,
#                                             protocol, scope, type, flags
NLA: Final = struct.Struct("=HH")
U32: Final = struct.Struct("=I")
ERROR: Final = struct.Struct("=i")
BUFFER: Final = 1 << 16  # a dump part is at most 32 KiB; one answer never more than that


class NetlinkError(Exception):
    """The kernel refused a request: `code` is the errno, `detail` its extended ack
    message ("" when it gave none)."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


class Socket:
    """A NETLINK_ROUTE socket, in whatever namespace `sock` was made in. Requests one
    at a time; an answer with another sequence number (left behind by a request that
    was interrupted) is skipped."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0
        self.broken = False  # a request's answers were not all read: open another socket
        self.buffer = bytearray(BUFFER)
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # acks without our request
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)  # the kernel's reason text
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

    def ack(self, kind: int, flags: int, body: bytes) -> None:
        """A change: returns once the kernel has acknowledged it."""
        self._send(kind, flags | NLM_F_ACK, body)
        self._answers(dump=False)

    def get(self, kind: int, body: bytes) -> bytes:
        """One object's answer, as its payload."""
        self._send(kind, 0, body)
        answers = self._answers(dump=False)
        if not answers:
            raise NetlinkError(errno.ENODATA, "no answer")
        return answers[0][1]

    def dump(self, kind: int, body: bytes) -> list[bytes]:
        """Every object of a dump, as payloads. A dump the kernel marks inconsistent
        (something changed while it ran) is asked for again."""
        for _ in range(5):
            self._send(kind, NLM_F_DUMP, body)
            answers = self._answers(dump=True)
            if not any(flags & NLM_F_DUMP_INTR for flags, _ in answers):
                break
        return [payload for _, payload in answers]

    def _send(self, kind: int, flags: int, body: bytes) -> None:
        self.seq = self.seq % 0xFFFFFFFF + 1
        self.broken = True  # until its last answer is read
        self.sock.send(HEADER.pack(HEADER.size + len(body), kind, flags | NLM_F_REQUEST,
                                   self.seq, 0) + body)

    def _answers(self, *, dump: bool) -> list[tuple[int, bytes]]:
        """(flags, payload) of each answer to the last request; NetlinkError when the
        kernel refused it."""
        answers: list[tuple[int, bytes]] = []
        while True:
            size = self.sock.recv_into(self.buffer)
            data = bytes(self.buffer[:size])
            offset = 0
            while offset + HEADER.size <= size:
                length, kind, flags, seq, _ = HEADER.unpack_from(data, offset)
                payload = data[offset + HEADER.size:offset + length]
                offset += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if kind in (NLMSG_ERROR, NLMSG_DONE):
                    self.broken = False
                    code = -ERROR.unpack_from(payload)[0] if len(payload) >= ERROR.size else 0
                    if code > 0:
                        raise NetlinkError(code, ack_text(payload, flags))
                    return answers
                answers.append((flags, payload))
                if not dump and not flags & NLM_F_MULTI:
                    self.broken = False
                    return answers


def ack_text(payload: bytes, flags: int) -> str:
    """The extended ack's message: after the error code and our request (its header
    alone when the kernel capped it, as NETLINK_CAP_ACK asks)."""
    if not flags & NLM_F_ACK_TLVS or len(payload) < ERROR.size + HEADER.size:
        return ""
    ours = HEADER.size if flags & NLM_F_CAPPED else HEADER.unpack_from(payload, ERROR.size)[0]
    text = attrs(payload, ERROR.size + ((ours + 3) & ~3)).get(NLMSGERR_ATTR_MSG, b"")
    return " ".join(text.rstrip(b"\0").decode(errors="replace").split())


# --- attributes ----------------------------------------------------------------------


def attrs(data: bytes, offset: int = 0, wanted: frozenset[int] | None = None
          ) -> dict[int, bytes]:
    """The attributes from `offset` on (only those of the `wanted` types: a link has
    fifty, of which we read a few), by type; the last of a type repeated wins."""
    found: dict[int, bytes] = {}
    end, unpack = len(data), NLA.unpack_from
    while offset + NLA.size <= end:
        length, kind = unpack(data, offset)
        if length < NLA.size:
            break
        kind &= NLA_TYPE_MASK
        if wanted is None or kind in wanted:
            found[kind] = data[offset + NLA.size:offset + length]
        offset += (length + 3) & ~3
    return found


def attr(kind: int, value: bytes) -> bytes:
    length = NLA.size + len(value)
    return NLA.pack(length, kind) + value + b"\0" * (-length % 4)


def nest(kind: int, *parts: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def u8(kind: int, value: int) -> bytes:
    return attr(kind, bytes((value,)))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, U32.pack(value))


def text(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def get_u32(found: dict[int, bytes], kind: int) -> int | None:
    value = found.get(kind)
    return None if value is None or len(value) < 4 else int(U32.unpack_from(value)[0])


def get_u8(found: dict[int, bytes], kind: int) -> int | None:
    value = found.get(kind)
    return None if not value else value[0]


def get_text(found: dict[int, bytes], kind: int) -> str | None:
    value = found.get(kind)
    return None if value is None else value.split(b"\0", 1)[0].decode()


def get_ip(found: dict[int, bytes], kind: int) -> str | None:
    value = found.get(kind)
    return None if value is None else str(ipaddress.ip_address(value))


def mac_text(value: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in value)


def mac_bytes(value: str) -> bytes:
    return bytes(int(part, 16) for part in value.split(":"))


# --- requests ------------------------------------------------------------------------


def ifinfo(*, index: int = 0, up: bool | None = None) -> bytes:
    """An ifinfomsg; `up` changes IFF_UP (None: leaves it as it is)."""
    change = 0 if up is None else IFF_UP
    return IFINFO.pack(0, 0, index, IFF_UP if up else 0, change)


def named(name: str, *, up: bool | None = None) -> bytes:
    """A link request that names its link: the kernel looks it up by name."""
    return ifinfo(up=up) + text(IFLA_IFNAME, name)


def linkinfo(kind: str, *data: bytes) -> bytes:
    return nest(IFLA_LINKINFO, text(IFLA_INFO_KIND, kind), nest(IFLA_INFO_DATA, *data))


def veth(name: str, peer: str, peer_netns_fd: int) -> bytes:
    theirs = ifinfo() + text(IFLA_IFNAME, peer) + u32(IFLA_NET_NS_FD, peer_netns_fd)
    return named(name) + linkinfo("veth", attr(VETH_INFO_PEER, theirs))


def bridge(name: str, *, mac: str | None = None, up: bool = False) -> bytes:
    """No STP (a bridge per segment, no loops) and no multicast snooping; the kernel
    sets the MAC before it brings the bridge up."""
    return (named(name, up=up or None)
            + (attr(IFLA_ADDRESS, mac_bytes(mac)) if mac is not None else b"")
            + linkinfo("bridge", u32(IFLA_BR_STP_STATE, 0), u8(IFLA_BR_MCAST_SNOOPING, 0)))


def bridge_options(name: str, *, mcast_snooping: bool) -> bytes:
    return named(name) + linkinfo("bridge", u8(IFLA_BR_MCAST_SNOOPING, int(mcast_snooping)))


def vxlan(name: str, *, vni: int, local: str, port: int, learning: bool, ttl: int,
          mtu: int, netns_fd: int) -> bytes:
    address = ipaddress.ip_address(local)
    return named(name) + u32(IFLA_MTU, mtu) + u32(IFLA_NET_NS_FD, netns_fd) + linkinfo(
        "vxlan", u32(IFLA_VXLAN_ID, vni),
        attr(IFLA_VXLAN_LOCAL if address.version == 4 else IFLA_VXLAN_LOCAL6, address.packed),
        attr(IFLA_VXLAN_PORT, port.to_bytes(2, "big")), u8(IFLA_VXLAN_LEARNING, int(learning)),
        u8(IFLA_VXLAN_TTL, ttl))


def addrgenmode_none(name: str) -> bytes:
    """No IPv6 link-local address of the kernel's making on this link."""
    return named(name) + nest(IFLA_AF_SPEC, nest(socket.AF_INET6, u8(
        IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE)))


def bridge_port(name: str, *, learning: bool, neigh_suppress: bool,
                up: bool | None = None) -> bytes:
    return named(name, up=up) + nest(IFLA_LINKINFO, text(IFLA_INFO_SLAVE_KIND, "bridge"), nest(
        IFLA_INFO_SLAVE_DATA, u8(IFLA_BRPORT_LEARNING, int(learning)),
        u8(IFLA_BRPORT_NEIGH_SUPPRESS, int(neigh_suppress))))


def link_dump() -> bytes:
    return ifinfo() + u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)


def link_get(*, name: str | None = None, index: int = 0) -> bytes:
    return (ifinfo(index=index) + (text(IFLA_IFNAME, name) if name is not None else b"")
            + u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))


def addr_dump(index: int = 0) -> bytes:
    """Every address of the namespace, or of link `index` (the kernel filters when
    strict checking is on; the caller filters again)."""
    return IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, index)


def addr(index: int, address: str, prefixlen: int, *, flags: int = 0,
         broadcast: str | None = None) -> bytes:
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return (IFADDR.pack(family, prefixlen, flags, RT_SCOPE_UNIVERSE, index)
            + attr(IFA_LOCAL, ip.packed) + attr(IFA_ADDRESS, ip.packed)
            + (attr(IFA_BROADCAST, ipaddress.ip_address(broadcast).packed)
               if broadcast is not None else b""))


def route_dump(family: int, protocol: int) -> bytes:
    """Routes of one family; only those of `protocol` when the kernel filters."""
    return RTMSG.pack(family, 0, 0, 0, 0, protocol, 0, 0, 0)


def route(dst: str, *, protocol: int, table: int, kind: int, scope: int,
          gateway: str | None = None, oif: int | None = None) -> bytes:
    network = ipaddress.ip_network(dst)
    family = socket.AF_INET6 if network.version == 6 else socket.AF_INET
    body = RTMSG.pack(family, network.prefixlen, 0, 0, table if table < 256 else 0, protocol,
                      scope, kind, 0) + u32(RTA_TABLE, table)
    if network.prefixlen:
        body += attr(RTA_DST, network.network_address.packed)
    if gateway is not None:
        body += attr(RTA_GATEWAY, ipaddress.ip_address(gateway).packed)
    if oif is not None:
        body += u32(RTA_OIF, oif)
    return body


# --- answers -------------------------------------------------------------------------


def ifindex(payload: bytes) -> int:
    """The index of an RTM_NEWLINK answer."""
    return int(IFINFO.unpack_from(payload)[2])


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


_LINK_ATTRS: Final = frozenset({IFLA_IFNAME, IFLA_MTU, IFLA_ADDRESS, IFLA_MASTER, IFLA_LINK,
                                IFLA_GROUP, IFLA_LINKINFO})
_DATA_ATTRS: Final = frozenset({IFLA_VXLAN_ID, IFLA_VXLAN_LOCAL, IFLA_VXLAN_LOCAL6,
                                IFLA_VXLAN_PORT, IFLA_VXLAN_LEARNING, IFLA_VXLAN_TTL,
                                IFLA_BR_MCAST_SNOOPING})  # a VXLAN's, and a bridge's
_PORT_ATTRS: Final = frozenset({IFLA_BRPORT_LEARNING, IFLA_BRPORT_NEIGH_SUPPRESS})


def link_answer(payload: bytes) -> LinkAnswer:
    _, _, index, flags, _ = IFINFO.unpack_from(payload)
    found = attrs(payload, IFINFO.size, _LINK_ATTRS)
    info = attrs(found.get(IFLA_LINKINFO, b""))
    kind = get_text(info, IFLA_INFO_KIND) or ""
    data = attrs(info.get(IFLA_INFO_DATA, b""), 0, _DATA_ATTRS)
    port = (attrs(info[IFLA_INFO_SLAVE_DATA], 0, _PORT_ATTRS)
            if IFLA_INFO_SLAVE_DATA in info else None)
    return LinkAnswer(
        ifindex=index, name=get_text(found, IFLA_IFNAME) or "", up=bool(flags & IFF_UP),
        mtu=get_u32(found, IFLA_MTU) or 0, mac=mac_text(found.get(IFLA_ADDRESS, b"")),
        master=get_u32(found, IFLA_MASTER) or 0, link=get_u32(found, IFLA_LINK),
        group=get_u32(found, IFLA_GROUP), kind=kind,
        vxlan=_vxlan(data) if kind == "vxlan" else None,
        learning=_flag(port, IFLA_BRPORT_LEARNING),
        neigh_suppress=_flag(port, IFLA_BRPORT_NEIGH_SUPPRESS),
        mcast_snooping=_flag(data, IFLA_BR_MCAST_SNOOPING) if kind == "bridge" else None)


def all_links(sock: Socket) -> list[LinkAnswer]:
    return [link_answer(payload) for payload in sock.dump(RTM_GETLINK, link_dump())]


def _vxlan(data: dict[int, bytes]) -> tuple[int, str, int, bool, int]:
    return (get_u32(data, IFLA_VXLAN_ID) or 0,
            get_ip(data, IFLA_VXLAN_LOCAL) or get_ip(data, IFLA_VXLAN_LOCAL6) or "",
            int.from_bytes(data.get(IFLA_VXLAN_PORT, b"")[:2], "big"),
            bool(get_u8(data, IFLA_VXLAN_LEARNING)), get_u8(data, IFLA_VXLAN_TTL) or 0)


def _flag(found: dict[int, bytes] | None, kind: int) -> bool | None:
    value = None if found is None else get_u8(found, kind)
    return None if value is None else bool(value)


Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def addresses(payloads: list[bytes]) -> dict[int, list[Interface]]:
    """RTM_NEWADDR answers by link index. IFA_LOCAL is the address itself, IFA_ADDRESS
    the peer's on a point-to-point link."""
    found: dict[int, list[Interface]] = {}
    for payload in payloads:
        _, prefixlen, _, _, index = IFADDR.unpack_from(payload)
        values = attrs(payload, IFADDR.size, _ADDR_ATTRS)
        packed = values.get(IFA_LOCAL) or values.get(IFA_ADDRESS)
        if packed is not None:
            kind = ipaddress.IPv4Interface if len(packed) == 4 else ipaddress.IPv6Interface
            found.setdefault(index, []).append(kind((packed, prefixlen)))
    return found


_ADDR_ATTRS: Final = frozenset({IFA_LOCAL, IFA_ADDRESS})


class RouteAnswer(NamedTuple):
    dst: str  # a CIDR
    protocol: int
    table: int
    kind: int  # RTN_*
    gateway: str | None
    oif: int | None


def route_answer(payload: bytes) -> RouteAnswer:
    family, dst_len, _, _, table, protocol, _, kind, _ = RTMSG.unpack_from(payload)
    found = attrs(payload, RTMSG.size)
    dst = get_ip(found, RTA_DST) or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    return RouteAnswer(f"{dst}/{dst_len}", protocol, get_u32(found, RTA_TABLE) or table, kind,
                       get_ip(found, RTA_GATEWAY), get_u32(found, RTA_OIF))
