"""What CloudStack's orchestration does around the extension, in the order it does it.

NetworkOrchestrator, VpcManager and the rules managers decide when a network is
implemented, shut down or destroyed, and which rules are (re)applied; each step reaches
the extension through NetworkExtensionElement (element.py), which adds the
ensure-network-device before network commands. protocol.md §3 and §5 give the payloads
and the order; this module turns the stand-in's records into them.

A command CloudStack treats as fatal (ResourceUnavailableException, implement returning
false) raises ElementError; those it ignores (prepare-nic, release-nic, a failing
ensure) are only recorded in the element's spawn log.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from typing import Protocol

from simulator.cloudstack import element as nee
from simulator.cloudstack.api import ApiError, ErrorCode
from simulator.cloudstack.element import Element, ElementError, Json, Spawn
from simulator.cloudstack.model import (
    AclItem,
    Database,
    FirewallRule,
    LoadBalancer,
    Network,
    Nic,
    PortForward,
    PublicIp,
    Vm,
    Vpc,
)

PUBLIC_PREFIX = 24
PUBLIC_VLAN = "vlan://untagged"


class Hypervisors(Protocol):
    """The KVM agents: what they build on a VM's host when it starts, stops or moves."""

    def plug(self, vm: Vm, host: str, networks: dict[int, Network]) -> None: ...

    def unplug(self, vm: Vm, host: str) -> None: ...


