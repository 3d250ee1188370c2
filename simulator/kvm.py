"""The KVM agents of the simulated cloud, with `network.vxlan.mode=evpn`.

On VM start CloudStack's KVM agent makes, on the VM's host, one bridge per broadcast URI
and plugs the VM's NICs into it. For `vxlan://<VNI>` (modifyvxlan-evpn.sh) the bridge
holds a VXLAN device (no learning, no multicast group, the VTEP address from lo, ARP/ND
suppression). For `vlan://<VLAN>` (modifyvlan.sh, a VLAN hand-off site) it holds the
trunk's `<pif>.<vlan>`; this kernel has no 802.1Q, so the bridge gets a veth to the
VLAN's segment of the site's switch instead (vlan_switch.py). Here a VM
is a network namespace whose NICs carry the MACs CloudStack allocated; its guest OS is
a real DHCP client (dhclient), whose script puts the leased address and default route
on the NIC and records the lease. Live migration moves the host end of each NIC to the
target host, so the VM keeps its address and MAC and EVPN sees the MAC move.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from simulator.cloudstack.model import Network, Nic, Vm
from simulator.fabric import Fabric, FabricError, run
from simulator.vlan_switch import VlanSwitch, host_port, switch_port

# A guest's boot before its first DHCP request: seconds for a real one; a short stand-in
# here, counted in every VM start figure (bench.cloud). Without it the first DISCOVER on
# a host whose segment is brand new beats EVPN's type-3 exchange (~0.1-0.3 s), and
# dhclient's next try comes a second later.
BOOT_S = 0.5
# After a live migration QEMU announces the guest (qemu_announce_self): RARP broadcasts
# from each NIC's MAC, 5 rounds, 50 ms apart and 100 ms more each round. The target's
# bridge learns the MAC from them, and EVPN's MAC mobility moves it fabric-wide.
ANNOUNCE = r"""
import socket, struct, sys, time
iface, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
rarp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 3) + mac + bytes(4) + mac + bytes(4)
frame = (b"\xff" * 6 + mac + struct.pack("!H", 0x8035) + rarp).ljust(60, b"\0")
delay = 0.05
for _ in range(5):
    s.send(frame)
    time.sleep(delay)
    delay += 0.1
"""
DHCLIENT_CONF = "timeout 60;\nretry 1;\ninitial-interval 1;\nbackoff-cutoff 2;\n"
# dhclient runs it with the lease in its environment: the address and, on the default
# NIC, the route go on the NIC; nothing of the host (resolv.conf, hostname) is touched.
DHCLIENT_SCRIPT = """#!/bin/sh
case "$reason" in
BOUND|RENEW|REBIND|REBOOT)
    ip addr replace "$new_ip_address/{prefix}" dev "$interface"
    {route}
    env > "{lease}"
    ;;
esac
exit 0
"""


def segment_commands(vni: int, local: str) -> list[str]:
    """modifyvxlan-evpn.sh's bridge and VXLAN device for one VNI, as `ip -batch`."""
    bridge, vxlan = bridge_name(vni), f"vxlan{vni}"
    return [
        f"link add {vxlan} type vxlan id {vni} local {local} dstport 4789 nolearning ttl 64",
        f"link add {bridge} type bridge stp_state 0 mcast_snooping 0",
        f"link set {vxlan} mtu 1500 master {bridge}",
        f"link set {vxlan} type bridge_slave learning off neigh_suppress on",
        f"link set {vxlan} up", f"link set {bridge} up",
    ]


def bridge_name(vni: int) -> str:
    return f"brvx-{vni}"


GUEST_PIF = "eth1"  # the hosts' guest traffic label: the trunk on a VLAN site


def vlan_bridge_name(vlan: int) -> str:
    """modifyvlan.sh's bridge: br<pif>-<vlan>."""
    return f"br{GUEST_PIF}-{vlan}"


