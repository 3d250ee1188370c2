"""Public IPs, static NAT, port forwarding, firewall and load-balancer rules.

One extension call per IP, static NAT and port forward; the whole rule set for the
firewall (apply-fw-rules re-reads every rule) and for load balancers (apply-lb-rules),
as NetworkExtensionElement does (protocol.md §3).
"""

from __future__ import annotations

from typing import Any

from simulator.cloudstack.api import ApiError, ErrorCode, Params
from simulator.cloudstack.cloud import CloudStackSim
from simulator.cloudstack.commands import Commands, find
from simulator.cloudstack.element import ElementError
from simulator.cloudstack.model import (
    FirewallRule,
    LoadBalancer,
    Network,
    PortForward,
    PublicIp,
    Vm,
)

commands = Commands()
PARAM_ERROR = ErrorCode.PARAM_ERROR
PROTOCOLS = ("tcp", "udp", "icmp", "all")


def protocol_fields(p: Params) -> dict[str, Any]:
    """protocol, ports and ICMP type/code of a firewall rule or an ACL item."""
    protocol = (p.text("protocol") or "all").lower()
    if protocol not in PROTOCOLS and not protocol.isdigit():
        raise ApiError(PARAM_ERROR, f"Invalid protocol: {protocol}")
    ports = None
    if p.text("startport"):
        start = _port(p, "startport")
        ports = (start, _port(p, "endport") if p.text("endport") else start)
    icmp = None
    if protocol == "icmp":
        icmp = (p.integer("icmptype", -1), p.integer("icmpcode", -1))
    return {"protocol": protocol, "ports": ports, "icmp": icmp}


def _port(p: Params, name: str) -> int:
    value = p.integer(name, 0)
    if not 1 <= value <= 65535:
        raise ApiError(PARAM_ERROR, f"Invalid port {value} in {name}")
    return value


def _ports(p: Params, start: str, end: str) -> tuple[int, int]:
    first = _port(p, start)
    last = _port(p, end) if p.text(end) else first
    if last < first:
        raise ApiError(PARAM_ERROR, f"{end} is below {start}")
    return first, last


# --- public IPs ----------------------------------------------------------------------


def ip_json(sim: CloudStackSim, ip: PublicIp) -> dict[str, Any]:
    zone = sim.db.zones[ip.zone]
    answer: dict[str, Any] = {
        "id": ip.uuid, "ipaddress": ip.address, "zoneid": zone.uuid, "zonename": zone.name,
        "issourcenat": ip.source_nat, "isstaticnat": ip.static_nat_vm is not None,
        "state": ip.state, "forvirtualnetwork": True}
    if ip.network is not None:
        answer["associatednetworkid"] = sim.db.networks[ip.network].uuid
    if ip.vpc is not None:
        answer["vpcid"] = sim.db.vpcs[ip.vpc].uuid
    if ip.static_nat_vm is not None:
        # IPAddressResponse.vmipaddress: the guest address static NAT translates to.
        answer.update(virtualmachineid=sim.db.vms[ip.static_nat_vm].uuid,
                      vmipaddress=ip.static_nat_ip)
    return answer


