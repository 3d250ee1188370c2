"""The links applier against the real kernel, run inside simulator.sandbox (see there).

`python -m tests.functional.links_driver run`: the whole scenario, one JSON report on
stdout ({"checks": [{"name", "ok", "detail"}], "timings": {...}}) for the test to judge.
`... reapply STATE_FILE`: one apply by a fresh process (an agent restart), printing
{"ok", "changes", "statuses"}.

Scenario: foreign objects first (link foo0/foo1, a static and a blackhole route, a
namespace `other`); apply three domains (two EVPN with two segments each, one VLAN
hand-off); a "VM" namespace on a segment bridge pings its IPv4 and IPv6 gateway; each
domain pings the SoftGate end of its uplink; the SoftGate reaches an address routed into
a domain; our routes carry our protocol; a new process re-applies and changes nothing;
then one domain is removed and everything of it goes while the foreign objects stay.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from typing import Any

from agent.ipr import DOOMED_GROUP, PROTO, Ipr, LinkError
from agent.links_apply import ApplyResult, LinksApplier
from agent.links_state import LinksState
from simulator.sandbox import require_sandbox
from tests.unit.ipr_contract import contract
from tests.unit.links_samples import domain_json, links_json, vlan_segment_json
from tests.unit.test_links_ipr import folded

D1, D2, D3 = "vxr5000010", "vxr5000020", "vxr4003"
ROUTER_MAC = "02:00:0a:ff:02:01"  # of VTEP 10.255.2.1 (links_samples.VTEP)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def ok(*args: str) -> bool:
    return sh(*args, check=False).returncode == 0


def ping(netns: str, address: str) -> bool:
    return ok("ip", "netns", "exec", netns, "ping", "-c1", "-W1", "-q", address)


def desired(*netns: str) -> dict[str, Any]:
    """D1 and D2 (EVPN, two segments each) and D3 (VLAN hand-off), or those named."""
    state = links_json(2)
    vlan = domain_json(3, 0, l3vni=False)
    vlan["segments"] = [vlan_segment_json("net-vlan", 3001, "10.99.0.1/24")]
    state["domains"].append(vlan)
    state["domains"] = [d for d in state["domains"] if d["netns"] in (netns or (D1, D2, D3))]
    return state


class Report:
    def __init__(self) -> None:
        self.checks: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}

    def check(self, name: str, passed: bool, detail: object = "") -> None:
        self.checks.append({"name": name, "ok": bool(passed), "detail": str(detail)})

    def timed(self, name: str, state: dict[str, Any]) -> ApplyResult:
        with Ipr() as ipr:
            start = time.perf_counter()
            result = LinksApplier(ipr).apply(LinksState.from_json(state))
            self.timings[name] = round((time.perf_counter() - start) * 1000, 1)
        self.check(f"{name}: every status ok", result.ok,
                   [s for s in result.statuses if s.state != "ok"])
        return result


def foreign_objects() -> None:
    sh("ip", "link", "add", "foo0", "type", "veth", "peer", "name", "foo1")
    sh("ip", "addr", "add", "192.0.2.1/24", "dev", "foo0")
    sh("ip", "link", "set", "foo0", "up")
    sh("ip", "link", "set", "foo1", "up")
    sh("ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "dev", "foo0")
    sh("ip", "route", "add", "blackhole", "100.64.0.0/24")
    sh("ip", "netns", "add", "other")


def foreign_intact() -> bool:
    routes = sh("ip", "route").stdout
    return (ok("ip", "link", "show", "foo0") and ok("ip", "link", "show", "to-hv1")
            and "198.51.100.0/24 via 192.0.2.2" in routes
            and "blackhole 100.64.0.0/24" in routes and "other" in netns_list())


def netns_list() -> set[str]:
    return {line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines()}


def plug_vm() -> None:
    """vm1 on net-1-0 (vxb5000011 in D1): 10.0.1.11/24, 2001:db8:1::11/64."""
    sh("ip", "netns", "add", "vm1")
    sh("ip", "link", "add", "eth0", "netns", "vm1", "type", "veth", "peer", "name", "vm1p",
       "netns", D1)
    sh("ip", "-n", D1, "link", "set", "vm1p", "master", "vxb5000011", "up")
    for command in ("addr add 10.0.1.11/24 dev eth0", "addr add 2001:db8:1::11/64 dev eth0 "
                    "nodad", "link set eth0 up", "link set lo up",
                    "route add default via 10.0.1.1"):
        sh("ip", "-n", "vm1", *command.split())
    # Addresses the SoftGate routes into D1 and D2 (their `routes`: 198.18.N.0/24).
    sh("ip", "-n", D1, "addr", "add", "198.18.1.1/32", "dev", "lo")
    sh("ip", "-n", D2, "addr", "add", "198.18.2.1/32", "dev", "lo")


def remote_vtep() -> None:
    """hv1, a hypervisor VTEP 10.255.9.1 with vm2 on VNI 5000012 (net-1-1, gateway
    10.1.1.1 in D1), reached over a foreign veth `to-hv1`: the SoftGate's VTEP address
    10.255.2.1 is on its lo. Flood entries stand in for what FRR makes of type-3 routes."""
    for command in ("addr add 10.255.2.1/32 dev lo", "link set lo up",
                    "link add to-hv1 mtu 9000 type veth peer name uplink mtu 9000 netns hv1",
                    "addr add 10.255.255.0/31 dev to-hv1", "link set to-hv1 up",
                    "route add 10.255.9.1/32 via 10.255.255.1 dev to-hv1"):
        if command.startswith("link add"):
            sh("ip", "netns", "add", "hv1")
        sh("ip", *command.split())
    for command in ("addr add 10.255.9.1/32 dev lo", "link set lo up",
                    "addr add 10.255.255.1/31 dev uplink", "link set uplink up",
                    "route add 10.255.2.1/32 via 10.255.255.0 dev uplink",
                    "link add vx1 type vxlan id 5000012 local 10.255.9.1 dstport 4789 "
                    "nolearning ttl 64", "link add br1 type bridge",
                    "link set vx1 master br1 up", "link set br1 up"):
        sh("ip", "-n", "hv1", *command.split())
    sh("bridge", "-n", "hv1", "fdb", "append", "00:00:00:00:00:00", "dev", "vx1", "dst",
       "10.255.2.1")
    sh("bridge", "-n", D1, "fdb", "append", "00:00:00:00:00:00", "dev", "vxv5000012", "dst",
       "10.255.9.1")
    sh("ip", "netns", "add", "vm2")
    sh("ip", "link", "add", "eth0", "netns", "vm2", "type", "veth", "peer", "name", "vm2p",
       "netns", "hv1")
    sh("ip", "-n", "hv1", "link", "set", "vm2p", "master", "br1", "up")
    for command in ("addr add 10.1.1.12/24 dev eth0", "link set eth0 up"):
        sh("ip", "-n", "vm2", *command.split())


def our_routes() -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = []
    for family in ("-4", "-6"):
        routes += json.loads(sh("ip", "-j", family, "route", "show", "proto",
                                str(PROTO)).stdout or "[]")
    return routes


def traffic(report: Report) -> None:
    report.check("vm1 pings its gateway 10.0.1.1", ping("vm1", "10.0.1.1"))
    report.check("vm1 pings its gateway 2001:db8:1::1", ping("vm1", "2001:db8:1::1"))
    report.check("vm2 behind a remote VTEP pings its gateway 10.1.1.1 over VXLAN",
                 ping("vm2", "10.1.1.1"))
    link = sh("ip", "-n", D1, "-d", "link", "show", "vxv5000012").stdout
    report.check("vxv5000012's UDP socket is in the SoftGate namespace (link-netnsid 0)",
                 "link-netnsid 0" in link, link)
    for netns in (D1, D2, D3):
        report.check(f"{netns} pings fe80::1%vxpub", ping(netns, "fe80::1%vxpub"))
    for netns, address in ((D1, "198.18.1.1"), (D2, "198.18.2.1")):
        report.check(f"the SoftGate reaches {address} routed into {netns}",
                     ok("ping", "-c1", "-W1", "-q", address))
    report.check("the SoftGate reaches 2001:db8:1::1 routed into vxr5000010",
                 ok("ping", "-c1", "-W1", "-q", "2001:db8:1::1"))
    answering = [netns for netns in (D1, D2, D3) if ping(netns, "169.254.253.0")]
    report.timings["domains answered from 169.254.253.0 (3 uplinks)"] = len(answering)


def state_checks(report: Report) -> None:
    routes = our_routes()
    devs = {(r["dst"], r.get("dev")) for r in routes}
    report.check("our routes in the SoftGate carry proto 250",
                 {("198.18.1.0/24", "vxp5000010"), ("2001:db8:1::/48", "vxp5000010"),
                  ("198.18.2.0/24", "vxp5000020"), ("203.0.113.0/24", None)} <= devs, devs)
    link = json.loads(sh("ip", "-j", "-n", D1, "-d", "link", "show", "vxv5000011").stdout)[0]
    data, port = link["linkinfo"]["info_data"], link["linkinfo"]["info_slave_data"]
    report.check("vxv5000011: VNI, local, port, nolearning, ttl, mtu, master",
                 (data["id"], data["local"], data["port"], data["learning"], data["ttl"],
                  link["mtu"], link["master"]) ==
                 (5000011, "10.255.2.1", 4789, False, 64, 1500, "vxb5000011"), (data, link))
    report.check("vxv5000011 port: learning off, neigh_suppress on",
                 (port["learning"], port["neigh_suppress"]) == (False, True), port)
    bridge = json.loads(sh("ip", "-j", "-n", D1, "link", "show", "vxb5000011").stdout)[0]
    report.check("vxb5000011 has the gateway MAC", bridge["address"] == "02:00:5e:00:00:01")
    report.check("the L3VNI bridge vxb5000010 has the router MAC 02:00:0a:ff:02:01",
                 mac(D1, "vxb5000010") == ROUTER_MAC, mac(D1, "vxb5000010"))
    sysctl = sh("ip", "netns", "exec", D1, "sysctl", "-n", "net.ipv4.ip_forward",
                "net.bridge.bridge-nf-call-iptables").stdout.split()
    report.check(f"{D1}: ip_forward 1, bridge-nf-call-iptables 0", sysctl == ["1", "0"],
                 sysctl)
    report.check("VLAN domain has bridge vxl3001 with 10.99.0.1/24",
                 "10.99.0.1/24" in sh("ip", "-n", D3, "addr", "show", "vxl3001").stdout)


def mac(netns: str, name: str) -> str:
    return str(json.loads(sh("ip", "-j", "-n", netns, "link", "show", name).stdout)[0]
               ["address"])


def few_sockets(report: Report) -> None:
    """Two sockets open at most (the LRU closes the others): what the handles know of
    a namespace outlives its socket, and nothing is done twice or missed."""
    state = LinksState.from_json(desired())
    with Ipr(max_handles=2) as ipr:
        results = [LinksApplier(ipr).apply(state) for _ in range(2)]
    report.check("with two sockets open at most, re-applies change nothing",
                 all(result.ok and result.changes == [] for result in results),
                 [result.changes for result in results])


def router_mac_repaired(report: Report) -> None:
    """Left to itself a bridge takes its ports' lowest MAC, and FRR would advertise
    that as the router MAC: a changed one is set back, on the bridge as it is."""
    sh("ip", "-n", D1, "link", "set", "vxb5000010", "address", "02:fa:00:00:00:99")
    result = report.timed("re-apply after the router MAC changed", desired())
    report.check("a changed router MAC is set back in place",
                 result.changes == [f"{D1}: set vxb5000010 address {ROUTER_MAC}"]
                 and mac(D1, "vxb5000010") == ROUTER_MAC, result.changes)


def reapply_in_new_process(report: Report, state: dict[str, Any]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(state, file)
        file.flush()
        start = time.perf_counter()
        done = sh(sys.executable, "-m", "tests.functional.links_driver", "reapply", file.name,
                  check=False)
        report.timings["re-apply in a new process (with interpreter start) ms"] = round(
            (time.perf_counter() - start) * 1000, 1)
    answer = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr}
    report.check("a new process re-applies with zero changes",
                 answer.get("ok") is True and answer.get("changes") == [], answer)


def removal(report: Report) -> None:
    result = report.timed("apply without vxr5000020", desired(D1, D3))
    report.check("removal changed something", bool(result.changes))
    for _ in range(50):  # the kernel frees a deleted namespace asynchronously
        if not ok("ip", "link", "show", "vxp5000020"):
            break
        time.sleep(0.01)
    report.check("vxr5000020 namespace gone", D2 not in netns_list(), netns_list())
    report.check("vxp5000020 veth gone", not ok("ip", "link", "show", "vxp5000020"))
    report.check("routes via vxp5000020 gone",
                 not [r for r in our_routes() if r.get("dev") == "vxp5000020"], our_routes())
    report.check("foreign link, routes and namespace untouched", foreign_intact())
    report.check("vxr5000010 still works", ping("vm1", "10.0.1.1"))


def recreated_behind_our_back(report: Report) -> None:
    """One long-lived handle set: after `ip netns del` + `ip netns add` the next apply must
    build the domain into the new namespace, not into the old one our cached socket
    still holds."""
    state = LinksState.from_json(desired(D1, D3))
    with Ipr() as ipr:
        LinksApplier(ipr).apply(state)
        sh("ip", "netns", "del", D3)
        sh("ip", "netns", "add", D3)  # same name, another (empty) namespace
        result = LinksApplier(ipr).apply(state)
        report.check("a namespace remade behind our back is built again",
                     result.ok and any(change.startswith(f"{D3}: add bridge vxl3001 ")
                                       for change in result.changes)
                     and ok("ip", "-n", D3, "link", "show", "vxl3001"), result.changes)
        again = LinksApplier(ipr).apply(state)
        report.check("and then left alone", again.changes == [], again.changes)


def ipr_contract(report: Report) -> None:
    """agent.ipr on the real kernel keeps the contract the fake is tested against; and a
    batch delete never takes a foreign link that happens to be in our group."""
    with Ipr() as ipr:
        for name, passed, detail in contract(ipr, lambda netns, prefix: sh(
                "ip", "-n", netns, "route", "add", "blackhole", prefix)):
            report.check(f"ipr: {name}", passed, detail)
        for name, passed, detail in folded(ipr):
            report.check(f"ipr: {name}", passed, detail)
        ipr.create_netns("grouptest")
        for name in ("cb1", "cb2", "foreign0"):
            ipr.add_bridge("grouptest", name)
        sh("ip", "-n", "grouptest", "link", "set", "foreign0", "group", str(DOOMED_GROUP))
        ipr.delete_links("grouptest", ["cb1", "cb2"])
        report.check("ipr: a batch delete spares a foreign link in our group",
                     sorted(ipr.links("grouptest")) == ["foreign0", "lo"],
                     sorted(ipr.links("grouptest")))
        stale_index(report, ipr)
        ipr.delete_netns("grouptest")


def stale_index(report: Report, ipr: Ipr) -> None:
    """A link deleted and made again behind our back has a new index: a request for it
    must not fail on the index remembered from the last listing."""
    ipr.add_bridge("grouptest", "cb3")
    before = ipr.links("grouptest")["cb3"].index  # remembered from here on
    sh("ip", "-n", "grouptest", "link", "del", "cb3")
    sh("ip", "-n", "grouptest", "link", "add", "cb3", "type", "bridge")
    address = ipaddress.ip_interface("192.0.2.1/24")
    try:
        ipr.add_address("grouptest", "cb3", address)
        after = ipr.link("grouptest", "cb3")
        report.check("ipr: a link made again behind our back is found by its new index",
                     after is not None and after.index != before
                     and address in after.addresses, after)
    except LinkError as exc:
        report.check("ipr: a link made again behind our back is found by its new index",
                     False, exc)


def run() -> dict[str, Any]:
    require_sandbox()
    report = Report()
    ipr_contract(report)
    foreign_objects()
    report.timed("apply of vxr5000010 alone", desired(D1))
    # With one uplink only: the SoftGate answers from 169.254.253.0 (with several, the
    # same /31 on every vxp<N> sends its own replies out one of them: see the docs).
    report.check(f"{D1} pings the SoftGate end 169.254.253.0", ping(D1, "169.254.253.0"))
    first = report.timed("first apply", desired())
    report.timings["first apply changes"] = len(first.changes)
    touched = [c for c in first.changes if D1 in c or "vxp5000010" in c]
    report.check("adding two domains leaves vxr5000010 alone", not touched, touched)
    plug_vm()
    remote_vtep()
    traffic(report)
    state_checks(report)
    again = report.timed("re-apply in process", desired())
    report.check("re-apply in the same process changes nothing", again.changes == [],
                 again.changes)
    reapply_in_new_process(report, desired())
    few_sockets(report)
    router_mac_repaired(report)
    removal(report)
    recreated_behind_our_back(report)
    report.check("foreign objects untouched at the end", foreign_intact())
    return {"checks": report.checks, "timings": report.timings}


def reapply(path: str) -> dict[str, Any]:
    require_sandbox()
    with open(path) as file:
        state = LinksState.from_json(json.load(file))
    with Ipr() as ipr:
        result = LinksApplier(ipr).apply(state)
    return {"ok": result.ok, "changes": result.changes,
            "statuses": [asdict(s) for s in result.statuses if s.state != "ok"]}


def main(argv: list[str]) -> int:
    answer = reapply(argv[1]) if argv[:1] == ["reapply"] else run()
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
