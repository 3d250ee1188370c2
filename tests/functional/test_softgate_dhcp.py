"""SoftGate DHCP, DNS, metadata and passwords with real dnsmasq, dhclient, curl, kernel.

Throw-away namespaces named vxd<pid>-*: one routing domain ("-r") with two guest bridges,
and one namespace per VM NIC set, joined by veth pairs that never touch the root
namespace. vm1 has its default NIC on network A and a second NIC on network B; vm2 is on
A; vm3 comes later. Namespaces and processes are recorded as they are made and removed
in the finalizer by those records (namespaces by name, processes by pid file).
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent import procs
from agent.dhcp_apply import DhcpApplier
from agent.dhcp_state import DhcpState
from agent.dnsmasq import Dnsmasq
from agent.metadata_process import MetadataServer
from agent.netns import socket_in

TOOLS = ("ip", "dnsmasq", "dhclient", "curl")
PREFIX = f"vxd{os.getpid()}"
ROUTER = f"{PREFIX}-r"
USER_DATA = "#cloud-config\nhostname: vm1\n"
DEADLINE_S = 15.0


def require_root_and_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    reason = "needs root (network namespaces)" if os.geteuid() != 0 else \
        f"needs {', '.join(missing)}" if missing else ""
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SoftGate DHCP tests: {reason}")
        pytest.skip(reason)


def run(*argv: str, check: bool = True) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


@dataclass
class Lab:
    """What we made, so the finalizer removes exactly that."""

    root: Path
    namespaces: list[str] = field(default_factory=list)
    pid_files: list[Path] = field(default_factory=list)

    def netns(self, name: str) -> str:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        # Kernel defaults of a new namespace: no DAD delays, no bridged traffic through
        # iptables hooks (br_netfilter is built in here).
        run("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0", "net.bridge.bridge-nf-call-iptables=0",
            "net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0",
            check=False)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def nic(self, vm: str, ifname: str, mac: str, bridge: str) -> None:
        """vm's `ifname` with `mac`, its peer on `bridge` in the router namespace."""
        peer = f"{vm.rsplit('-', 1)[1]}{ifname[-1]}"
        run("ip", "link", "add", peer, "netns", ROUTER, "type", "veth", "peer", "name",
            ifname, "netns", vm)
        run("ip", "-n", vm, "link", "set", ifname, "address", mac, "up")
        run("ip", "-n", ROUTER, "link", "set", peer, "master", bridge, "up")

    def dhclient(self, vm: str, ifname: str) -> dict[str, str]:
        """One real DHCP exchange; the variables dhclient hands its script on BOUND."""
        out = self.root / f"{vm}-{ifname}"
        script = out.with_suffix(".sh")
        script.write_text(f"#!/bin/sh\n[ \"$reason\" = BOUND ] && env > {out}.env\nexit 0\n")
        script.chmod(0o755)
        pid_file = out.with_suffix(".pid")
        self.pid_files.append(pid_file)
        run("ip", "netns", "exec", vm, "dhclient", "-1", "-sf", str(script), "-pf",
            str(pid_file), "-lf", f"{out}.leases", ifname)
        # After BOUND dhclient goes to the background to renew: stop it by its pid file.
        procs.stop_owned([pid_file])
        env_file = Path(f"{out}.env")
        assert env_file.exists(), f"no lease for {vm} {ifname}"
        return dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                    if "=" in line)

    def cleanup(self) -> None:
        procs.stop_owned(self.pid_files)
        for name in reversed(self.namespaces):
            run("ip", "netns", "del", name, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def network(net_id: str, bridge: str, third: int, nics: list[dict[str, Any]], **extra: Any
            ) -> dict[str, Any]:
    return {"id": net_id, "netns": ROUTER, "bridge": bridge, "cidr": f"10.77.{third}.0/24",
            "gateway": f"10.77.{third}.1", "domain": f"net{third}.internal",
            "dns_servers": ["192.0.2.53"], "nics": nics, **extra}


VM1_A = {"mac": "02:77:01:00:00:0b", "ip": "10.77.1.11", "hostname": "vm1", "ip6":
         "fd00:77:1::11", "user_data": USER_DATA, "password": "Fr3sh-Pass",
         "metadata": {"instance-id": "i-2-11-VM", "vm-id": "11", "local-hostname": "vm1"}}
VM1_B = {"mac": "02:77:02:00:00:0b", "ip": "10.77.2.11", "hostname": "vm1", "default": False}
VM2_A = {"mac": "02:77:01:00:00:0c", "ip": "10.77.1.12", "hostname": "vm2",
         "metadata": {"instance-id": "i-2-12-VM"}}
VM3_A = {"mac": "02:77:01:00:00:0d", "ip": "10.77.1.13", "hostname": "vm3"}


def desired(*extra_a: dict[str, Any]) -> DhcpState:
    return DhcpState.from_json({"networks": [
        network("7701", "gbr1", 1, [VM1_A, VM2_A, *extra_a], ipv6_cidr="fd00:77:1::/64",
                ipv6_gateway="fd00:77:1::1"),
        network("7702", "gbr2", 2, [VM1_B]),
    ]})


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Lab, DhcpApplier, Dnsmasq]]:
    require_root_and_tools()
    # dnsmasq re-reads its hosts files as user nobody: the path must be traversable.
    root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
    root.chmod(0o755)
    lab = Lab(root)
    dnsmasq = Dnsmasq(root / "dnsmasq")
    applier = DhcpApplier(dnsmasq, MetadataServer(root / "metadata"))
    try:
        lab.netns(ROUTER)
        for third in (1, 2):
            bridge = f"gbr{third}"
            run("ip", "-n", ROUTER, "link", "add", bridge, "type", "bridge")
            run("ip", "-n", ROUTER, "addr", "add", f"10.77.{third}.1/24", "dev", bridge)
            run("ip", "-n", ROUTER, "link", "set", bridge, "up")
        run("ip", "-n", ROUTER, "addr", "add", "fd00:77:1::1/64", "dev", "gbr1")
        for vm in ("vm1", "vm2", "vm3"):
            lab.netns(f"{PREFIX}-{vm}")
        lab.nic(f"{PREFIX}-vm1", "eth0", VM1_A["mac"], "gbr1")
        lab.nic(f"{PREFIX}-vm1", "eth1", VM1_B["mac"], "gbr2")
        lab.nic(f"{PREFIX}-vm2", "eth0", VM2_A["mac"], "gbr1")
        lab.nic(f"{PREFIX}-vm3", "eth0", VM3_A["mac"], "gbr1")
        result = applier.apply(None, desired())
        assert result.ok, result.statuses
        yield lab, applier, dnsmasq
    finally:
        applier.stop_all()
        lab.cleanup()


