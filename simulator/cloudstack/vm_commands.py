"""Virtual machines: deploy, start, stop, destroy, migrate, password and user data.

Starting a VM implements its networks (orchestrator.implement), prepares each NIC with
NEE's calls, then has the KVM agent of its host plug it in (kvm.py in the simulator).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Any

from simulator.cloudstack.api import ApiError, ErrorCode, Params
from simulator.cloudstack.cloud import ZONE_ID, CloudStackSim
from simulator.cloudstack.commands import Commands, find
from simulator.cloudstack.model import Nic, Vm
from simulator.cloudstack.orchestrator import netmask_of
from simulator.cloudstack.rule_commands import forget_vm

commands = Commands()
PARAM_ERROR = ErrorCode.PARAM_ERROR


def vm_json(sim: CloudStackSim, vm: Vm, *, password: bool = False) -> dict[str, Any]:
    zone = sim.db.zones[vm.zone]
    answer: dict[str, Any] = {
        "id": vm.uuid, "name": vm.name, "displayname": vm.name, "state": vm.state,
        "zoneid": zone.uuid, "zonename": zone.name, "hypervisor": "KVM",
        "passwordenabled": True,
        "nic": [{"id": nic.uuid, "networkid": sim.db.networks[nic.network].uuid,
                 "networkname": sim.db.networks[nic.network].name, "ipaddress": nic.ip,
                 "macaddress": nic.mac, "gateway": nic.gateway, "netmask": nic.netmask,
                 "isdefault": nic.default, "deviceid": str(nic.device_id),
                 "traffictype": "Guest", "type": "Isolated"} for nic in vm.nics],
    }
    if vm.host is not None:
        host = sim.db.hosts[vm.host]
        answer.update(hostid=host.uuid, hostname=host.name)
    if password and vm.password:
        answer["password"] = vm.password
    return answer


def _user_data(p: Params) -> str | None:
    """User data arrives base64; NEE hands the extension the decoded text."""
    encoded = p.text("userdata")
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError(PARAM_ERROR, "User data must be base64-encoded UTF-8") from None


def _host_for(sim: CloudStackSim, p: Params) -> int:
    if p.text("hostid"):
        return find(sim.db.hosts, p.required("hostid"), "host").db_id
    # The least loaded host, lowest id first: reproducible placement.
    load = {h.db_id: 0 for h in sim.db.hosts.values()}
    for vm in sim.db.vms.values():
        if vm.host is not None and vm.state == "Running":
            load[vm.host] += 1
    return min(load, key=lambda host: (load[host], host))


@commands.asynchronous("deployVirtualMachine", "virtualmachine")
def deploy_vm(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    network_ids = p.csv("networkids")
    if not network_ids:
        raise ApiError(PARAM_ERROR, "An Advanced zone needs networkids to deploy a VM")
    networks = [find(sim.db.networks, uuid, "network") for uuid in network_ids]
    db = sim.db
    vm = Vm(db.vms.next_id(), zone=ZONE_ID, user_data=_user_data(p),
            password=secrets.token_urlsafe(9))
    vm.name = p.text("name") or p.text("displayname") or f"VM-{vm.uuid}"
    if any(v.name == vm.name for v in db.vms.values()):
        raise ApiError(PARAM_ERROR, f"A VM named {vm.name} already exists")
    wanted_ip = p.text("ipaddress")
    for index, network in enumerate(networks):
        address = wanted_ip if wanted_ip and index == 0 else sim.guest_ip(network)
        nic = db.nics.add(Nic(db.nics.next_id(), network=network.db_id, mac=sim.new_mac(),
                              ip=address, netmask=netmask_of(network.cidr),
                              gateway=network.gateway, default=index == 0, device_id=index))
        vm.nics.append(nic)
    db.vms.add(vm)
    if p.boolean("startvm", True):
        _start(sim, vm, _host_for(sim, p))
    return vm_json(sim, vm, password=True)


def _start(sim: CloudStackSim, vm: Vm, host_id: int) -> None:
    orchestrator = sim.orchestrator
    host = sim.db.hosts[host_id].name
    for nic in vm.nics:
        orchestrator.implement(sim.db.networks[nic.network])
    for nic in vm.nics:
        orchestrator.prepare(vm, nic, host)
    sim.kvm.plug(vm, host, {nic.network: sim.db.networks[nic.network] for nic in vm.nics})
    vm.host, vm.state = host_id, "Running"


def _stop(sim: CloudStackSim, vm: Vm) -> None:
    if vm.host is not None:
        sim.kvm.unplug(vm, sim.db.hosts[vm.host].name)
    for nic in vm.nics:
        sim.orchestrator.release(vm, nic)
    vm.host, vm.state = None, "Stopped"


def _vm(sim: CloudStackSim, p: Params, name: str = "id") -> Vm:
    return find(sim.db.vms, p.required(name), "virtual machine")


@commands.asynchronous("startVirtualMachine", "virtualmachine")
def start_vm(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    vm = _vm(sim, p)
    if vm.state != "Running":
        _start(sim, vm, _host_for(sim, p))
    return vm_json(sim, vm)


@commands.asynchronous("stopVirtualMachine", "virtualmachine")
def stop_vm(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    vm = _vm(sim, p)
    if vm.state == "Running":
        _stop(sim, vm)
    return vm_json(sim, vm)


@commands.asynchronous("destroyVirtualMachine", "virtualmachine")
def destroy_vm(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    """Destroy and expunge: its rules revoked, its NICs' DHCP and DNS entries removed."""
    vm = _vm(sim, p)
    if vm.state == "Running":
        _stop(sim, vm)
    forget_vm(sim, vm)
    for nic in vm.nics:
        if sim.db.networks[nic.network].state == "Implemented":
            sim.orchestrator.expunge(vm, nic)
        del sim.db.nics[nic.db_id]
    vm.state = "Destroyed"
    answer = vm_json(sim, vm)
    del sim.db.vms[vm.db_id]
    return answer


