"""What every IprApi must do, run against FakeIpr (unit) and Ipr (functional, real kernel).

Idempotence (adding what is there as asked, deleting what is gone: no error), refusals
(a name taken by another kind, a VNI taken, a route of someone else's in the way) as
one-line LinkErrors, and the kernel's own side effects (a veth end takes its peer).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from agent.ipr import IprApi, LinkError, Route, Vxlan

NS = "iprtest"  # not a vxr<N>: no applier would ever collect it
Check = tuple[str, bool, str]


def contract(ipr: IprApi, foreign_route: Callable[[str, str], object]) -> list[Check]:
    """`foreign_route(netns, prefix)` adds a blackhole route that is not ours."""
    checks: list[Check] = []

    def expect(name: str, action: Callable[[], object], error: str = "") -> None:
        try:
            action()
        except LinkError as exc:
            text = str(exc)
            checks.append((name, bool(error) and error in text and "\n" not in text, text))
        else:
            checks.append((name, not error, "no error" if error else ""))

    spec = Vxlan(4242, "10.255.2.1")
    gateway = ipaddress.ip_interface("192.0.2.1/24")
    route = Route(ipaddress.ip_network("198.18.99.0/24"), ipaddress.ip_address("192.0.2.2"),
                  "cb0")
    ipr.create_netns(NS)
    expect("create_netns twice", lambda: ipr.create_netns(NS))
    ipr.add_bridge(NS, "cb0")
    expect("add_bridge twice", lambda: ipr.add_bridge(NS, "cb0"))
    ipr.add_veth("cv0", NS, "cv1", NS)
    expect("add_veth twice", lambda: ipr.add_veth("cv0", NS, "cv1", NS))
    expect("add_bridge over a veth", lambda: ipr.add_bridge(NS, "cv0"), "File exists")
    expect("a name longer than 15", lambda: ipr.add_bridge(NS, "c" * 16), "out of range")
    ipr.add_vxlan("cx0", spec, NS)
    expect("add_vxlan twice", lambda: ipr.add_vxlan("cx0", spec, NS))
    expect("add_vxlan: VNI taken", lambda: ipr.add_vxlan("cx1", spec, NS), "exists")
    ipr.set_link(NS, "cx0", master="cb0", up=True)
    ipr.set_link(NS, "cb0", up=True)
    links = ipr.links(NS)
    checks.append(("vxlan observed as made", links["cx0"].vxlan == spec
                   and links["cx0"].master == "cb0", repr(links["cx0"])))
    ipr.add_address(NS, "cb0", gateway)
    expect("add_address twice", lambda: ipr.add_address(NS, "cb0", gateway))
    ipr.add_route(NS, route)
    expect("add_route twice", lambda: ipr.add_route(NS, route))
    checks.append(("routes lists ours", ipr.routes(NS) == [route], repr(ipr.routes(NS))))
    ipr.delete_route(NS, route)
    expect("delete_route twice", lambda: ipr.delete_route(NS, route))
    foreign_route(NS, "198.18.98.0/24")
    expect("add_route over a foreign route", lambda: ipr.add_route(
        NS, Route(ipaddress.ip_network("198.18.98.0/24"))), "File exists")
    checks.append(("routes hides foreign ones", ipr.routes(NS) == [], repr(ipr.routes(NS))))
    ipr.delete_address(NS, "cb0", gateway)
    expect("delete_address twice", lambda: ipr.delete_address(NS, "cb0", gateway))
    ipr.delete_link(NS, "cv1")
    checks.append(("a veth end takes its peer", "cv0" not in ipr.links(NS), ""))
    expect("delete_link twice", lambda: ipr.delete_link(NS, "cv1"))
    expect("delete_links, one gone already", lambda: ipr.delete_links(NS, ["cb0", "cx0",
                                                                           "cv0"]))
    checks.append(("delete_links deleted", sorted(ipr.links(NS)) == ["lo"],
                   repr(sorted(ipr.links(NS)))))
    ipr.delete_netns(NS)
    expect("delete_netns twice", lambda: ipr.delete_netns(NS))
    checks.append(("namespace gone", NS not in ipr.list_netns(), ""))
    return checks
