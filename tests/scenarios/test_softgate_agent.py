"""The SoftGate as the agent builds it, end to end over the EVPN fabric, with real traffic.

sg1's agent applies the softgate.json and frr.conf the service renders; the VMs sit on
the hypervisors behind VXLAN, the internet host (192.0.2.1) on up1 behind eBGP. Each
test changes the desired state through the API only, and waits for traffic, not for
the agent.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from simulator.evpn_fabric import INTERNET_HOST, PHYSNET, ZONE, SmallFabric
from simulator.fabric import Fabric, run, wait_until
from simulator.traffic import FETCH, connect, ping_stream, server_in
from tests.golden.softgate_cases import DNS, USER_DATA, port_forward, vm

# One A query over UDP; prints the first answer's address, or why there is none.
RESOLVE = r"""
import socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
query = struct.pack("!6H", 0x5678, 0x0100, 1, 0, 0, 0) + b"".join(
    bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!2H", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.0)
s.sendto(query, (server, 53))
try:
    answer = s.recv(512)
except OSError as e:
    print("ERR", e); sys.exit(1)
count, rcode = struct.unpack("!H", answer[6:8])[0], answer[3] & 15
print(socket.inet_ntoa(answer[-4:]) if count else f"rcode {rcode}")
"""
VM2 = "10.100.0.12"  # on hv2, in net1 with vm1 (hv1): bridged over VXLAN, not routed
# The daemon's line for an artifact applied without an error (agent/daemon.py).
APPLIED_OK = re.compile(r"applied (\S+): \d+ objects, 0 errors")
def test_vm_reaches_the_internet_through_source_nat(small_fabric: SmallFabric) -> None:
    with server_in(small_fabric.fabric, "up1", 7001):
        # The internet host sees the network's source NAT address, not the VM's.
        wait_until("vm1 to reach the internet",
                   lambda: connect(small_fabric.fabric, "vm1", INTERNET_HOST, 7001)
                   == "203.0.113.10",
                   timeout=10)


@contextmanager
def resolver_in(small: SmallFabric, node: str, address: str, records: dict[str, str]
                ) -> Iterator[None]:
    """A dnsmasq answering `records` on `address` (added to the node's lo) until the end."""
    fabric = small.fabric
    fabric.ip(node, "addr", "replace", f"{address}/32", "dev", "lo")
    answers = [f"--address=/{name}/{ip}" for name, ip in records.items()]
    process = subprocess.Popen(["ip", "netns", "exec", fabric.ns(node), "dnsmasq", "-k",
                                "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                                "--pid-file", "--bind-interfaces",
                                f"--listen-address={address}", *answers])
    try:
        yield
    finally:
        process.terminate()  # our own child, by its handle
        process.wait(timeout=10)
        fabric.ip(node, "addr", "del", f"{address}/32", "dev", "lo")


def test_guest_dns_is_forwarded_upstream_from_the_public_address(
        small_fabric: SmallFabric) -> None:
    """The network's dnsmasq forwards what it does not know to CloudStack's resolvers
    (DNS 192.0.2.53, "on the internet"). Its queries leave the domain with the source NAT
    address: the uplink's 169.254.253.1, the same in every domain, would get no answer."""
    net1 = small_fabric.segments[0]
    assert DNS["dns"].startswith("192.0.2.53,")
    small_fabric.request("PUT", f"/v1/networks/{net1.network_id}/dns", DNS)
    gateway = net1.gateway
    with resolver_in(small_fabric, "up1", "192.0.2.53", {"www.example.test": "192.0.2.80"}):
        wait_until("vm1's resolver to answer from upstream", lambda: small_fabric.fabric.exec(
            "vm1", "python3", "-c", RESOLVE, "www.example.test", gateway,
            check=False).stdout.strip() == "192.0.2.80", timeout=10)


def test_port_forward_opens_with_its_firewall_rule(small_fabric: SmallFabric) -> None:
    """CloudStack creates a port forward, then (openfirewall) its ingress firewall rule:
    the forward alone lets nothing in; with the rule, traffic flows within a second."""
    request = small_fabric.request
    with server_in(small_fabric.fabric, "vm2", 22):
        port_forward(request, "203.0.113.10", "tcp", "2222", "net1", "10.100.0.12", "22")
        wait_until("the port forward to be applied", lambda: applied(small_fabric), timeout=10)
        assert connect(small_fabric.fabric, "up1", "203.0.113.10", 2222) == ""  # firewalled
        started = time.monotonic()
        request("PUT", "/v1/networks/net1/firewall", {"default_egress_allow": True, "rules": [
            {"id": 71, "type": "ingress", "protocol": "tcp", "portStart": 2222,
             "publicIp": "203.0.113.10", "sourceCidrs": ["198.51.100.0/24"]}]})
        took = wait_until("the port forward to carry traffic",
                          lambda: connect(small_fabric.fabric, "up1", "203.0.113.10", 2222) != "",
                          timeout=10, interval=0.05)
        # Destination NAT only: the VM sees the internet host's own address.
        assert connect(small_fabric.fabric, "up1", "203.0.113.10", 2222) == "198.51.100.1"
        request("PUT", "/v1/networks/net1/firewall", {"default_egress_allow": True,
                                                      "rules": []})
        wait_until("the firewall to close again",
                   lambda: connect(small_fabric.fabric, "up1", "203.0.113.10", 2222) == "",
                   timeout=10, interval=0.05)
    print(f"firewall rule created -> traffic flowing: {took:.2f} s "
          f"({time.monotonic() - started:.2f} s to the end of the checks)")
    assert took <= 2.0


def applied(small: SmallFabric) -> bool:
    """Whether sg1's agent has reported the newest generation with no error."""
    status = small.request("GET", "/v1/devices/sg1/status", None)
    objects = status["objects"]
    return bool(objects) and all(o["state"] == "ok" for o in objects) and \
        max(o["generation"] for o in objects) == status["generation"]


def test_new_vm_gets_its_lease_and_user_data(small_fabric: SmallFabric) -> None:
    fabric = small_fabric.fabric
    mac, address = "02:00:00:00:01:0e", "10.100.0.14"
    vm(small_fabric.request, "net1", mac, address, "vm4", password="s3cret-pw")
    fabric.add_node("vm4", router=False)
    net1 = small_fabric.segments[0]
    run(["ip", "link", "add", "eth0", "netns", fabric.ns("vm4"), "address", mac, "type",
         "veth", "peer", "name", "vm4", "netns", fabric.ns("hv2")])
    fabric.ip("hv2", "link", "set", "vm4", "master", f"brvx-{net1.vni}", "up")
    fabric.ip("vm4", "link", "set", "eth0", "up")
    lease = dhcp_lease(small_fabric, "vm4")
    assert lease["new_ip_address"] == address
    assert lease["new_routers"] == net1.gateway
    assert lease["new_host_name"] == "vm4"
    fabric.ip("vm4", "addr", "add", f"{address}/24", "dev", "eth0")
    url = f"http://{net1.gateway}/latest/user-data"
    user_data = fabric.exec("vm4", "python3", "-c", FETCH, url, check=False).stdout
    assert user_data == USER_DATA


def dhcp_lease(small: SmallFabric, node: str) -> dict[str, str]:
    """One real DHCP exchange by dhclient; the variables it hands its script on BOUND.
    The script only records them: nothing of the host (resolv.conf) is touched."""
    directory = small.fabric.node_dir(node)
    directory.mkdir(parents=True, exist_ok=True)
    script, env_file = directory / "dhclient.sh", directory / "lease.env"
    script.write_text(f"#!/bin/sh\n[ \"$reason\" = BOUND ] && env > {env_file}\nexit 0\n")
    script.chmod(0o755)
    pid_file = directory / "dhclient.pid"
    deadline = time.monotonic() + 20
    while not env_file.exists() and time.monotonic() < deadline:
        # -1: one try; the agent may still be starting this network's dnsmasq.
        small.fabric.exec(node, "dhclient", "-1", "-sf", str(script), "-pf", str(pid_file),
                          "-lf", str(directory / "leases"), "eth0", check=False, timeout=60)
    # After BOUND dhclient stays to renew; the fabric's teardown stops it by its pid file.
    assert env_file.exists(), "no DHCP lease"
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "crash"])
def test_agent_restart_interrupts_nothing(small_fabric: SmallFabric, signum: int) -> None:
    """20 ms ping streams lose no packet while the agent restarts, after a graceful stop
    or a crash (SIGKILL, then started again as systemd's Restart=always does): north-south
    through source NAT, and east-west from vm1 on hv1 to vm2 on hv2 over VXLAN. The
    restarted agent applies every artifact again without an error and changes nothing:
    no link, no dnsmasq restarted."""
    fabric = small_fabric.fabric
    directory = fabric.node_dir("sg1")
    log = directory / "agent.log"
    # The DNS service an earlier test turns on (the same PUT: idempotent), so that the
    # test also runs alone: it checks that the restart leaves dnsmasq alone.
    small_fabric.request("PUT", f"/v1/networks/{small_fabric.segments[0].network_id}/dns",
                         DNS)
    wait_until("sg1's dnsmasq", lambda: bool(pids_of(directory / "agent" / "dnsmasq")),
               timeout=30)
    wait_until("sg1 to have applied the DNS change", lambda: applied(small_fabric), timeout=30)
    dnsmasq_pids = pids_of(directory / "agent" / "dnsmasq")
    artifacts = set(small_fabric.request("GET", "/v1/devices/sg1/config", None)["artifacts"])
    with ping_stream(fabric, "vm1", INTERNET_HOST) as north_south, \
            ping_stream(fabric, "vm1", VM2) as east_west:
        streams = {"north-south": north_south, "east-west": east_west}
        wait_until("the ping streams to flow",
                   lambda: all(len(s.replies()) >= 10 for s in streams.values()), timeout=10)
        before = log.stat().st_size
        restart_agent(small_fabric, signum)
        wait_until("the restarted agent to apply every artifact", lambda: artifacts <= set(
            APPLIED_OK.findall(log.read_text()[before:])), timeout=30)
        done = time.time()
        # The streams must run on past the apply's last step.
        wait_until("replies after the apply", lambda: all(
            s.replying_since(done, 0.5) for s in streams.values()), timeout=10)
    for name, stream in streams.items():
        replies = len(stream.replies())
        assert replies > 50 and stream.lost() == [], (name, replies, stream.lost())
    new_lines = log.read_text()[before:]
    assert "links: " not in new_lines, "the restarted agent changed links"
    assert pids_of(directory / "agent" / "dnsmasq") == dnsmasq_pids
    # The service holds the restarted agent's reports: every object applied, nothing older.
    wait_until("sg1's status to show everything applied", lambda: applied(small_fabric),
               timeout=10)


