"""agent.ipr_netlink's messages, and what IprApi makes in one request (links, addresses).

`folded` is held by FakeIpr here and by Ipr on the real kernel
(tests/functional/links_driver.py), like tests/unit/ipr_contract.py.
"""

from __future__ import annotations

import ipaddress
import socket
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


def test_a_bridge_request_reads_back_as_a_link() -> None:
    answer = nl.link_answer(nl.bridge("vxb7", mac=MAC, up=True))
    assert (answer.name, answer.up, answer.mac, answer.kind, answer.mcast_snooping) == (
        "vxb7", True, MAC, "bridge", False)
    down = nl.link_answer(nl.bridge("vxb7"))
    assert (down.up, down.mac) == (False, "")


def test_a_vxlan_request_carries_its_parameters() -> None:
    body = nl.vxlan("vxv7", vni=5000011, local="10.255.2.1", port=4789, learning=False,
                    ttl=64, mtu=1500, netns_fd=9)
    answer = nl.link_answer(body)
    assert answer.vxlan == (5000011, "10.255.2.1", 4789, False, 64)
    assert (answer.kind, answer.mtu) == ("vxlan", 1500)
    assert nl.get_u32(nl.attrs(body, nl.IFINFO.size), nl.IFLA_NET_NS_FD) == 9
    six = nl.link_answer(nl.vxlan("vxv8", vni=8, local="2001:db8::1", port=4789,
                                  learning=True, ttl=1, mtu=1500, netns_fd=9))
    assert six.vxlan == (8, "2001:db8::1", 4789, True, 1)


def test_port_flags_and_up_in_one_message() -> None:
    body = nl.bridge_port("vxv7", learning=False, neigh_suppress=True, up=True)
    answer = nl.link_answer(body)
    assert (answer.up, answer.learning, answer.neigh_suppress) == (True, False, True)
    _, _, _, flags, change = nl.IFINFO.unpack_from(body)
    assert (flags, change) == (nl.IFF_UP, nl.IFF_UP)
    _, _, _, flags, change = nl.IFINFO.unpack_from(nl.named("vxv7"))
    assert (flags, change) == (0, 0)  # leaves IFF_UP as it is


def test_routes_and_addresses_read_back() -> None:
    body = nl.route("2001:db8:1::/48", protocol=250, table=254, kind=1, scope=0,
                    gateway="fe80::2", oif=7)
    assert nl.route_answer(body) == nl.RouteAnswer("2001:db8:1::/48", 250, 254, 1,
                                                   "fe80::2", 7)
    default = nl.route_answer(nl.route("0.0.0.0/0", protocol=250, table=254, kind=6,
                                       scope=0))
    assert (default.dst, default.gateway, default.oif) == ("0.0.0.0/0", None, None)
    address = nl.addr(3, "169.254.253.1", 31)
    six = nl.addr(3, "fe80::2", 64, flags=nl.IFA_F_NODAD)
    assert nl.addresses([address, six]) == {3: [ipaddress.ip_interface("169.254.253.1/31"),
                                                ipaddress.ip_interface("fe80::2/64")]}
    assert nl.IFADDR.unpack_from(address)[0] == socket.AF_INET


def test_attributes_are_padded_and_nested() -> None:
    nested = nl.nest(1, nl.text(2, "abc"), nl.u8(3, 7))
    assert len(nested) % 4 == 0
    inner = nl.attrs(nl.attrs(nested)[1])
    assert (nl.get_text(inner, 2), nl.get_u8(inner, 3)) == ("abc", 7)
    assert nl.attrs(nested, 0, frozenset({9})) == {}


def test_an_error_ack_gives_the_kernels_own_words() -> None:
    text = nl.attr(nl.NLMSGERR_ATTR_MSG, b"A VXLAN device with the specified VNI already "
                                         b"exists\0")
    said = "A VXLAN device with the specified VNI already exists"
    capped = nl.ERROR.pack(-17) + nl.HEADER.pack(40, 16, 0, 1, 0) + text
    assert nl.ack_text(capped, nl.NLM_F_ACK_TLVS | nl.NLM_F_CAPPED) == said
    request = nl.HEADER.pack(16 + 6, 16, 0, 1, 0) + b"\x01" * 6
    whole = nl.ERROR.pack(-17) + request + b"\0\0" + text  # our request, padded
    assert nl.ack_text(whole, nl.NLM_F_ACK_TLVS) == said
    assert nl.ack_text(capped, nl.NLM_F_CAPPED) == ""