@commands.asynchronous("migrateVirtualMachine", "virtualmachine")
def migrate_vm(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    vm = _vm(sim, p, "virtualmachineid")
    target = find(sim.db.hosts, p.required("hostid"), "host")
    if vm.state != "Running" or vm.host is None:
        raise ApiError(PARAM_ERROR, f"VM {vm.name} is not running: it cannot migrate")
    source = sim.db.hosts[vm.host].name
    if target.db_id != vm.host:
        # Live migration: the VM runs on the target before the source lets it go.
        sim.kvm.plug(vm, target.name, {n.network: sim.db.networks[n.network]
                                       for n in vm.nics})
        sim.kvm.unplug(vm, source)
        vm.host = target.db_id
        for nic in vm.nics:
            sim.orchestrator.save(vm, nic, "hypervisor_hostname", target.name)
    return vm_json(sim, vm)


@commands.asynchronous("resetPasswordForVirtualMachine", "virtualmachine")
def reset_password(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    vm = _vm(sim, p)
    if vm.state != "Stopped":
        raise ApiError(PARAM_ERROR, f"VM {vm.name} must be stopped to reset its password")
    vm.password = secrets.token_urlsafe(9)
    sim.orchestrator.save(vm, _default_nic(vm), "password", vm.password)
    return vm_json(sim, vm, password=True)


@commands.sync("updateVirtualMachine", "virtualmachine")
def update_vm(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    vm = _vm(sim, p)
    if p.text("displayname"):
        vm.name = p.required("displayname")
    user_data = _user_data(p)
    if user_data is not None:
        vm.user_data = user_data
        sim.orchestrator.save(vm, _default_nic(vm), "userdata", user_data)
    return vm_json(sim, vm)


def _default_nic(vm: Vm) -> Nic:
    return next(nic for nic in vm.nics if nic.default)


@commands.list("listVirtualMachines", "virtualmachine")
def list_vms(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    network = p.text("networkid")
    return [vm_json(sim, vm) for vm in sim.db.vms.sorted()
            if p.text("id") in (None, vm.uuid) and p.text("name") in (None, vm.name)
            and (network is None or any(sim.db.networks[n.network].uuid == network
                                        for n in vm.nics))]
