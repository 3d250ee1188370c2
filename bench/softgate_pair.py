"""python -m bench.softgate_pair [--rounds N]: failover and fail-back of a SoftGate pair.

The simulated cloud with two SoftGates (simulator/cloud.py, `PAIR`): sg1 active, sg2 its
standby (its EVPN and upstream routes carry a longer AS path; docs/softgate-pair.md). A VM
on hv1 has source NAT and a static NAT address open to ICMP. Three streams run through
the SoftGate: a 20 ms ping from the VM to the internet host (egress, source NAT), a 20 ms
ping from the internet host to the VM's static NAT address (ingress), and one TCP
connection from the VM to an echo server on the internet host, a line every 20 ms.

Each round cuts every link of sg1 (its fabric uplink and its WAN link: the box is gone
from the network as if unplugged; its peers see the carrier drop, BFD covers a silent
death), waits until all three streams flow again through sg2, opens a new connection,
then restores the links and waits until up1 and the hypervisors prefer sg1 again.
Printed per stream: the failover gap (longest time without a reply from the cut on) and
the fail-back gap (from the restore on); and whether the TCP connection survived.
Goal: failover <= 3 s with the TCP session alive (issue 7); fail-back without an outage.

Two ingress pings: "ingress ping" from up1's own address on the link it sends through
(so it changes source when up1 reroutes, as a new flow would), "ingress ping, internet
host" from the internet host's fixed address (an existing flow). They differ while the
two directions take different SoftGates: on fail-back sg1 has the fabric (the hypervisors
send the replies to it) before it announces the pools upstream again (up to FRR's
conditional-advertisement timer later, docs/softgate-pair.md); a reply only passes a
SoftGate whose conntrack knows the flow, which for a flow begun on the standby needs
conntrack synchronisation.

Then (`--partial N`, default 3) rounds of a partial failure: only sg1's fabric uplink is
cut, its WAN stays up. sg1 must stop announcing the public pools upstream (within FRR's
conditional-advertisement timer) so that ingress moves to sg2 instead of being
black-holed; the links are restored as above.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from bench.cloud import summary
from provider_service.frr_intent import FABRIC_CONDITION_TIMER_S
from provider_service.softgate_domains import GATEWAY_MAC  # every guest bridge's
from simulator.cloud import Cloud, running_cloud
from simulator.evpn_fabric import evpn_paths
from simulator.fabric import FabricError, missing_prerequisites, wait_until
from simulator.topology import Topology
from simulator.traffic import (
    PingStream,
    TcpStream,
    connect,
    ping_stream,
    server_in,
    tcp_stream,
)

FAILOVER_GOAL_S = 3.0
# "Bring it back: no second outage." Under TCP's initial retransmission timeout (1 s):
# no connection notices, and a new one's first SYN is not resent.
FAILBACK_GOAL_S = 1.0
PAIR = Topology(spines=1, leaves=0, hypervisors=2, softgates=2)
ACTIVE, STANDBY = PAIR.softgate_names
SETTLE_S = 0.5  # replies flowing this long: the outage is over
ECHO_PORT, NEW_CONNECTION_PORT, PUSH_PORT = 7001, 7002, 7003
# A partial failure (fabric uplink lost, WAN up) ends when FRR's next conditional-
# advertisement check withdraws sg1's announcements: at most its timer, plus convergence.
PARTIAL_GOAL_S = FABRIC_CONDITION_TIMER_S + 1.0


@dataclass(frozen=True)
class Round:
    failover: dict[str, float]  # stream -> longest gap from the cut on, seconds
    failback: dict[str, float]  # stream -> longest gap from the restore on
    tcp_error: str  # "" when both TCP connections survived both moves
    new_connection: str  # what a connection opened while on the standby was answered


def pair_vm(cloud: Cloud) -> dict[str, Any]:
    """A VM on hv1 in a new isolated network, with a static NAT address open to ICMP."""
    api = cloud.api
    net = cloud.isolated_network("pairnet", "10.120.0.1")
    vm = cloud.deploy("streamer", net["id"], "hv1")
    static = api.associateIpAddress(networkid=net["id"])["ipaddress"]
    api.enableStaticNat(ipaddressid=static["id"], virtualmachineid=vm["id"])
    api.createFirewallRule(ipaddressid=static["id"], protocol="icmp", icmptype=-1,
                           icmpcode=-1, cidrlist="0.0.0.0/0")
    cloud.lease(vm["id"])
    return {**vm, "public": static["ipaddress"]}


def set_links(cloud: Cloud, node: str, up: bool) -> None:
    """Every link of the node down (unplugged) or up again, on the node's side."""
    for link in cloud.topology.links():
        if link.node == node:
            cloud.fabric.ip(node, "link", "set", link.interface, "up" if up else "down")


