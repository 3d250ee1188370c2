"""A whole CloudStack cloud on one machine: the EVPN fabric, the provider service, the
CloudStack stand-in and its KVM agents, with vxgate registered as an operator does it.

    with running_cloud() as cloud:
        net = cloud.api.createNetwork(...)          # the real `cs` client
        vm = cloud.api.deployVirtualMachine(...)    # a namespace on hv1 or hv2, DHCP'd

The fabric is `Topology.small()` as simulator/cloud_fabric.py builds it (or the topology
given: `Topology.small(isolation="vlan")` makes a VLAN hand-off site, whose transport
VLANs are modelled by simulator/vlan_switch.py), with only the operator's part declared:
the tenants come from CloudStack. The service runs under
gunicorn (also on a Unix socket, for the agents inside the fabric's namespaces); the
entry-point is installed in the stand-in's extensions directory and spawned for every
network event, exactly as NetworkExtensionElement does.
Everything started is stopped, and every namespace removed, when the block ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import cs

from bench.service import Service
from simulator.cloud_fabric import running_fabric, running_service_for_agents
from simulator.cloudstack.cloud import CloudStackSim, Site
from simulator.cloudstack.model import Vm
from simulator.cloudstack.operator import install_entry_points, register
from simulator.cloudstack.server import RunningCloudStack, running_cloudstack
from simulator.fabric import Fabric, wait_until
from simulator.kvm import FabricKvm, vm_node
from simulator.topology import Topology
from simulator.vlan_switch import SoftGateTrunk, VlanSwitch

TOPOLOGY = Topology.small()
POLL_INTERVAL_S = 0.05  # the cs client's job polling; CloudStack's UI polls every 3 s


@dataclass
class Cloud:
    service: Service
    fabric: Fabric
    cloudstack: RunningCloudStack
    kvm: FabricKvm
    api: cs.CloudStack
    registration: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    topology: Topology = TOPOLOGY
    trunk: SoftGateTrunk | None = None  # a VLAN hand-off site's SoftGate side

    @property
    def sim(self) -> CloudStackSim:
        return self.cloudstack.sim

    def zone(self) -> str:
        return str(self.api.listZones(fetch_list=True)[0]["id"])

    def isolated_network(self, name: str, gateway: str) -> dict[str, Any]:
        """createNetwork on the NATTED isolated offering, a /24 behind `gateway`."""
        made: dict[str, Any] = self.api.createNetwork(
            name=name, displaytext=name, zoneid=self.zone(),
            networkofferingid=self.offering("vxgate-isolated-natted"), gateway=gateway,
            netmask="255.255.255.0")["network"]
        return made

    def deploy(self, name: str, network_id: str, host: str, **extra: Any) -> dict[str, Any]:
        """deployVirtualMachine of the stand-in's small Debian on the named hypervisor."""
        hosts = {h["name"]: h["id"] for h in self.api.listHosts(fetch_list=True)}
        made: dict[str, Any] = self.api.deployVirtualMachine(
            zoneid=self.zone(), serviceofferingid="small", templateid="debian", name=name,
            networkids=network_id, hostid=hosts[host], **extra)["virtualmachine"]
        return made

    def offering(self, name: str) -> str:
        found = self.api.listNetworkOfferings(name=name, fetch_list=True) or \
            self.api.listVPCOfferings(name=name, fetch_list=True)
        return str(found[0]["id"])

    def vm(self, uuid: str) -> Vm:
        found = self.sim.db.vms.by_uuid(uuid)
        if found is None:
            raise KeyError(f"no VM {uuid}")
        return found

    def node(self, vm_uuid: str) -> str:
        """The fabric node (namespace) of a VM."""
        return vm_node(self.vm(vm_uuid))

    def leased(self, vm_uuid: str) -> dict[str, str]:
        """The VM's default NIC's DHCP lease as its client recorded it; {} before one."""
        vm = self.vm(vm_uuid)
        path = self.kvm.lease_file(vm, next(n for n in vm.nics if n.default))
        if not path.exists():
            return {}
        return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)

    def lease(self, vm_uuid: str, timeout: float = 30) -> dict[str, str]:
        """The lease, once the VM's DHCP client has one."""
        wait_until(f"a DHCP lease for {self.vm(vm_uuid).name}",
                   lambda: bool(self.leased(vm_uuid)), timeout=timeout)
        return self.leased(vm_uuid)

    def exec(self, vm_uuid: str, *argv: str, timeout: float = 30) -> Any:
        return self.fabric.exec(self.node(vm_uuid), *argv, check=False, timeout=timeout)

    def spawned(self) -> list[str]:
        return [s.command for s in self.sim.spawns()]

    def failed_spawns(self) -> list[str]:
        return [f"{s.command} ({s.scope}): exit {s.code}: {s.output}"
                for s in self.sim.spawns() if s.code != 0]


@contextmanager
def running_cloud(workers: int = 1, topology: Topology = TOPOLOGY) -> Iterator[Cloud]:
    with running_service_for_agents(workers) as (service, agent_service_url):
        started = time.monotonic()
        # The operator's part only: CloudStack declares the tenants, its KVM agents plug
        # the VMs.
        with running_fabric(topology, service.ok, agent_service_url) as built, \
                ExitStack() as stack:
            built.timings["fabric up"] = time.monotonic() - started
            extensions = built.fabric.dir / "extensions"
            install_entry_points(extensions)
            hypervisors = topology.hypervisor_names
            kvm = FabricKvm(built.fabric, {hv: topology.loopback(hv) for hv in hypervisors})
            trunk = None
            if topology.isolation == "vlan":
                kvm.vlan_switch = VlanSwitch(built.fabric)
                trunk = stack.enter_context(SoftGateTrunk(
                    built.fabric, kvm.vlan_switch, topology.softgate_names).running())
            site = Site(hosts=hypervisors, isolation=topology.isolation.upper(),
                        physical_network_name=topology.physical_network_name)
            sim = CloudStackSim(site, kvm=kvm, extensions_dir=extensions)
            with running_cloudstack(sim) as cloudstack:
                cloud = _registered(service, built.fabric, cloudstack, kvm, built.timings,
                                    topology)
                cloud.trunk = trunk
                yield cloud


def _registered(service: Service, fabric: Fabric, stack: RunningCloudStack, kvm: FabricKvm,
                timings: dict[str, float], topology: Topology) -> Cloud:
    token_file = fabric.dir / "admin-token"
    token_file.touch(mode=0o600)
    token_file.write_text(service.token)
    started = time.monotonic()
    lines = register(stack, topology.physical_network_name,
                     f"http://{service.host}:{service.port}", token_file)
    timings["vxgate registered"] = time.monotonic() - started
    api = cs.CloudStack(endpoint=stack.endpoint, key=stack.api_key, secret=stack.secret_key,
                        fetch_result=True, poll_interval=POLL_INTERVAL_S, method="post")
    return Cloud(service, fabric, stack, kvm, api, lines, timings, topology)
