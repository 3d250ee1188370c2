"""agent.ipr_netlink's messages (pyroute2's, on the wire as the kernel wants them), and
what IprApi makes in one request (links, addresses).

`folded` is held by FakeIpr here and by Ipr on the real kernel
(tests/functional/links_driver.py), like tests/unit/ipr_contract.py.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable

from agent import ipr_netlink as nl
from agent.ipr import IprApi, LinkError, Vxlan
from agent.ipr_fake import FakeIpr

NS = "iprfold"  # not a vxr<N>: no applier would ever collect it
MAC = "02:00:0a:ff:02:01"
Check = tuple[str, bool, str]


def folded(ipr: IprApi) -> list[Check]:
    """A bridge made with its MAC and up; a VXLAN device made enslaved, then given its
    port flags and IFF_UP at once; sysctls set in one go."""
    checks: list[Check] = []

    def check(name: str, passed: bool, detail: object = "") -> None:
        checks.append((name, passed, str(detail)))

    def refused(name: str, action: Callable[[], object], error: str) -> None:
        try:
            action()
        except LinkError as exc:
            check(name, error in str(exc) and "\n" not in str(exc), exc)
        else:
            check(name, False, "no error")

    spec = Vxlan(4243, "10.255.2.1")
    ipr.create_netns(NS)
    ipr.add_bridge(NS, "fb0", mac=MAC, up=True)
    bridge = ipr.link(NS, "fb0")
    check("a bridge made with its MAC, up, without multicast snooping",
          bridge is not None and (bridge.kind, bridge.mac, bridge.up, bridge.mcast_snooping)
          == ("bridge", MAC, True, False), bridge)
    ipr.add_bridge(NS, "fb0", mac=MAC, up=True)
    check("add_bridge twice as asked", True)
    refused("add_bridge where one with another MAC is", lambda: ipr.add_bridge(
        NS, "fb0", mac="02:00:0a:ff:02:02"), "File exists")
    ipr.add_vxlan("fx0", spec, NS, master="fb0")
    vxlan = ipr.link(NS, "fx0")
    check("a VXLAN device made enslaved: down, a new port's flags",
          vxlan is not None and (vxlan.master, vxlan.up, vxlan.learning, vxlan.vxlan)
          == ("fb0", False, True, spec), vxlan)
    ipr.add_vxlan("fx0", spec, NS, master="fb0")
    check("add_vxlan with its master twice", True)
    ipr.set_port(NS, "fx0", learning=False, neigh_suppress=True, up=True)
    vxlan = ipr.link(NS, "fx0")
    check("port flags and up in one request",
          vxlan is not None and (vxlan.up, vxlan.learning, vxlan.neigh_suppress)
          == (True, False, True), vxlan)
    ipr.set_link(NS, "fb0", mac="02:00:0a:ff:02:09")
    bridge = ipr.link(NS, "fb0")
    check("a bridge's MAC changed while it is up with a port",
          bridge is not None and bridge.mac == "02:00:0a:ff:02:09", bridge)
    ipr.set_sysctls(NS, {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"})
    values = ipr.sysctls(NS, ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"])
    check("sysctls set in one go", list(values.values()) == ["1", "1"], values)
    ipr.delete_netns(NS)
    return checks


def test_the_fake_makes_links_as_ipr_does() -> None:
    checks = folded(FakeIpr())
    failed = [(name, detail) for name, ok, detail in checks if not ok]
    assert not failed and len(checks) >= 8


# --- messages --------------------------------------------------------------------------
#
# Requests are pyroute2's messages; they are read back by the classes that read the
# kernel's answers (a request for a link has the shape of the kernel's answer about it).
# The wire bytes are checked for the few fields that carry our meaning on their own.


def wire(request: nl.Request, kind: int = nl.RTM_NEWLINK) -> bytes:
    return request.encode(kind, nl.NLM_F_REQUEST, seq=1)


def ifinfomsg(request: nl.Request) -> tuple[int, int, int]:
    """index, flags and change of a link request."""
    _, _, index, flags, change = struct.unpack_from("=BxHiII", wire(request), nl.HEADER.size)
    return index, flags, change


def test_the_header_is_what_the_socket_sends() -> None:
    length, kind, flags, seq, pid = nl.HEADER.unpack_from(
        nl.named("vxb7").encode(nl.RTM_NEWLINK, nl.NLM_F_REQUEST | nl.NLM_F_ACK, seq=7))
    assert (kind, flags, seq, pid) == (nl.RTM_NEWLINK, nl.NLM_F_REQUEST | nl.NLM_F_ACK, 7, 0)
    assert length == len(wire(nl.named("vxb7"))) and length % 4 == 0


def test_a_request_is_encoded_afresh_each_time() -> None:
    request = nl.bridge("vxb7", mac=MAC, up=True)
    assert wire(request) == wire(request)  # a dump asked for again is the same


def test_a_bridge_request_reads_back_as_a_link() -> None:
    answer = nl.link_answer(wire(nl.bridge("vxb7", mac=MAC, up=True)))
    assert (answer.name, answer.up, answer.mac, answer.kind, answer.mcast_snooping) == (
        "vxb7", True, MAC, "bridge", False)
    down = nl.link_answer(wire(nl.bridge("vxb7")))
    assert (down.up, down.mac) == (False, "")
    assert nl.link_answer(wire(nl.bridge_options("vxb7", mcast_snooping=True))
                          ).mcast_snooping is True


def test_a_vxlan_request_carries_its_parameters() -> None:
    answer = nl.link_answer(wire(nl.vxlan(
        "vxv7", vni=5000011, local="10.255.2.1", port=4789, learning=False, ttl=64, mtu=1500,
        netns_fd=9, master=4)))
    assert answer.vxlan == (5000011, "10.255.2.1", 4789, False, 64)
    assert (answer.kind, answer.mtu, answer.master) == ("vxlan", 1500, 4)
    six = nl.link_answer(wire(nl.vxlan("vxv8", vni=8, local="2001:db8::1", port=4789,
                                       learning=True, ttl=1, mtu=1500, netns_fd=9)))
    assert (six.vxlan, six.master) == ((8, "2001:db8::1", 4789, True, 1), 0)
    port = wire(nl.vxlan("vxv7", vni=1, local="10.255.2.1", port=4789, learning=False,
                         ttl=64, mtu=1500, netns_fd=9))
    assert (4789).to_bytes(2, "big") in port  # IFLA_VXLAN_PORT is in network order


def test_port_flags_and_up_in_one_message() -> None:
    request = nl.bridge_port("vxv7", learning=False, neigh_suppress=True, up=True)
    answer = nl.link_answer(wire(request))
    assert (answer.up, answer.learning, answer.neigh_suppress) == (True, False, True)
    assert ifinfomsg(request)[1:] == (nl.IFF_UP, nl.IFF_UP)
    assert ifinfomsg(nl.named("vxv7"))[1:] == (0, 0)  # leaves IFF_UP as it is
    assert ifinfomsg(nl.named("vxv7", up=False))[1:] == (0, nl.IFF_UP)


def test_a_named_request_carries_what_it_changes() -> None:
    answer = nl.link_answer(wire(nl.named("vxb7", mtu=1450, mac=MAC, master=3, group=9)))
    assert (answer.name, answer.mtu, answer.mac, answer.master, answer.group) == (
        "vxb7", 1450, MAC, 3, 9)
    assert nl.link_answer(wire(nl.group(9))).group == 9
    assert nl.link_indexes(wire(nl.link_get(index=7), nl.RTM_GETLINK)) == (7, None)


def test_veth_and_addrgenmode_requests_are_what_the_kernel_parses() -> None:
    peer = wire(nl.veth("vxu1", "vxu1d", 9))
    assert peer.count(b"vxu1d\0") == 1 and struct.pack("=HHI", 8, 28, 9) in peer  # NET_NS_FD
    assert struct.pack("=HHB", 5, 8, nl.IN6_ADDR_GEN_MODE_NONE) in wire(
        nl.addrgenmode_none("vxu1"))  # IFLA_AF_SPEC / AF_INET6 / IFLA_INET6_ADDR_GEN_MODE


def test_routes_and_addresses_read_back() -> None:
    body = wire(nl.route("2001:db8:1::/48", protocol=250, table=254, kind=1, scope=0,
                         gateway="fe80::2", oif=7), nl.RTM_NEWROUTE)
    assert nl.route_answer(body) == nl.RouteAnswer("2001:db8:1::/48", 250, 254, 1,
                                                   "fe80::2", 7)
    default = nl.route_answer(wire(nl.route("0.0.0.0/0", protocol=250, table=254, kind=6,
                                            scope=0), nl.RTM_NEWROUTE))
    assert (default.dst, default.gateway, default.oif) == ("0.0.0.0/0", None, None)
    high = nl.route_answer(wire(nl.route("10.0.0.0/8", protocol=250, table=1000, kind=1,
                                         scope=0, oif=2), nl.RTM_NEWROUTE))
    assert high.table == 1000  # RTA_TABLE: rtm_table holds 255 at most
    address = wire(nl.addr(3, "169.254.253.1", 31), nl.RTM_NEWADDR)
    six = wire(nl.addr(3, "fe80::2", 64, flags=nl.IFA_F_NODAD), nl.RTM_NEWADDR)
    assert nl.addresses([address, six]) == {3: [ipaddress.ip_interface("169.254.253.1/31"),
                                                ipaddress.ip_interface("fe80::2/64")]}
    assert address[nl.HEADER.size] == socket.AF_INET and six[nl.HEADER.size] == socket.AF_INET6
    broadcast = wire(nl.addr(3, "192.0.2.1", 24, broadcast="192.0.2.255"), nl.RTM_NEWADDR)
    assert ipaddress.ip_address("192.0.2.255").packed in broadcast


def test_a_link_answer_reads_only_what_it_needs() -> None:
    """A kernel answer carries some forty attributes; those we do not read are stepped
    over, a MAC of another length than six is shown as `ip link` does."""
    request = nl.named("tunl0", mac="02:00:0a:ff:02:01", mtu=1480)
    request.attrs += [("IFLA_TXQLEN", 1000), ("IFLA_OPERSTATE", "DOWN"), ("IFLA_QDISC", "noop")]
    answer = nl.link_answer(wire(request))
    assert (answer.name, answer.mtu, answer.mac) == ("tunl0", 1480, MAC)
    short = wire(nl.named("tunl0"))
    short += struct.pack("=HH4s", 8, 1, bytes(4))  # IFLA_ADDRESS of an IPv4 tunnel
    short = struct.pack("=I", len(short)) + short[4:]
    assert nl.link_answer(short).mac == "00:00:00:00"


def test_an_error_ack_gives_the_kernels_own_words() -> None:
    """An error ack carries our request (no NETLINK_CAP_ACK) and then the kernel's
    reason, which pyroute2's nlmsgerr reads."""
    said = "A VXLAN device with the specified VNI already exists"
    text = said.encode() + b"\0"
    request = wire(nl.named("vxv7"))
    tlv = struct.pack("=HH", 4 + len(text), 1) + text + b"\0" * (-len(text) % 4)
    body = struct.pack("=i", -17) + request + tlv
    ack = nl.HEADER.pack(nl.HEADER.size + len(body), nl.NLMSG_ERROR, 0x200, 1, 0) + body
    assert nl.ack_text(ack) == said
    bare = struct.pack("=i", -17) + request
    assert nl.ack_text(nl.HEADER.pack(nl.HEADER.size + len(bare), nl.NLMSG_ERROR, 0, 1, 0)
                       + bare) == ""