@commands.asynchronous("associateIpAddress", "ipaddress")
def associate_ip(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    ip = sim.free_public_ip()
    if p.text("networkid"):
        network = find(sim.db.networks, p.required("networkid"), "network")
        if network.vpc is not None:
            raise ApiError(PARAM_ERROR, "Associate VPC addresses with the VPC (vpcid)")
        ip.network, ip.state = network.db_id, "Allocated"
        if network.state == "Implemented":
            sim.orchestrator.apply_ip(network, ip, release=False)
    elif p.text("vpcid"):
        ip.vpc, ip.state = find(sim.db.vpcs, p.required("vpcid"), "VPC").db_id, "Allocated"
    else:
        raise ApiError(PARAM_ERROR, "Either networkid or vpcid is required")
    return ip_json(sim, ip)


def _ip(sim: CloudStackSim, uuid: str) -> PublicIp:
    ip = find(sim.db.public_ips, uuid, "public IP address")
    if ip.state != "Allocated":
        raise ApiError(PARAM_ERROR, f"IP address {ip.address} is not allocated")
    return ip


@commands.asynchronous("disassociateIpAddress", None)
def disassociate_ip(sim: CloudStackSim, p: Params) -> None:
    ip = _ip(sim, p.required("id"))
    if ip.source_nat:
        raise ApiError(PARAM_ERROR, f"IP address {ip.address} is the source NAT address")
    db, orchestrator = sim.db, sim.orchestrator
    network = db.networks.get(ip.network) if ip.network is not None else None
    if network is not None and network.state == "Implemented":
        for forward in [f for f in db.port_forwards.values() if f.public_ip == ip.db_id]:
            orchestrator.apply_port_forward(forward, revoke=True)
            del db.port_forwards[forward.db_id]
        if ip.static_nat_vm is not None:
            orchestrator.apply_static_nat(network, ip, revoke=True)
        _drop_firewall_rules(sim, network, ip)
        _drop_load_balancers(sim, network, ip)
        orchestrator.apply_ip(network, ip, release=True)
    ip.network = ip.vpc = ip.static_nat_vm = None
    ip.static_nat_ip, ip.state = "", "Free"


def _drop_firewall_rules(sim: CloudStackSim, network: Network, ip: PublicIp) -> None:
    rules = [r for r in sim.db.firewall_rules.values() if r.public_ip == ip.db_id]
    for rule in rules:
        del sim.db.firewall_rules[rule.db_id]
    if rules and network.vpc is None:
        sim.orchestrator.apply_firewall(network)


def _drop_load_balancers(sim: CloudStackSim, network: Network, ip: PublicIp) -> None:
    gone = [lb for lb in sim.db.load_balancers.values() if lb.public_ip == ip.db_id]
    for lb in gone:
        del sim.db.load_balancers[lb.db_id]
    if gone:
        sim.orchestrator.apply_load_balancers(network, revoked=gone)


@commands.list("listPublicIpAddresses", "publicipaddress")
def list_ips(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    return [ip_json(sim, ip) for ip in sim.db.public_ips.sorted() if ip.state == "Allocated"
            and p.text("id") in (None, ip.uuid) and p.text("ipaddress") in (None, ip.address)
            and (p.text("issourcenat") is None or p.boolean("issourcenat", False) == ip.source_nat)
            and _belongs(sim, ip, p)]


def _belongs(sim: CloudStackSim, ip: PublicIp, p: Params) -> bool:
    network, vpc = p.text("associatednetworkid"), p.text("vpcid")
    return (network is None or (ip.network is not None and
                                sim.db.networks[ip.network].uuid == network)) and \
        (vpc is None or (ip.vpc is not None and sim.db.vpcs[ip.vpc].uuid == vpc))


def _network_for_rule(sim: CloudStackSim, ip: PublicIp, p: Params) -> Network:
    """The IP's network; a VPC address joins the tier the first rule names."""
    if ip.network is not None:
        return sim.db.networks[ip.network]
    if ip.vpc is None or not p.text("networkid"):
        raise ApiError(PARAM_ERROR, "A VPC address needs networkid (the tier) for a rule")
    tier = find(sim.db.networks, p.required("networkid"), "network")
    if tier.vpc != ip.vpc:
        raise ApiError(PARAM_ERROR, "The tier is not in the address's VPC")
    ip.network = tier.db_id
    if tier.state == "Implemented":
        sim.orchestrator.apply_ip(tier, ip, release=False)
    return tier


def _vm_on(sim: CloudStackSim, uuid: str, network: Network) -> tuple[Vm, str]:
    vm = find(sim.db.vms, uuid, "virtual machine")
    address = next((n.ip for n in vm.nics if n.network == network.db_id), None)
    if address is None:
        raise ApiError(PARAM_ERROR, f"VM {vm.name} has no NIC in network {network.name}")
    return vm, address


def _implemented(network: Network) -> Network:
    if network.state != "Implemented":
        raise ApiError(PARAM_ERROR, f"Network {network.name} is not implemented: start a "
                                    "VM in it first")
    return network


# --- static NAT ----------------------------------------------------------------------


@commands.sync("enableStaticNat", None)
def enable_static_nat(sim: CloudStackSim, p: Params) -> None:
    ip = _ip(sim, p.required("ipaddressid"))
    if ip.source_nat or ip.static_nat_vm is not None:
        raise ApiError(PARAM_ERROR, f"IP address {ip.address} is source NAT or static NAT "
                                    "already")
    network = _implemented(_network_for_rule(sim, ip, p))
    vm, address = _vm_on(sim, p.required("virtualmachineid"), network)
    ip.static_nat_vm, ip.static_nat_ip = vm.db_id, p.text("vmguestip") or address
    sim.orchestrator.apply_static_nat(network, ip, revoke=False)


@commands.asynchronous("disableStaticNat", None)
def disable_static_nat(sim: CloudStackSim, p: Params) -> None:
    ip = _ip(sim, p.required("ipaddressid"))
    if ip.static_nat_vm is None or ip.network is None:
        raise ApiError(PARAM_ERROR, f"Static NAT is not enabled on {ip.address}")
    sim.orchestrator.apply_static_nat(sim.db.networks[ip.network], ip, revoke=True)
    ip.static_nat_vm, ip.static_nat_ip = None, ""


# --- port forwarding -----------------------------------------------------------------


def forward_json(sim: CloudStackSim, forward: PortForward) -> dict[str, Any]:
    ip = sim.db.public_ips[forward.public_ip]
    return {"id": forward.uuid, "ipaddressid": ip.uuid, "ipaddress": ip.address,
            "protocol": forward.protocol, "publicport": str(forward.public_ports[0]),
            "publicendport": str(forward.public_ports[1]),
            "privateport": str(forward.private_ports[0]),
            "privateendport": str(forward.private_ports[1]),
            "virtualmachineid": sim.db.vms[forward.vm].uuid if forward.vm in sim.db.vms
            else "", "vmguestip": forward.private_ip, "state": "Active",
            "networkid": sim.db.networks[forward.network].uuid}


@commands.asynchronous("createPortForwardingRule", "portforwardingrule")
def create_port_forward(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    ip = _ip(sim, p.required("ipaddressid"))
    network = _implemented(_network_for_rule(sim, ip, p))
    vm, address = _vm_on(sim, p.required("virtualmachineid"), network)
    protocol = p.required("protocol").lower()
    if protocol not in ("tcp", "udp"):
        raise ApiError(PARAM_ERROR, f"Invalid protocol for port forwarding: {protocol}")
    db = sim.db
    forward = db.port_forwards.add(PortForward(
        db.port_forwards.next_id(), network=network.db_id, public_ip=ip.db_id,
        protocol=protocol, public_ports=_ports(p, "publicport", "publicendport"),
        private_ports=_ports(p, "privateport", "privateendport"), vm=vm.db_id,
        private_ip=p.text("vmguestip") or address))
    try:
        sim.orchestrator.apply_port_forward(forward, revoke=False)
    except ElementError:
        # CreatePortForwardingRuleCmd revokes the rule it could not apply, then fails.
        del db.port_forwards[forward.db_id]
        raise
    if p.boolean("openfirewall", True) and network.vpc is None:
        _open_firewall(sim, network, ip, protocol, forward.public_ports)
    return forward_json(sim, forward)


def _open_firewall(sim: CloudStackSim, network: Network, ip: PublicIp, protocol: str,
                   ports: tuple[int, int]) -> None:
    db = sim.db
    db.firewall_rules.add(FirewallRule(db.firewall_rules.next_id(), network=network.db_id,
                                       protocol=protocol, ports=ports, public_ip=ip.db_id,
                                       source_cidrs=["0.0.0.0/0"]))
    sim.orchestrator.apply_firewall(network)


@commands.asynchronous("deletePortForwardingRule", None)
def delete_port_forward(sim: CloudStackSim, p: Params) -> None:
    forward = find(sim.db.port_forwards, p.required("id"), "port forwarding rule")
    sim.orchestrator.apply_port_forward(forward, revoke=True)
    del sim.db.port_forwards[forward.db_id]


@commands.list("listPortForwardingRules", "portforwardingrule")
def list_port_forwards(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    ip = p.text("ipaddressid")
    return [forward_json(sim, f) for f in sim.db.port_forwards.sorted()
            if p.text("id") in (None, f.uuid)
            and ip in (None, sim.db.public_ips[f.public_ip].uuid)]


# --- firewall ------------------------------------------------------------------------


def firewall_json(sim: CloudStackSim, rule: FirewallRule) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": rule.uuid, "protocol": rule.protocol, "state": "Active",
        "traffictype": rule.traffic.capitalize(), "cidrlist": ",".join(rule.source_cidrs),
        "destcidrlist": ",".join(rule.dest_cidrs),
        "networkid": sim.db.networks[rule.network].uuid}
    if rule.public_ip is not None:
        ip = sim.db.public_ips[rule.public_ip]
        answer.update(ipaddressid=ip.uuid, ipaddress=ip.address)
    if rule.ports:
        answer.update(startport=rule.ports[0], endport=rule.ports[1])
    if rule.icmp:
        answer.update(icmptype=rule.icmp[0], icmpcode=rule.icmp[1])
    return answer


@commands.asynchronous("createFirewallRule", "firewallrule")
def create_firewall_rule(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    ip = _ip(sim, p.required("ipaddressid"))
    if ip.network is None or sim.db.networks[ip.network].vpc is not None:
        raise ApiError(PARAM_ERROR, "Firewall rules are for isolated networks' addresses; "
                                    "VPC tiers use network ACLs")
    return _add_firewall_rule(sim, sim.db.networks[ip.network], p, "ingress", ip)


@commands.asynchronous("createEgressFirewallRule", "firewallrule")
def create_egress_rule(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    network = find(sim.db.networks, p.required("networkid"), "network")
    if network.vpc is not None:
        raise ApiError(PARAM_ERROR, "VPC tiers use network ACLs, not egress rules")
    return _add_firewall_rule(sim, network, p, "egress", None)


def _add_firewall_rule(sim: CloudStackSim, network: Network, p: Params, traffic: str,
                       ip: PublicIp | None) -> dict[str, Any]:
    default_source = network.cidr if traffic == "egress" else "0.0.0.0/0"
    db = sim.db
    rule = db.firewall_rules.add(FirewallRule(
        db.firewall_rules.next_id(), network=network.db_id, traffic=traffic,
        public_ip=ip.db_id if ip else None, source_cidrs=p.csv("cidrlist") or [default_source],
        dest_cidrs=p.csv("destcidrlist"), **protocol_fields(p)))
    if network.state == "Implemented":
        sim.orchestrator.apply_firewall(network)
    return firewall_json(sim, rule)


def _delete_firewall_rule(sim: CloudStackSim, p: Params) -> None:
    rule = find(sim.db.firewall_rules, p.required("id"), "firewall rule")
    del sim.db.firewall_rules[rule.db_id]
    network = sim.db.networks[rule.network]
    if network.state == "Implemented":
        sim.orchestrator.apply_firewall(network)


@commands.asynchronous("deleteFirewallRule", None)
def delete_firewall_rule(sim: CloudStackSim, p: Params) -> None:
    _delete_firewall_rule(sim, p)


@commands.asynchronous("deleteEgressFirewallRule", None)
def delete_egress_rule(sim: CloudStackSim, p: Params) -> None:
    _delete_firewall_rule(sim, p)


def _list_firewall(sim: CloudStackSim, p: Params, traffic: str) -> list[dict[str, Any]]:
    network = p.text("networkid")
    return [firewall_json(sim, r) for r in sim.db.firewall_rules.sorted()
            if r.traffic == traffic and p.text("id") in (None, r.uuid)
            and network in (None, sim.db.networks[r.network].uuid)]


@commands.list("listFirewallRules", "firewallrule")
def list_firewall_rules(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    return _list_firewall(sim, p, "ingress")


@commands.list("listEgressFirewallRules", "firewallrule")
def list_egress_rules(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    return _list_firewall(sim, p, "egress")


# --- routing firewall (ROUTED networks, CloudStack 4.20+) -----------------------------
# RoutedIpv4ManagerImpl: a rule on the network, not on a public IP (the guest addresses
# are routed), source and destination CIDRs defaulting to 0.0.0.0/0, ingress unless told.
# It is a Firewall-purpose rule, so apply-fw-rules carries it with the others.


def _routed(sim: CloudStackSim, uuid: str) -> Network:
    network = find(sim.db.networks, uuid, "network")
    if sim.db.offerings[network.offering].mode != "ROUTED":
        raise ApiError(PARAM_ERROR, f"Network {network.name} is not a routed network")
    return network


@commands.asynchronous("createRoutingFirewallRule", "firewallrule")
def create_routing_rule(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    network = _routed(sim, p.required("networkid"))
    traffic = (p.text("traffictype") or "ingress").lower()
    if traffic not in ("ingress", "egress"):
        raise ApiError(PARAM_ERROR, f"Invalid traffic type {traffic}")
    db = sim.db
    rule = db.firewall_rules.add(FirewallRule(
        db.firewall_rules.next_id(), network=network.db_id, traffic=traffic,
        source_cidrs=p.csv("cidrlist") or ["0.0.0.0/0"],
        dest_cidrs=p.csv("destcidrlist") or ["0.0.0.0/0"], **protocol_fields(p)))
    if network.state == "Implemented":
        try:
            sim.orchestrator.apply_firewall(network)
        except ElementError:
            # CreateRoutingFirewallRuleCmd.execute revokes a rule it could not apply.
            del db.firewall_rules[rule.db_id]
            raise ApiError(ErrorCode.INTERNAL_ERROR,
                           "Failed to create Routing firewall rule") from None
    return firewall_json(sim, rule)


@commands.list("listRoutingFirewallRules", "firewallrule")
def list_routing_rules(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    network = p.text("networkid")
    return [firewall_json(sim, r) for r in sim.db.firewall_rules.sorted()
            if r.public_ip is None and p.text("id") in (None, r.uuid)
            and sim.db.offerings[sim.db.networks[r.network].offering].mode == "ROUTED"
            and network in (None, sim.db.networks[r.network].uuid)]


@commands.asynchronous("deleteRoutingFirewallRule", None)
def delete_routing_rule(sim: CloudStackSim, p: Params) -> None:
    _delete_firewall_rule(sim, p)


# --- load balancers ------------------------------------------------------------------


def lb_json(sim: CloudStackSim, lb: LoadBalancer) -> dict[str, Any]:
    ip = sim.db.public_ips[lb.public_ip]
    return {"id": lb.uuid, "name": lb.name, "publicipid": ip.uuid, "publicip": ip.address,
            "publicport": str(lb.public_port), "privateport": str(lb.private_port),
            "algorithm": lb.algorithm, "protocol": lb.protocol, "state": "Active",
            "networkid": sim.db.networks[lb.network].uuid}


@commands.asynchronous("createLoadBalancerRule", "loadbalancer")
def create_load_balancer(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    ip = _ip(sim, p.required("publicipid"))
    network = _network_for_rule(sim, ip, p)
    algorithm = p.required("algorithm").lower()
    if algorithm not in ("roundrobin", "leastconn", "source"):
        raise ApiError(PARAM_ERROR, f"Unsupported algorithm: {algorithm}")
    db = sim.db
    lb = db.load_balancers.add(LoadBalancer(
        db.load_balancers.next_id(), network=network.db_id, name=p.required("name"),
        public_ip=ip.db_id, public_port=_port(p, "publicport"),
        private_port=_port(p, "privateport"), algorithm=algorithm,
        protocol=(p.text("protocol") or "tcp").lower()))
    if p.boolean("openfirewall", True) and network.vpc is None:
        _open_firewall(sim, network, ip, lb.protocol, (lb.public_port, lb.public_port))
    return lb_json(sim, lb)


def _lb_members(sim: CloudStackSim, p: Params) -> tuple[LoadBalancer, list[int]]:
    lb = find(sim.db.load_balancers, p.required("id"), "load balancer rule")
    network = _implemented(sim.db.networks[lb.network])
    members = [_vm_on(sim, uuid, network)[0].db_id for uuid in p.csv("virtualmachineids")]
    if not members:
        raise ApiError(PARAM_ERROR, "virtualmachineids is required")
    return lb, members


@commands.asynchronous("assignToLoadBalancerRule", None)
def assign_to_load_balancer(sim: CloudStackSim, p: Params) -> None:
    lb, members = _lb_members(sim, p)
    lb.members += [vm for vm in members if vm not in lb.members]
    sim.orchestrator.apply_load_balancers(sim.db.networks[lb.network])


@commands.asynchronous("removeFromLoadBalancerRule", None)
def remove_from_load_balancer(sim: CloudStackSim, p: Params) -> None:
    lb, members = _lb_members(sim, p)
    lb.members = [vm for vm in lb.members if vm not in members]
    sim.orchestrator.apply_load_balancers(sim.db.networks[lb.network])


@commands.asynchronous("deleteLoadBalancerRule", None)
def delete_load_balancer(sim: CloudStackSim, p: Params) -> None:
    lb = find(sim.db.load_balancers, p.required("id"), "load balancer rule")
    del sim.db.load_balancers[lb.db_id]
    network = sim.db.networks[lb.network]
    if network.state == "Implemented":
        sim.orchestrator.apply_load_balancers(network, revoked=[lb])


@commands.list("listLoadBalancerRules", "loadbalancerrule")
def list_load_balancers(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    return [lb_json(sim, lb) for lb in sim.db.load_balancers.sorted()
            if p.text("id") in (None, lb.uuid) and p.text("name") in (None, lb.name)]


@commands.list("listLoadBalancerRuleInstances", "loadbalancerruleinstance")
def list_load_balancer_members(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    lb = find(sim.db.load_balancers, p.required("id"), "load balancer rule")
    return [{"id": sim.db.vms[vm].uuid, "name": sim.db.vms[vm].name}
            for vm in lb.members if vm in sim.db.vms]


# --- a destroyed VM's rules -----------------------------------------------------------


def forget_vm(sim: CloudStackSim, vm: Vm) -> None:
    """What expunging a VM revokes: its port forwards, static NAT and LB membership."""
    db, orchestrator = sim.db, sim.orchestrator
    for forward in [f for f in db.port_forwards.values() if f.vm == vm.db_id]:
        orchestrator.apply_port_forward(forward, revoke=True)
        del db.port_forwards[forward.db_id]
    for ip in db.public_ips.values():
        if ip.static_nat_vm == vm.db_id and ip.network is not None:
            orchestrator.apply_static_nat(db.networks[ip.network], ip, revoke=True)
            ip.static_nat_vm, ip.static_nat_ip = None, ""
    for lb in db.load_balancers.values():
        if vm.db_id in lb.members:
            lb.members.remove(vm.db_id)
            orchestrator.apply_load_balancers(db.networks[lb.network])