def set_fabric_links(cloud: Cloud, node: str, up: bool) -> None:
    """Only the node's fabric uplinks down or up again: its WAN link stays up."""
    for link in cloud.topology.fabric_links():
        if link.node == node:
            cloud.fabric.ip(node, "link", "set", link.interface, "up" if up else "down")


def served_by(cloud: Cloud, softgate: str, public: str) -> bool:
    """Whether up1 routes the public address to `softgate` and hv1 sends the guests'
    gateway MAC to its VTEP: both directions go through it."""
    topology, fabric = cloud.topology, cloud.fabric
    wan = next(link for link in topology.wan_links() if link.node == softgate)
    via = wan.address.split("/")[0]
    route = fabric.exec("up1", "ip", "route", "get", public, check=False).stdout
    fdb = fabric.exec("hv1", "bridge", "fdb", "show").stdout
    vtep = topology.loopback(softgate)
    return f"via {via} " in route and any(
        line.startswith(GATEWAY_MAC) and f"dst {vtep} " in line + " "
        for line in fdb.splitlines())


def applied_all(cloud: Cloud, device: str) -> bool:
    """Whether the device's agent reports every artifact of its config applied (it
    reports the device's generation, which an unchanged artifact's lags), all ok."""
    config = cloud.service.ok("GET", f"/v1/devices/{device}/config")["artifacts"]
    status = cloud.service.ok("GET", f"/v1/devices/{device}/status")["objects"]
    applied = {o["id"]: o["generation"] for o in status if o["kind"] == "artifact"}
    return all(applied.get(name, -1) >= artifact["generation"]
               for name, artifact in config.items()) and all(
        o["state"] == "ok" for o in status)


def standing_by(cloud: Cloud, softgate: str, vm: dict[str, Any]) -> bool:
    """Whether `softgate` could take over the VM at once: its agent applied everything,
    it knows the VM's MAC from hv1 (the address it learns by ARP: hv1 has none on the
    guest bridge), hv1 holds its route to the guests' gateway, and up1 its path to the
    public address. (Any of them missing, a failover waits for the agent or BGP, not
    for the fabric to notice the loss.)"""
    topology = cloud.topology
    vtep = topology.loopback(softgate)
    nic = vm["nic"][0]
    wan = next(link for link in topology.wan_links() if link.node == softgate)
    up1 = cloud.fabric.vtysh("up1", f"show ip bgp {vm['public']}")
    return (applied_all(cloud, softgate)
            and any(f"[{nic['macaddress']}]" in prefix
                    for prefix, _ in evpn_paths(cloud.fabric, softgate, "macip"))
            and any(prefix.endswith(f"[{GATEWAY_MAC}]:[32]:[{nic['gateway']}]")
                    and hop == vtep
                    for prefix, hop in evpn_paths(cloud.fabric, "hv1", "macip"))
            and f"{wan.address.split('/')[0]}({softgate}) from" in up1)


def domain_conntrack(cloud: Cloud, node: str) -> str:
    """`conntrack -L` of every routing domain of the node (in its agent's namespaces)."""
    fabric = cloud.fabric
    zebra = str(fabric.pid(node, "zebra"))
    return "".join(
        subprocess.run(["nsenter", "-t", zebra, "-m", "ip", "netns", "exec", netns.name,
                        "conntrack", "-L"], capture_output=True, text=True,
                       check=False).stdout
        for netns in sorted(fabric.private_netns_dir(node).iterdir()))


def holds_connections(cloud: Cloud, node: str, ports: tuple[int, ...]) -> bool:
    """Whether the node's domains track an established TCP connection to each port."""
    table = domain_conntrack(cloud, node)
    return all(any("ESTABLISHED" in line and f"dport={port} " in line
                   for line in table.splitlines()) for port in ports)


def failover_round(cloud: Cloud, vm: dict[str, Any]) -> Round:
    """Every link of sg1 cut, then restored."""
    return _round(cloud, vm, lambda up: set_links(cloud, ACTIVE, up), FAILOVER_GOAL_S)


def partial_round(cloud: Cloud, vm: dict[str, Any]) -> Round:
    """Only sg1's fabric uplinks cut (its WAN and upstream session stay up), then
    restored: its upstream announcements must go with the fabric."""
    return _round(cloud, vm, lambda up: set_fabric_links(cloud, ACTIVE, up), PARTIAL_GOAL_S)


