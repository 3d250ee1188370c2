"""The demo: a whole cloud on this machine, vxgate registered, tenants built through
CloudStack's API, and one PASS/FAIL line per check, with timings.

    python -m simulator.demo          # then keeps the cloud running until stopped
    python -m simulator.demo --once   # tears it down after the report (CI)

Everything is in network namespaces with documentation addresses; stopping (SIGTERM or
Ctrl-C) removes every namespace and process the demo started.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from simulator.cloud import TOPOLOGY, Cloud, running_cloud
from simulator.fabric import FabricError, missing_prerequisites, wait_until
from simulator.traffic import FETCH, connect, server_in

USER_DATA = "#cloud-config\nhostname: web1\n"
CHECK_TIMEOUT_S = 15.0
INTERNET_HOST = TOPOLOGY.internet_host  # on up1: "the internet"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: int = 0

    def check(self, what: str, condition: Callable[[], bool],
              timeout: float = CHECK_TIMEOUT_S, since: float | None = None) -> bool:
        """PASS with the seconds until `condition` held (counted from `since`, a
        time.monotonic() value, if given), or FAIL after `timeout`."""
        start = time.monotonic() if since is None else since
        try:
            wait_until(what, condition, timeout=timeout)
        except FabricError:
            self.failures += 1
            self.say(f"FAIL  {what} (not within {timeout:.0f} s)")
            return False
        self.say(f"PASS  {what} ({time.monotonic() - start:.2f} s)")
        return True

    def step(self, what: str, action: Callable[[], Any]) -> Any:
        start = time.monotonic()
        result = action()
        self.say(f"      {what} ({time.monotonic() - start:.2f} s)")
        return result

    def say(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)


def run_demo(cloud: Cloud, report: Report) -> None:
    api, zone = cloud.api, cloud.zone()
    for line in cloud.registration:
        report.say(f"      vxgate cloudstack register: {line}")
    hosts = {h["name"]: h["id"] for h in api.listHosts(fetch_list=True)}
    net = report.step("createNetwork net1 10.100.0.0/24 (vxgate-isolated-natted)",
                      lambda: api.createNetwork(
                          name="net1", displaytext="net1", zoneid=zone,
                          networkofferingid=cloud.offering("vxgate-isolated-natted"),
                          gateway="10.100.0.1", netmask="255.255.255.0")["network"])
    def deploy(name: str, host: str) -> dict[str, Any]:
        started = time.monotonic()  # VM start: CloudStack's own work is part of it
        vm: dict[str, Any] = api.deployVirtualMachine(
            zoneid=zone, serviceofferingid="small", templateid="debian", name=name,
            networkids=net["id"], hostid=hosts[host],
            userdata=base64.b64encode(USER_DATA.encode()).decode())["virtualmachine"]
        return {**vm, "started": started}

    web = []
    for name, host, what in (("web1", "hv1", "the network's first VM: implements net1"),
                             ("web2", "hv2", "net1 is up")):
        vm = report.step(f"deployVirtualMachine {name} on {host} ({what})",
                         partial(deploy, name, host))
        address = vm["nic"][0]["ipaddress"]
        report.check(f"{name} gets {address} by DHCP, counted from its start",
                     partial(has_lease, cloud, vm, address), since=vm["started"])
        web.append(vm)
    isolated_checks(cloud, report, net, web)
    vpc_checks(cloud, report, hosts)


def isolated_checks(cloud: Cloud, report: Report, net: dict[str, Any],
                    web: list[dict[str, Any]]) -> None:
    api, fabric = cloud.api, cloud.fabric
    web1, web2 = web
    report.check("web1 (hv1) pings web2 (hv2) over EVPN, counted from web2's start",
                 lambda: cloud.exec(web1["id"], "ping", "-c1", "-W1",
                                    web2["nic"][0]["ipaddress"]).returncode == 0,
                 since=web2["started"])
    source_nat = api.listPublicIpAddresses(associatednetworkid=net["id"], issourcenat="true",
                                           fetch_list=True)[0]["ipaddress"]
    with server_in(fabric, "up1", 7001):
        report.check(f"web1 reaches the internet as {source_nat} (source NAT)", lambda: connect(
            fabric, cloud.node(web1["id"]), INTERNET_HOST, 7001) == source_nat)
    report.check("web1 reads its user data from the SoftGate", lambda: cloud.exec(
        web1["id"], "python3", "-c", FETCH, "http://10.100.0.1/latest/user-data"
    ).stdout == USER_DATA)
    static = api.associateIpAddress(networkid=net["id"])["ipaddress"]
    api.enableStaticNat(ipaddressid=static["id"], virtualmachineid=web1["id"])
    shared = api.associateIpAddress(networkid=net["id"])["ipaddress"]
    with server_in(fabric, cloud.node(web1["id"]), 80, "web1"), \
            server_in(fabric, cloud.node(web2["id"]), 80, "web2"):
        report.step("createPortForwardingRule 2222 -> web2:80", lambda: api.
                    createPortForwardingRule(ipaddressid=shared["id"], privateport=80,
                                             publicport=2222, protocol="tcp",
                                             virtualmachineid=web2["id"]))
        report.check("the internet reaches web2 through the port forward", lambda: connect(
            fabric, "up1", shared["ipaddress"], 2222) != "", timeout=1)
        report.check(f"static NAT {static['ipaddress']} is closed without a firewall rule",
                     lambda: connect(fabric, "up1", static["ipaddress"], 80) == "", timeout=1)
        report.step("createFirewallRule tcp/80 on the static NAT address", lambda: api.
                    createFirewallRule(ipaddressid=static["id"], protocol="tcp",
                                       startport=80, endport=80, cidrlist="0.0.0.0/0"))
        report.check("the internet reaches web1 through static NAT", lambda: connect(
            fabric, "up1", static["ipaddress"], 80) != "", timeout=1)
        lb = report.step("createLoadBalancerRule :8080 -> web1, web2 :80", lambda: api.
                         createLoadBalancerRule(publicipid=shared["id"], name="web",
                                                publicport=8080, privateport=80,
                                                algorithm="roundrobin")["loadbalancer"])
        api.assignToLoadBalancerRule(id=lb["id"],
                                     virtualmachineids=f"{web1['id']},{web2['id']}")
        report.check("the load balancer spreads over web1 and web2", lambda: {
            connect(fabric, "up1", shared["ipaddress"], 8080) for _ in range(6)} == {
            "web1", "web2"}, timeout=3)
        report.step("stopVirtualMachine web2", lambda: api.stopVirtualMachine(id=web2["id"]))
        report.check("the load balancer skips the stopped web2", lambda: {
            connect(fabric, "up1", shared["ipaddress"], 8080) for _ in range(6)} == {
            "web1"})


def has_lease(cloud: Cloud, vm: dict[str, Any], address: str) -> bool:
    return cloud.leased(vm["id"]).get("new_ip_address") == address


def vpc_checks(cloud: Cloud, report: Report, hosts: dict[str, str]) -> None:
    api, zone = cloud.api, cloud.zone()
    vpc = report.step("createVPC vpc1 10.1.0.0/16", lambda: api.createVPC(
        name="vpc1", displaytext="vpc1", cidr="10.1.0.0/16", zoneid=zone,
        vpcofferingid=cloud.offering("vxgate-vpc"))["vpc"])
    acl = api.createNetworkACLList(name="open", vpcid=vpc["id"])["networkacllist"]
    for number, traffic in ((10, "ingress"), (20, "egress")):
        api.createNetworkACL(aclid=acl["id"], protocol="all", traffictype=traffic,
                             action="allow", cidrlist="0.0.0.0/0", number=number)
    tiers = [api.createNetwork(name=name, displaytext=name, zoneid=zone, vpcid=vpc["id"],
                               networkofferingid=cloud.offering("vxgate-vpc-tier"),
                               gateway=gateway, netmask="255.255.255.0",
                               aclid=acl["id"])["network"]
             for name, gateway in (("tier1", "10.1.1.1"), ("tier2", "10.1.2.1"))]
    def deploy(name: str, tier: dict[str, Any], host: str) -> dict[str, Any]:
        vm: dict[str, Any] = api.deployVirtualMachine(
            zoneid=zone, serviceofferingid="small", templateid="debian", name=name,
            networkids=tier["id"], hostid=hosts[host])["virtualmachine"]
        return vm

    app, db = (report.step(f"deployVirtualMachine {name} in {tier['name']} on {host}",
                           partial(deploy, name, tier, host))
               for name, tier, host in (("app1", tiers[0], "hv1"), ("db1", tiers[1], "hv2")))
    for vm in (app, db):
        address = vm["nic"][0]["ipaddress"]
        report.check(f"{vm['name']} gets {address} by DHCP", partial(has_lease, cloud, vm, address))
    report.check("app1 (tier1) pings db1 (tier2) through the VPC", lambda: cloud.exec(
        app["id"], "ping", "-c1", "-W1", db["nic"][0]["ipaddress"]).returncode == 0)
    source_nat = vpc.get("publicip", "")
    with server_in(cloud.fabric, "up1", 7002):
        report.check(f"db1 reaches the internet as {source_nat} (VPC source NAT)",
                     lambda: connect(cloud.fabric, cloud.node(db["id"]), INTERNET_HOST,
                                     7002) == source_nat)
    deny = report.step("createNetworkACL #5 deny icmp ingress", lambda: api.createNetworkACL(
        aclid=acl["id"], protocol="icmp", traffictype="ingress", action="deny", number=5,
        cidrlist="0.0.0.0/0")["networkacl"])
    report.check("the ACL deny blocks app1's ping to db1", lambda: cloud.exec(
        app["id"], "ping", "-c1", "-W1", db["nic"][0]["ipaddress"]).returncode != 0,
        timeout=1)
    report.step("deleteNetworkACL #5", lambda: api.deleteNetworkACL(id=deny["id"]))
    report.check("removing the deny lets the ping through again", lambda: cloud.exec(
        app["id"], "ping", "-c1", "-W1", db["nic"][0]["ipaddress"]).returncode == 0,
        timeout=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true",
                        help="tear the cloud down after the report")
    args = parser.parse_args(argv)
    reason = missing_prerequisites()
    if reason:
        print(f"demo: cannot run here: {reason}", file=sys.stderr)
        return 2
    report = Report()
    start = time.monotonic()
    with running_cloud() as cloud:
        report.say(f"      cloud up: fabric {cloud.timings['fabric up']:.2f} s, vxgate "
                   f"registered {cloud.timings['vxgate registered']:.2f} s")
        run_demo(cloud, report)
        spawns = len(cloud.spawned())
        report.say(f"{'FAILED' if report.failures else 'ALL PASSED'}: "
                   f"{report.failures} failed; {spawns} extension calls; "
                   f"{time.monotonic() - start:.1f} s")
        if not args.once:
            print(f"\nThe cloud keeps running (CloudStack API {cloud.cloudstack.endpoint}, "
                  f"namespaces {cloud.fabric.prefix}*).\nStop it with:  kill {os.getpid()}"
                  "   (or Ctrl-C here)", flush=True)
            wait_for_stop()
    return 1 if report.failures else 0


def wait_for_stop() -> None:
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()


if __name__ == "__main__":
    sys.exit(main())