def configure(vm: str, ifname: str, lease: dict[str, str]) -> None:
    run("ip", "-n", vm, "addr", "replace", f"{lease['new_ip_address']}/24", "dev", ifname)


def dns_query(netns: str, server: str, name: str) -> tuple[int, list[str]]:
    """(rcode, A records) of one query sent from inside `netns`."""
    query_id = 0x7701
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + \
        struct.pack("!HH", 1, 1)
    with socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(packet, (server, 53))
        reply = sock.recv(4096)
    flags, answers = struct.unpack("!HH", reply[2:4] + reply[6:8])
    records: list[str] = []
    offset = 12 + len(question) + 4
    for _ in range(answers):
        offset += 2 if reply[offset] >= 0xC0 else len(question)  # compressed name
        kind, _cls, _ttl, length = struct.unpack("!HHIH", reply[offset:offset + 10])
        offset += 10
        if kind == 1:
            records.append(socket.inet_ntoa(reply[offset:offset + length]))
        offset += length
    return flags & 0xF, records


def curl(vm: str, url: str, *headers: str) -> str:
    argv = ["ip", "netns", "exec", vm, "curl", "-sS", "--max-time", "5"]
    for header in headers:
        argv += ["-H", header]
    return run(*argv, url)


def test_dhcp_default_nic_gets_address_router_dns_domain(lab: tuple[Lab, Any, Any]) -> None:
    lease = lab[0].dhclient(f"{PREFIX}-vm1", "eth0")
    assert lease["new_ip_address"] == "10.77.1.11"
    assert lease["new_routers"] == "10.77.1.1"
    assert lease["new_domain_name_servers"].split() == ["10.77.1.1", "192.0.2.53"]
    assert lease["new_domain_name"] == "net1.internal"
    assert lease["new_host_name"] == "vm1"
    configure(f"{PREFIX}-vm1", "eth0", lease)


def test_dhcp_non_default_nic_gets_no_router(lab: tuple[Lab, Any, Any]) -> None:
    lease = lab[0].dhclient(f"{PREFIX}-vm1", "eth1")
    assert lease["new_ip_address"] == "10.77.2.11"
    for key in ("new_routers", "new_domain_name_servers", "new_domain_name"):
        assert key not in lease, f"{key}={lease.get(key)} on a non-default NIC"


def test_dns_resolves_other_vms_and_refuses_the_rest(lab: tuple[Lab, Any, Any]) -> None:
    lease = lab[0].dhclient(f"{PREFIX}-vm2", "eth0")
    configure(f"{PREFIX}-vm2", "eth0", lease)
    vm1 = f"{PREFIX}-vm1"
    configure(vm1, "eth0", {"new_ip_address": "10.77.1.11"})
    assert dns_query(vm1, "10.77.1.1", "vm2.net1.internal") == (0, ["10.77.1.12"])
    assert dns_query(vm1, "10.77.1.1", "vm2") == (0, ["10.77.1.12"])
    assert dns_query(vm1, "10.77.1.1", "data-server") == (0, ["10.77.1.1"])
    # Not ours and no upstream configured: nothing leaves the routing domain.
    assert dns_query(vm1, "10.77.1.1", "example.com")[0] == 5  # REFUSED
    assert dns_query(vm1, "10.77.1.1", "nobody.net1.internal") == (3, [])  # NXDOMAIN