def _round(cloud: Cloud, vm: dict[str, Any], links: Callable[[bool], None],
           goal: float) -> Round:
    fabric, internet = cloud.fabric, cloud.topology.internet_host
    node = cloud.node(vm["id"])
    with ExitStack() as stack:
        egress = stack.enter_context(ping_stream(fabric, node, internet))
        ingress = stack.enter_context(ping_stream(fabric, "up1", vm["public"]))
        client = stack.enter_context(ping_stream(fabric, "up1", vm["public"],
                                                  source=internet))
        tcp = stack.enter_context(tcp_stream(fabric, node, "up1", internet, ECHO_PORT))
        pushed = stack.enter_context(tcp_stream(fabric, node, "up1", internet, PUSH_PORT,
                                                pushed=True))
        streams = {"egress ping": egress, "ingress ping": ingress,
                   "ingress ping, internet host": client}
        connections = {"tcp echo": tcp, "tcp pushed": pushed}

        def flowing(since: float) -> bool:
            return all(s.replying_since(since, SETTLE_S) for s in streams.values()) \
                and all(c.echoing_since(since, SETTLE_S) for c in connections.values())

        def waiting(what: str, since: float, timeout: float) -> None:
            try:
                wait_until(what, lambda: flowing(since), timeout=timeout, interval=0.05)
            except FabricError as error:
                raise FabricError(f"{error}: {stream_states(since)}") from None

        def stream_states(since: float) -> str:
            states = [f"{name} {'flowing' if s.replying_since(since, SETTLE_S) else 'not'}"
                      for name, s in streams.items()]
            states += [f"{name} {'flowing' if c.echoing_since(since, SETTLE_S) else 'not'} "
                       f"({c.broken() or 'open'})" for name, c in connections.items()]
            return ", ".join(states)

        waiting("the streams to flow through sg1", 0.0, timeout=15)
        wait_until(f"{STANDBY} to stand by for the VM", lambda: standing_by(cloud, STANDBY, vm),
                   timeout=30, interval=0.2)
        wait_until(f"{STANDBY} to hold the state of both connections (conntrack sync)",
                   lambda: holds_connections(cloud, STANDBY, (ECHO_PORT, PUSH_PORT)),
                   timeout=10, interval=0.1)
        cut = time.time()
        links(False)
        # A round that fails leaves the links as they were, for the next round or test.
        stack.callback(links, True)
        waiting("the streams to flow through sg2", cut, timeout=4 * goal)
        with server_in(fabric, "up1", NEW_CONNECTION_PORT):
            answer = connect(fabric, node, internet, NEW_CONNECTION_PORT)
        restored = time.time()
        links(True)
        wait_until("up1 and hv1 to prefer sg1 again",
                   lambda: served_by(cloud, ACTIVE, vm["public"]), timeout=30, interval=0.1)
        back = time.time()
        waiting("the streams to flow through sg1 again", back, timeout=4 * goal)
    flows: dict[str, PingStream | TcpStream] = {**streams, **connections}
    return Round(
        failover={name: s.longest_gap(cut, restored) for name, s in flows.items()},
        failback={name: s.longest_gap(restored, s.ended) for name, s in flows.items()},
        tcp_error="; ".join(f"{name}: {c.broken()}" for name, c in connections.items()
                            if c.broken()),
        new_connection=answer)


def _report(title: str, what: str, rounds: list[Round], goal: float) -> list[str]:
    print(f"SoftGate pair, {len(rounds)} rounds of cutting {what} of {ACTIVE}:")
    print(f" {title} (longest gap from the cut, traffic moved to the standby):")
    for name in rounds[0].failover:
        print(summary(name, [r.failover[name] for r in rounds], goal))
    print(" fail-back (longest gap from restoring the links, traffic back on sg1):")
    for name in rounds[0].failback:
        print(summary(name, [r.failback[name] for r in rounds], FAILBACK_GOAL_S))
    broken = [r.tcp_error for r in rounds if r.tcp_error]
    print(f" TCP connection survived: {len(rounds) - len(broken)} of {len(rounds)} rounds"
          + (f" ({broken[0]})" if broken else ""))
    print(" new connection during failover answered: "
          f"{sum(bool(r.new_connection) for r in rounds)} of {len(rounds)}")
    return broken


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.softgate_pair", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="failovers and fail-backs")
    parser.add_argument("--partial", type=int, default=3,
                        help="rounds cutting only sg1's fabric uplink (its WAN stays up)")
    args = parser.parse_args(argv)
    reason = missing_prerequisites()
    if reason:
        print(f"bench.softgate_pair: {reason}", file=sys.stderr)
        return 2
    with running_cloud(topology=PAIR) as cloud:
        vm = pair_vm(cloud)
        wait_until("sg1 to serve the VM", lambda: served_by(cloud, ACTIVE, vm["public"]),
                   timeout=30)
        rounds = [failover_round(cloud, vm) for _ in range(args.rounds)]
        partial = [partial_round(cloud, vm) for _ in range(args.partial)]
    broken = _report("failover", "every link", rounds, FAILOVER_GOAL_S) if rounds else []
    if partial:
        broken += _report("partial failover", "only the fabric uplink", partial,
                          PARTIAL_GOAL_S)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