class Orchestrator:
    def __init__(self, db: Database, element_of: Callable[[Network | Vpc], Element],
                 public_gateway: str) -> None:
        self.db = db
        self.element_of = element_of
        self.public_gateway = public_gateway

    # --- views: the records as NEE's payload builders take them ---------------------

    def vpc_view(self, vpc: Vpc) -> nee.Vpc:
        return nee.Vpc(str(vpc.db_id), vpc.cidr, str(vpc.zone), vpc.state.lower())

    def net_view(self, network: Network) -> nee.Net:
        vpc = self.db.vpcs[network.vpc] if network.vpc is not None else None
        return nee.Net(str(network.db_id), network.cidr, network.gateway,
                       self.vpc_view(vpc) if vpc else None, str(network.zone),
                       state=network.state.lower(),
                       vlan=network.broadcast_uri.partition("://")[2])

    def nic_view(self, nic: Nic) -> nee.Nic:
        return nee.Nic(str(nic.db_id), nic.mac, nic.ip, nic.gateway, nic.netmask, nic.uuid,
                       nic.default, str(nic.device_id))

    def ip_view(self, ip: PublicIp) -> nee.PublicIp:
        return nee.PublicIp(ip.address, PUBLIC_PREFIX, self.public_gateway, PUBLIC_VLAN)

    def dns(self, network: Network) -> Json:
        zone = self.db.zones[network.zone]
        return nee.DNS(network.domain, zone.dns)

    # --- running commands -----------------------------------------------------------

    def run(self, command: str, payload: Json, on: Network | Vpc, *, fatal: bool = True,
            ensure: bool | None = None) -> Spawn:
        view = self.net_view(on) if isinstance(on, Network) else self.vpc_view(on)
        spawn = self.element_of(on).run(command, payload, view, ensure=ensure)
        if fatal and spawn.code != 0:
            first = spawn.output.splitlines()[0] if spawn.output else "no output"
            raise ElementError(f"{command} failed on the network provider (exit "
                               f"{spawn.code}): {first}")
        return spawn

    def ensure(self, on: Network | Vpc) -> None:
        # A tier's view carries its VPC: the element ensures at VPC level then.
        self.element_of(on).ensure(self.net_view(on) if isinstance(on, Network)
                                   else self.vpc_view(on))

    # --- networks -------------------------------------------------------------------

    def implement(self, network: Network) -> None:
        """NetworkOrchestrator.implementNetwork: the elements, then every rule again."""
        if network.state == "Implemented":
            return
        network.state = "Implementing"
        self.ensure(network)  # implement()'s explicit one; run() adds the second
        view = self.net_view(network)
        spawn = self.run("implement-network", nee.implement_network(view), network)
        self._write_back_broadcast(network, spawn.output)
        source_nat = self.source_nat_ip(network)
        if source_nat is not None:
            self.run("assign-ip", nee.public_ip(self.net_view(network),
                                                self.ip_view(source_nat), True), network)
        network.state = "Implemented"
        self.reprogram(network)

    def _write_back_broadcast(self, network: Network, output: str) -> None:
        # protocol.md §4.2: the extension guru makes both keys mandatory.
        try:
            answer = json.loads(output)
        except ValueError:
            answer = None
        uri = answer.get("network.broadcast_uri") if isinstance(answer, dict) else None
        if not isinstance(uri, str) or not uri:
            raise ElementError("implement-network did not return network.broadcast_uri")
        network.broadcast_uri = uri

    def source_nat_ip(self, network: Network) -> PublicIp | None:
        """The network's source NAT address; an isolated network whose offering has
        SourceNat gets one from the zone's range when it is first implemented."""
        if network.vpc is not None:
            vpc = self.db.vpcs[network.vpc]
            return self.db.public_ips.get(vpc.source_nat_ip) \
                if vpc.source_nat_ip is not None else None
        found = next((ip for ip in self.db.public_ips.sorted()
                      if ip.network == network.db_id and ip.source_nat), None)
        if found is None and "SourceNat" in self.db.offerings[network.offering].services:
            found = self.free_public_ip()
            found.network, found.source_nat, found.state = network.db_id, True, "Allocated"
        return found

    def free_public_ip(self) -> PublicIp:
        found = next((ip for ip in self.db.public_ips.sorted() if ip.state == "Free"), None)
        if found is None:
            raise ApiError(ErrorCode.INSUFFICIENT_CAPACITY_ERROR,
                           "the zone's public IP range is exhausted")
        return found

    def reprogram(self, network: Network) -> None:
        """reprogramNetworkRules: IPs, static NAT, firewall, port forwards, LB, ACL."""
        for ip in self.ips_of(network):
            if not ip.source_nat:
                self.apply_ip(network, ip, release=False)
            if ip.static_nat_vm is not None:
                self.apply_static_nat(network, ip, revoke=False)
        if network.vpc is None:
            self.apply_firewall(network)
        for forward in self.db.port_forwards.sorted():
            if forward.network == network.db_id:
                self.apply_port_forward(forward, revoke=False)
        self.apply_load_balancers(network)
        if network.vpc is not None:
            self.apply_acl(network)

    def ips_of(self, network: Network) -> list[PublicIp]:
        return [ip for ip in self.db.public_ips.sorted() if ip.network == network.db_id]

    def restart(self, network: Network, cleanup: bool) -> None:
        if cleanup and network.state == "Implemented":
            self.run("shutdown-network", nee.N(self.net_view(network)), network)
            network.state = "Shutdown"
        network.state = "Allocated" if network.state != "Implemented" else "Implementing"
        self.implement(network)
        self.restore(network)

    def restore(self, network: Network) -> None:
        """completeAggregatedExecution: DHCP, DNS and VM data of every running NIC."""
        vms = [self.restore_vm(vm, nic) for vm, nic in self.nics_on(network)]
        if vms:
            self.run("restore-network", nee.restore_network(
                self.net_view(network), vms, network.domain), network)

    def restore_vm(self, vm: Vm, nic: Nic) -> Json:
        items = self.vm_data(vm, nic, with_password=False)
        return {**nee.restore_vm(self.nic_view(nic), vm.name, items, self.db.networks[
            nic.network].domain), **self.dns(self.db.networks[nic.network])}

    def nics_on(self, network: Network) -> list[tuple[Vm, Nic]]:
        return [(vm, nic) for vm in self.db.vms.sorted() if vm.state != "Destroyed"
                for nic in vm.nics if nic.network == network.db_id]

    def delete(self, network: Network) -> None:
        """deleteNetwork: its IPs released, then shutdown and destroy."""
        for ip in self.ips_of(network):
            if network.state == "Implemented":
                self.apply_ip(network, ip, release=True)
            ip.network, ip.source_nat, ip.state = None, False, "Free"
        view = nee.N(self.net_view(network))
        if network.state == "Implemented":
            self.run("shutdown-network", view, network)
        self.run("destroy-network", view, network)
        network.state = "Destroy"

    # --- VPCs -----------------------------------------------------------------------

    def implement_vpc(self, vpc: Vpc) -> None:
        self.ensure(vpc)
        payload = nee.V(self.vpc_view(vpc))
        if vpc.source_nat_ip is not None:
            payload.update(nee.PIP(self.ip_view(self.db.public_ips[vpc.source_nat_ip]), True))
        self.run("implement-vpc", payload, vpc, ensure=False)

    def shutdown_vpc(self, vpc: Vpc, tiers: Iterable[Network]) -> None:
        for tier in tiers:
            if tier.state == "Implemented":
                self.run("destroy-network", nee.N(self.net_view(tier)), tier)
                tier.state = "Allocated"
        self.run("shutdown-vpc", nee.V(self.vpc_view(vpc)), vpc, ensure=False)

    def update_vpc_source_nat(self, vpc: Vpc, ip: PublicIp) -> None:
        self.run("update-vpc-source-nat-ip", {**nee.V(self.vpc_view(vpc)),
                                              **nee.PIP(self.ip_view(ip), True)}, vpc,
                 ensure=False)

    # --- VMs ------------------------------------------------------------------------

    def prepare(self, vm: Vm, nic: Nic, host: str) -> None:
        """A NIC's prepare on VM start: NEE's calls in NicElementPreparation order."""
        network = self.db.networks[nic.network]
        net, view = self.net_view(network), self.nic_view(nic)
        # prepare()'s result is ignored by the orchestrator.
        self.run("prepare-nic", nee.prepare_nic(net, view, vm.name), network, fatal=False)
        self.run("add-dhcp-entry", {**nee.dhcp_entry(net, view, vm.name, network.domain),
                                    **self.dns(network)}, network)
        self.run("config-dns-subnet", {**nee.config_subnet(net, view, network.domain),
                                       **self.dns(network)}, network)
        self.run("add-dns-entry", {**nee.dns_entry(net, view, vm.name, network.domain),
                                   **self.dns(network)}, network)
        items = self.vm_data(vm, nic, with_password=True, host=host)
        self.run("save-vm-data", nee.save_vm_data(net, view, items), network)

    def vm_data(self, vm: Vm, nic: Nic, *, with_password: bool, host: str = "") -> list[Json]:
        zone = self.db.zones[vm.zone]
        return nee.vm_data(self.nic_view(nic), vm.name, vm.db_id, userdata=vm.user_data,
                           public_key=vm.ssh_key,
                           password=vm.password if with_password else None,
                           hypervisor_host=host, zone=zone.name)

    def release(self, vm: Vm, nic: Nic) -> None:
        network = self.db.networks[nic.network]
        self.run("release-nic", nee.nic_only(self.net_view(network), self.nic_view(nic)),
                 network, fatal=False)

    def expunge(self, vm: Vm, nic: Nic) -> None:
        network = self.db.networks[nic.network]
        net, view = self.net_view(network), self.nic_view(nic)
        self.run("remove-dhcp-entry", nee.nic_only(net, view), network)
        self.run("remove-dns-entry", {**nee.remove_dns_entry(net, view, network.domain),
                                      **self.dns(network)}, network)

    def save(self, vm: Vm, nic: Nic, key: str, value: str) -> None:
        network = self.db.networks[nic.network]
        if network.state == "Implemented":
            self.run(_SAVE_COMMANDS[key], nee.save_item(
                self.net_view(network), self.nic_view(nic), key, value), network)

    # --- addresses and rules --------------------------------------------------------

    def apply_ip(self, network: Network, ip: PublicIp, *, release: bool) -> None:
        self.run("release-ip" if release else "assign-ip", nee.public_ip(
            self.net_view(network), self.ip_view(ip), ip.source_nat), network)

    def apply_static_nat(self, network: Network, ip: PublicIp, *, revoke: bool) -> None:
        self.run("delete-static-nat" if revoke else "add-static-nat", nee.static_nat(
            self.net_view(network), self.ip_view(ip), ip.static_nat_ip), network)

    def apply_port_forward(self, forward: PortForward, *, revoke: bool) -> None:
        network = self.db.networks[forward.network]
        ip = self.db.public_ips[forward.public_ip]
        self.run("delete-port-forward" if revoke else "add-port-forward", nee.port_forward(
            self.net_view(network), self.ip_view(ip), forward.protocol,
            _port_range(forward.public_ports), forward.private_ip,
            _port_range(forward.private_ports)), network)

    def apply_firewall(self, network: Network) -> None:
        """applyFWRules: the network's whole rule set, re-read (protocol.md §3 #11)."""
        offering = self.db.offerings[network.offering]
        rules = [self.firewall_rule(rule) for rule in self.db.firewall_rules.sorted()
                 if rule.network == network.db_id]
        self.run("apply-fw-rules", nee.fw_rules(self.net_view(network), rules,
                                                offering.egress_default_allow), network)

    def firewall_rule(self, rule: FirewallRule) -> Json:
        ip = self.db.public_ips[rule.public_ip].address if rule.public_ip else None
        return nee.fw_rule(rule.db_id, rule.traffic, rule.protocol, ports=rule.ports,
                           icmp=rule.icmp, public_ip=ip, source=rule.source_cidrs,
                           dest=rule.dest_cidrs)

    def apply_load_balancers(self, network: Network,
                             revoked: Iterable[LoadBalancer] = ()) -> None:
        """applyLBRules: every rule of the network, revoked ones flagged."""
        live = [lb for lb in self.db.load_balancers.sorted() if lb.network == network.db_id]
        rules = [self.lb_rule(lb, revoke=False) for lb in live] + \
            [self.lb_rule(lb, revoke=True) for lb in revoked]
        if rules:
            self.run("apply-lb-rules", nee.lb(self.net_view(network), rules), network)

    def lb_rule(self, lb: LoadBalancer, *, revoke: bool) -> Json:
        ip = self.ip_view(self.db.public_ips[lb.public_ip])
        backends = [(self.vm_ip(self.db.vms[vm_id], lb.network), lb.private_port, False)
                    for vm_id in lb.members if vm_id in self.db.vms]
        return nee.lb_rule(lb.db_id, lb.name, ip, lb.public_port, lb.private_port, backends,
                           algorithm=lb.algorithm, revoke=revoke)

    def vm_ip(self, vm: Vm, network_id: int) -> str:
        return next(nic.ip for nic in vm.nics if nic.network == network_id)

    def apply_acl(self, tier: Network) -> None:
        items = [self.acl_item(item) for item in self.db.acl_items.sorted()
                 if tier.acl is not None and item.acl == tier.acl]
        self.run("apply-network-acl", nee.acl(self.net_view(tier), items), tier)

    def acl_item(self, item: AclItem) -> Json:
        return nee.acl_item(item.number, item.action, item.traffic, item.protocol,
                            ports=item.ports, icmp=item.icmp, source=item.source_cidrs)


_SAVE_COMMANDS = {"password": "save-password", "userdata": "save-userdata",
                  "sshkey": "save-sshkey", "hypervisor_hostname": "save-hypervisor-hostname"}


def _port_range(ports: tuple[int, int]) -> str:
    return str(ports[0]) if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}"


def netmask_of(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False).netmask)
