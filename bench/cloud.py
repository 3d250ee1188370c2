"""python -m bench.cloud [--vms N] [--rules N] [--migrations N]: convergence in the
simulated cloud.

The whole cloud (simulator/cloud.py: real FRR fabric, SoftGate agent, CloudStack
stand-in driven with the `cs` client, KVM agent, DHCP clients). Measured, N times each:
- VM start -> reachable from another hypervisor: deployVirtualMachine on hv2 is called,
  then a VM on hv1 pings the new VM's address until it answers. The clock starts when the
  API call is made (it includes CloudStack's own spawns of the extension) and is also
  reported from the call's return. Two cases: hv2 already has a VM of the network (its
  VXLAN segment is up), and the new VM is the network's first on hv2 (the KVM agent
  makes the segment, and EVPN announces it), each in a network of its own. Goal: <= 2 s.
- rule created -> traffic flowing: createPortForwardingRule, createFirewallRule (ingress,
  on a static NAT address), assignToLoadBalancerRule, each timed from the API call until
  the internet host (up1) gets through. Goal: <= 1 s.
- live migration -> reachable again: migrateVirtualMachine between hv2 and hv1, the
  longest gap in replies of a 20 ms ping stream from a VM on hv1 (east-west) and one
  from the internet host to the VM's static NAT address (north-south). Goal: <= 2 s.
Probes are processes in namespaces (~50 ms each), so figures are good to about 0.1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from simulator.cloud import Cloud, running_cloud
from simulator.fabric import FabricError, missing_prerequisites, wait_until
from simulator.traffic import connect, ping_stream, server_in

VM_GOAL_S = 2.0
RULE_GOAL_S = 1.0
MIGRATION_GOAL_S = 2.0
SETTLE_S = 0.3  # replies flowing this long after a migration: the stream has seen it end
GIVE_UP_S = 30.0


def seconds_until(condition: Callable[[], bool], since: float) -> float:
    """Seconds from `since` (a time.monotonic()) until `condition` holds, probed back to
    back; infinite if it never does."""
    try:
        wait_until("a figure", condition, timeout=GIVE_UP_S, interval=0)
    except FabricError:
        return float("inf")
    return time.monotonic() - since


class Bench:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud, self.api, self.zone = cloud, cloud.api, cloud.zone()
        self.hosts = {h["name"]: h["id"] for h in self.api.listHosts(fetch_list=True)}
        self.networks = 0
        self.net, self.pinger = self.network_with_pinger()
        self.deploy(self.net, "warm-up", "hv2")  # hv2 has the segment from now on

    def network_with_pinger(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A new isolated network with its first VM (the pinger) on hv1, leased."""
        self.networks += 1
        net = self.api.createNetwork(
            name=f"bench{self.networks}", displaytext="bench", zoneid=self.zone,
            networkofferingid=self.cloud.offering("vxgate-isolated-natted"),
            gateway=f"10.{100 + self.networks}.0.1", netmask="255.255.255.0")["network"]
        pinger = self.deploy(net, f"pinger{self.networks}", "hv1")
        self.cloud.lease(pinger["id"])
        return net, pinger

    def deploy(self, net: dict[str, Any], name: str, host: str) -> dict[str, Any]:
        vm: dict[str, Any] = self.api.deployVirtualMachine(
            zoneid=self.zone, serviceofferingid="small", templateid="debian", name=name,
            networkids=net["id"], hostid=self.hosts[host])["virtualmachine"]
        return vm

    def vm_start(self, net: dict[str, Any], pinger: dict[str, Any], name: str
                 ) -> tuple[float, float]:
        """(from the call, from its return) until the new hv2 VM answers hv1's ping."""
        called = time.monotonic()
        vm = self.deploy(net, name, "hv2")
        returned = time.monotonic()
        address = vm["nic"][0]["ipaddress"]
        reached = seconds_until(lambda: self.cloud.exec(
            pinger["id"], "ping", "-c1", "-W0.2", address).returncode == 0, called)
        return reached, reached - (returned - called)

    def vm_start_beside_others(self, index: int) -> tuple[float, float]:
        return self.vm_start(self.net, self.pinger, f"vm{index}")

    def vm_start_first_on_host(self, index: int) -> tuple[float, float]:
        net, pinger = self.network_with_pinger()
        return self.vm_start(net, pinger, f"first{index}")

    def migrations(self, count: int) -> list[dict[str, float]]:
        """`count` live migrations of a VM between hv2 and hv1, each timed as the longest
        gap in a ping stream from the pinger (hv1) and one from the internet host."""
        api = self.api
        mover = self.deploy(self.net, "mover", "hv2")
        static = api.associateIpAddress(networkid=self.net["id"])["ipaddress"]
        api.enableStaticNat(ipaddressid=static["id"], virtualmachineid=mover["id"])
        api.createFirewallRule(ipaddressid=static["id"], protocol="icmp", icmptype=-1,
                               icmpcode=-1, cidrlist="0.0.0.0/0")
        self.cloud.lease(mover["id"])
        return [migration_gaps(self.cloud, self.pinger, mover, static["ipaddress"],
                               self.hosts["hv1" if index % 2 == 0 else "hv2"])
                for index in range(count)]

    def rules(self, index: int) -> dict[str, float]:
        """Seconds from each rule's API call to the first connection through it."""
        api, fabric, pinger = self.api, self.cloud.fabric, self.pinger
        forwarded = api.associateIpAddress(networkid=self.net["id"])["ipaddress"]
        static = api.associateIpAddress(networkid=self.net["id"])["ipaddress"]
        api.enableStaticNat(ipaddressid=static["id"], virtualmachineid=pinger["id"])
        port = 9000 + index
        figures: dict[str, float] = {}
        with server_in(fabric, self.cloud.node(pinger["id"]), port, "pinger"):
            def reaches(address: str, public_port: int) -> Callable[[], bool]:
                return lambda: connect(fabric, "up1", address, public_port) == "pinger"

            called = time.monotonic()
            api.createPortForwardingRule(ipaddressid=forwarded["id"], privateport=port,
                                         publicport=port, protocol="tcp",
                                         virtualmachineid=pinger["id"])
            figures["port forward"] = seconds_until(reaches(forwarded["ipaddress"], port),
                                                    called)
            called = time.monotonic()
            api.createFirewallRule(ipaddressid=static["id"], protocol="tcp", startport=port,
                                   endport=port, cidrlist="0.0.0.0/0")
            figures["firewall rule"] = seconds_until(reaches(static["ipaddress"], port),
                                                     called)
            shared = api.associateIpAddress(networkid=self.net["id"])["ipaddress"]
            lb = api.createLoadBalancerRule(publicipid=shared["id"], name=f"lb{index}",
                                            publicport=port, privateport=port,
                                            algorithm="roundrobin")["loadbalancer"]
            called = time.monotonic()
            api.assignToLoadBalancerRule(id=lb["id"], virtualmachineids=pinger["id"])
            figures["load balancer"] = seconds_until(reaches(shared["ipaddress"], port),
                                                     called)
        for ip in (forwarded, static, shared):
            api.disassociateIpAddress(id=ip["id"])
        return figures