@dataclass(frozen=True)
class BroadcastDomain:
    """A network's broadcast URI as the KVM agent reads it: vxlan://<VNI> or vlan://<id>."""

    scheme: str
    number: int

    @classmethod
    def of(cls, uri: str) -> BroadcastDomain:
        scheme, _, value = uri.partition("://")
        if scheme not in ("vxlan", "vlan") or not value.isdigit():
            raise FabricError(f"the KVM agent cannot plug into broadcast URI {uri!r}")
        return cls(scheme, int(value))

    @property
    def bridge(self) -> str:
        return bridge_name(self.number) if self.scheme == "vxlan" \
            else vlan_bridge_name(self.number)


def vm_node(vm: Vm) -> str:
    return f"vm{vm.db_id}"


@dataclass
class FabricKvm:
    """The hypervisors of a running fabric: `vteps` maps each host to its VTEP address."""

    fabric: Fabric
    vteps: Mapping[str, str]
    vlan_switch: VlanSwitch | None = None  # a VLAN hand-off site's transport
    placement: dict[int, str] = field(default_factory=dict)  # VM db id -> host
    # (host, broadcast domain) -> the VM ports in its bridge
    segments: dict[tuple[str, BroadcastDomain], set[str]] = field(default_factory=dict)
    _vm_nodes: set[str] = field(default_factory=set)
    _dhclients: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _announcers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def plug(self, vm: Vm, host: str, networks: dict[int, Network]) -> None:
        node = vm_node(vm)
        if node not in self._vm_nodes:
            self.fabric.add_node(node, router=False)
            self._vm_nodes.add(node)
        source = self.placement.get(vm.db_id)
        if source == host:
            return
        for nic in vm.nics:
            domain = BroadcastDomain.of(networks[nic.network].broadcast_uri)
            self._attach(vm, nic, host, domain, source)
        self.placement[vm.db_id] = host
        for nic in vm.nics:
            if source is None:
                self._start_dhcp(vm, nic)
            else:
                self._announce(vm, nic)

    def _announce(self, vm: Vm, nic: Nic) -> None:
        """QEMU's self-announce of a migrated guest, in the background as QEMU's is."""
        self._announcers.append(subprocess.Popen(
            ["ip", "netns", "exec", self.fabric.ns(vm_node(vm)), "python3", "-c", ANNOUNCE,
             f"eth{nic.device_id}", nic.mac], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def _attach(self, vm: Vm, nic: Nic, host: str, domain: BroadcastDomain,
                source: str | None) -> None:
        port = port_name(nic)
        if (host, domain) not in self.segments:
            self._build_segment(host, domain)
            self.segments[(host, domain)] = set()
        if source is None:
            run(["ip", "link", "add", f"eth{nic.device_id}", "netns",
                 self.fabric.ns(vm_node(vm)), "address", nic.mac, "type", "veth", "peer",
                 "name", port, "netns", self.fabric.ns(host)])
            self.fabric.ip(vm_node(vm), "link", "set", f"eth{nic.device_id}", "up")
        else:
            self.fabric.ip(source, "link", "set", port, "netns", self.fabric.ns(host))
            self._leave_segment(source, domain, port)
        self.fabric.ip(host, "link", "set", port, "master", domain.bridge, "up")
        self.segments[(host, domain)].add(port)

    def _build_segment(self, host: str, domain: BroadcastDomain) -> None:
        if domain.scheme == "vxlan":
            self.fabric.ip_batch(host, segment_commands(domain.number, self.vteps[host]))
            return
        if self.vlan_switch is None:
            raise FabricError(f"{domain.bridge}: a VLAN network on a site with no VLAN switch")
        vlan, bridge, uplink = domain.number, domain.bridge, host_port(domain.number)
        self.fabric.ip_batch(host, [f"link add {bridge} type bridge stp_state 0 "
                                    "mcast_snooping 0", f"link set {bridge} up"])
        self.vlan_switch.connect(vlan, switch_port(host, vlan), host, uplink,
                                 self.fabric.ns(host))
        self.fabric.ip(host, "link", "set", uplink, "master", bridge, "up")

    def _remove_segment(self, host: str, domain: BroadcastDomain) -> None:
        if domain.scheme == "vxlan":
            self.fabric.ip_batch(host, [f"link del vxlan{domain.number}",
                                        f"link del {domain.bridge}"])
            return
        assert self.vlan_switch is not None  # _build_segment made it with the switch
        self.vlan_switch.disconnect(switch_port(host, domain.number))
        self.fabric.ip(host, "link", "del", domain.bridge)

    def unplug(self, vm: Vm, host: str) -> None:
        """VM stop: its NICs leave the host; the VM's namespace stays, empty."""
        if self.placement.get(vm.db_id) != host:
            return
        self._stop_dhcp(vm)
        for nic in vm.nics:
            port = port_name(nic)
            self.fabric.ip(host, "link", "del", port)
            for (segment_host, domain), ports in list(self.segments.items()):
                if segment_host == host and port in ports:
                    self._leave_segment(host, domain, port)
        del self.placement[vm.db_id]

    def _leave_segment(self, host: str, domain: BroadcastDomain, port: str) -> None:
        """The last VM gone, the agent removes the bridge and its VXLAN device (or its
        port to the VLAN switch)."""
        ports = self.segments[(host, domain)]
        ports.discard(port)
        if not ports:
            del self.segments[(host, domain)]
            self._remove_segment(host, domain)

    # --- the guest's DHCP client ----------------------------------------------------

    def lease_file(self, vm: Vm, nic: Nic) -> Path:
        return self.fabric.node_dir(vm_node(vm)) / f"eth{nic.device_id}.lease"

    def _start_dhcp(self, vm: Vm, nic: Nic) -> None:
        directory = self.fabric.node_dir(vm_node(vm))
        directory.mkdir(parents=True, exist_ok=True)
        interface = f"eth{nic.device_id}"
        prefix = sum(bin(int(part)).count("1") for part in nic.netmask.split("."))
        route = 'ip route replace default via "$new_routers" dev "$interface"' \
            if nic.default else ":"
        script = directory / f"dhclient-{interface}.sh"
        script.write_text(DHCLIENT_SCRIPT.format(prefix=prefix, route=route,
                                                 lease=self.lease_file(vm, nic)))
        script.chmod(0o755)
        conf = directory / "dhclient.conf"
        conf.write_text(DHCLIENT_CONF)
        self.lease_file(vm, nic).unlink(missing_ok=True)
        pid_file = directory / f"dhclient-{interface}.pid"
        # The guest boots (BOOT_S) before its first request; the shell's pid is dhclient's
        # (exec), in the pid file from the start, so the fabric's teardown finds it even
        # mid-boot. -1: one attempt (of up to 60 s); after BOUND it stays to renew.
        boot = f'echo $$ > "$0"; sleep {BOOT_S}; exec dhclient "$@"'
        self._dhclients.append(subprocess.Popen(
            ["ip", "netns", "exec", self.fabric.ns(vm_node(vm)), "sh", "-c", boot,
             str(pid_file), "-1", "-cf", str(conf), "-sf", str(script), "-pf", str(pid_file),
             "-lf", str(directory / f"dhclient-{interface}.leases"), interface],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))

    def _stop_dhcp(self, vm: Vm) -> None:
        directory = self.fabric.node_dir(vm_node(vm))
        for nic in vm.nics:
            interface = f"eth{nic.device_id}"
            pid_file = directory / f"dhclient-{interface}.pid"
            if pid_file.exists():
                # dhclient -x releases nothing and exits: the guest shutting down.
                self.fabric.exec(vm_node(vm), "dhclient", "-x", "-pf", str(pid_file),
                                 "-cf", str(directory / "dhclient.conf"), interface,
                                 check=False)
            self.lease_file(vm, nic).unlink(missing_ok=True)
        self.reap()

    def reap(self) -> None:
        """Collect the DHCP clients that have gone to the background or given up, and the
        announcements that are done."""
        self._dhclients = [p for p in self._dhclients if p.poll() is None]
        self._announcers = [p for p in self._announcers if p.poll() is None]


def port_name(nic: Nic) -> str:
    return f"vnet{nic.db_id}"