def test_user_data_metadata_and_password(lab: tuple[Lab, Any, Any]) -> None:
    vm1, vm2 = f"{PREFIX}-vm1", f"{PREFIX}-vm2"
    configure(vm1, "eth0", {"new_ip_address": "10.77.1.11"})
    configure(vm2, "eth0", {"new_ip_address": "10.77.1.12"})
    assert curl(vm1, "http://10.77.1.1/latest/user-data") == USER_DATA
    assert curl(vm1, "http://10.77.1.1/latest/meta-data/") == \
        "instance-id\nlocal-hostname\nvm-id\n"
    assert curl(vm1, "http://10.77.1.1/latest/meta-data/instance-id") == "i-2-11-VM"
    assert curl(vm1, "http://10.77.1.1/latest/vm-id") == "11"
    assert curl(vm2, "http://10.77.1.1/latest/meta-data/instance-id") == "i-2-12-VM"
    ask = "DomU_Request: send_my_password"
    assert curl(vm2, "http://10.77.1.1:8080/", ask) == "saved_password"
    assert curl(vm1, "http://10.77.1.1:8080/", ask) == "Fr3sh-Pass"
    assert curl(vm1, "http://10.77.1.1:8080/", "DomU_Request: saved_password") == \
        "saved_password"
    assert curl(vm1, "http://10.77.1.1:8080/", ask) == "saved_password"
    assert curl(vm1, "http://10.77.1.1:8080/") == "bad_request"


def test_adding_a_vm_needs_no_dnsmasq_restart(lab: tuple[Lab, DhcpApplier, Dnsmasq]) -> None:
    the_lab, applier, dnsmasq = lab
    pid = dnsmasq.running("7701")
    assert pid is not None
    result = applier.apply(desired(), desired(VM3_A))
    assert result.ok, result.statuses
    assert result.actions == {"7701": "reload", "7702": "none"}
    assert dnsmasq.running("7701") == pid
    lease = the_lab.dhclient(f"{PREFIX}-vm3", "eth0")
    assert lease["new_ip_address"] == "10.77.1.13"
    configure(f"{PREFIX}-vm1", "eth0", {"new_ip_address": "10.77.1.11"})
    assert dns_query(f"{PREFIX}-vm1", "10.77.1.1", "vm3") == (0, ["10.77.1.13"])


def test_reused_address_goes_to_the_new_vm(lab: tuple[Lab, DhcpApplier, Dnsmasq]) -> None:
    """vm3 is expunged and its address given to a new VM: its infinite lease must not keep
    the address (a SIGHUP would), so this one change costs a restart."""
    the_lab, applier, _ = lab
    successor = {**VM3_A, "mac": "02:77:01:00:00:0e", "hostname": "vm3b"}
    result = applier.apply(desired(VM3_A), desired(successor))
    assert result.ok, result.statuses
    assert result.actions == {"7701": "restart", "7702": "none"}
    vm3 = f"{PREFIX}-vm3"
    run("ip", "-n", vm3, "link", "set", "eth0", "address", successor["mac"])
    assert the_lab.dhclient(vm3, "eth0")["new_ip_address"] == "10.77.1.13"
    result = applier.apply(desired(successor), desired(VM3_A))  # and back, for what follows
    assert result.ok and result.actions["7701"] == "restart"
    run("ip", "-n", vm3, "link", "set", "eth0", "address", VM3_A["mac"])


def test_ipv6_router_advertisement_gives_slaac_address(lab: tuple[Lab, Any, Any]) -> None:
    vm2 = f"{PREFIX}-vm2"

    def slaac() -> bool:
        return "fd00:77:1:" in run("ip", "-n", vm2, "-6", "addr", "show", "dev", "eth0")

    if not procs.wait_for(slaac, 3.0, 0.05):
        # The router solicitation at link-up may predate dnsmasq: solicit again.
        run("ip", "-n", vm2, "link", "set", "eth0", "down")
        run("ip", "-n", vm2, "link", "set", "eth0", "up")
    assert procs.wait_for(slaac, DEADLINE_S, 0.05), "no SLAAC address from dnsmasq's RA"
    routes = run("ip", "-n", vm2, "-6", "route", "show", "default")
    assert "proto ra" in routes


def test_a_network_that_cannot_start_is_reported_alone(
        lab: tuple[Lab, DhcpApplier, Dnsmasq]) -> None:
    _, applier, dnsmasq = lab
    good = desired(VM3_A)
    missing_bridge = DhcpState.from_json(
        {"networks": [network("7709", "nobr9", 9, [])]}).networks[0]
    with_bad = DhcpState(tuple(sorted((*good.networks, missing_bridge), key=lambda n: n.id)))
    result = applier.apply(good, with_bad)
    failed = {(s.kind, s.id): s.reason for s in result.statuses if not s.ok}
    assert list(failed) == [("dnsmasq", "7709")]
    assert "unknown interface nobr9" in failed[("dnsmasq", "7709")]
    assert dnsmasq.running("7701") is not None
    assert applier.apply(with_bad, good).actions["7709"] == "remove"