def migration_gaps(cloud: Cloud, pinger: dict[str, Any], mover: dict[str, Any],
                   public_address: str, target_host_id: str) -> dict[str, float]:
    """Migrates `mover` to the target host inside two 20 ms ping streams, one from
    `pinger` to its address (east-west), one from the internet host to its static NAT
    address (north-south); each stream's longest gap in replies, in seconds."""
    address = mover["nic"][0]["ipaddress"]
    with ping_stream(cloud.fabric, cloud.node(pinger["id"]), address) as east_west, \
            ping_stream(cloud.fabric, "up1", public_address) as north_south:
        streams = {"east-west": east_west, "north-south": north_south}
        wait_until("both streams to get replies", lambda: all(
            stream.replying_since(0.0) for stream in streams.values()), timeout=10)
        moved_at = time.time()
        cloud.api.migrateVirtualMachine(virtualmachineid=mover["id"], hostid=target_host_id)
        wait_until("both streams to get replies again after the migration", lambda: all(
            stream.replying_since(moved_at, SETTLE_S) for stream in streams.values()),
            timeout=4 * MIGRATION_GOAL_S, interval=0.05)
    return {name: stream.longest_gap() for name, stream in streams.items()}


def summary(name: str, samples: Sequence[float], goal: float) -> str:
    ordered = sorted(samples)
    worst = ordered[-1]
    return (f"  {name:<44} min {ordered[0]:.2f}  median {statistics.median(ordered):.2f}  "
            f"max {worst:.2f} s  (n={len(ordered)}, goal <= {goal:.0f} s: "
            f"{'met' if worst <= goal else 'MISSED'})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cloud", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=10, help="VM starts to time")
    parser.add_argument("--rules", type=int, default=5, help="rounds of rules to time")
    parser.add_argument("--migrations", type=int, default=6,
                        help="live migrations to time (hv2 -> hv1, back, ...)")
    args = parser.parse_args(argv)
    reason = missing_prerequisites()
    if reason:
        print(f"bench.cloud: {reason}", file=sys.stderr)
        return 2
    with running_cloud() as cloud:
        print(f"cloud up: {', '.join(f'{k} {v:.2f} s' for k, v in cloud.timings.items())}")
        bench = Bench(cloud)
        beside = [bench.vm_start_beside_others(i) for i in range(args.vms)]
        first = [bench.vm_start_first_on_host(i) for i in range(args.vms)]
        rounds = [bench.rules(i) for i in range(args.rules)]
        moves = bench.migrations(args.migrations)
        failed = cloud.failed_spawns()
    print("VM start -> reachable from another hypervisor (hv2 VM pinged from hv1):")
    for case, starts in (("hv2 has the network already", beside),
                         ("the network's first VM on hv2", first)):
        print(f" {case}:")
        print(summary("from the deployVirtualMachine call", [s[0] for s in starts],
                      VM_GOAL_S))
        print(summary("from the call's return", [s[1] for s in starts], VM_GOAL_S))
    print("rule created -> traffic flowing (from the API call, internet host on up1):")
    for name in rounds[0]:
        print(summary(name, [r[name] for r in rounds], RULE_GOAL_S))
    if moves:
        print("live migration -> longest gap in a 20 ms ping stream (hv2 <-> hv1):")
        for name in moves[0]:
            print(summary(name, [move[name] for move in moves], MIGRATION_GOAL_S))
    if failed:
        print(f"failed extension spawns: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