def pids_of(directory: Path) -> dict[str, str]:
    return {str(path.relative_to(directory)): path.read_text().strip()
            for path in sorted(directory.glob("*/*.pid"))}


def restart_agent(small: SmallFabric, signum: int = signal.SIGTERM) -> None:
    """Stop sg1's agent by `signum` and start it again as it ran."""
    fabric = small.fabric
    directory = fabric.node_dir("sg1")
    fabric.stop_agent("sg1", signum=signum)
    fabric.start_agent("sg1", (directory / "service-url").read_text().strip(),
                       (directory / "agent-token").read_text().strip(), softgate=True)


def test_networks_made_while_frr_runs_are_known_to_zebra_and_leave_nothing(
        small_fabric: SmallFabric) -> None:
    """Every CloudStack network comes after the SoftGate's FRR is up, so its routing
    domain is a namespace zebra adopts at run time. zebra must know each new L2VNI (it
    loses the links already in a namespace it adopts: agent.frr.FrrReload.await_adopted);
    deleting the networks takes the VNIs and the VRFs away, and making them again (the
    same VNIs, the same namespace names) works as the first time."""
    for _ in range(2):
        make_known_then_delete(small_fabric, {f"late{i}": f"10.{210 + i}.0" for i in range(3)})


def make_known_then_delete(small_fabric: SmallFabric, prefixes: dict[str, str]) -> None:
    fabric, request = small_fabric.fabric, small_fabric.request
    vnis: set[int] = set()
    vrfs: set[str] = set()
    try:
        for network, prefix in prefixes.items():
            answer = request("PUT", f"/v1/networks/{network}", {
                "zone_id": ZONE, "physical_network_id": PHYSNET,
                "cidr": f"{prefix}.0/24", "gateway": f"{prefix}.1"})
            vnis.add(answer["segment"]["id"])
            vrfs.add(f"vxr{answer['l3vni']}")
        wait_until("sg1's zebra to know every new L2VNI by its VXLAN device",
                   lambda: vnis <= l2vnis_with_a_device(fabric), timeout=30)
    finally:
        for network in prefixes:
            request("DELETE", f"/v1/networks/{network}", None)
    wait_until("the new L2VNIs and their VRFs to be gone from sg1",
               lambda: not (vnis & l2vnis_with_a_device(fabric) or vrfs & active_vrfs(fabric)),
               timeout=30)

def l2vnis_with_a_device(fabric: Fabric) -> set[int]:
    """The L2VNIs sg1's zebra knows along with their VXLAN device."""
    table = fabric.vtysh_json("sg1", "show evpn vni json")
    return {int(vni) for vni, entry in table.items()
            if entry.get("type") == "L2" and entry.get("vxlanIf")}


def active_vrfs(fabric: Fabric) -> set[str]:
    return set(re.findall(r"^vrf (\S+) id \d+", fabric.vtysh("sg1", "show vrf"), re.MULTILINE))
