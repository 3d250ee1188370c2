"""Guest networks, VPCs and network ACLs: create, list, restart, update and delete, with
what CloudStack's orchestration sends the extension for each (orchestrator.py)."""

from __future__ import annotations

import ipaddress
from typing import Any

from simulator.cloudstack.api import ApiError, ErrorCode, Params
from simulator.cloudstack.cloud import ZONE_ID, CloudStackSim
from simulator.cloudstack.commands import Commands, find
from simulator.cloudstack.element import N, custom_action
from simulator.cloudstack.model import AclItem, AclList, Network, Offering, Vpc
from simulator.cloudstack.orchestrator import netmask_of
from simulator.cloudstack.rule_commands import protocol_fields

commands = Commands()
PARAM_ERROR = ErrorCode.PARAM_ERROR
DEFAULT_ALLOW, DEFAULT_DENY = "default_allow", "default_deny"


def seed_acl_lists(sim: CloudStackSim) -> None:
    """CloudStack's two system ACL lists, with their items, as every zone has them."""
    db = sim.db
    for name, action in ((DEFAULT_ALLOW, "allow"), (DEFAULT_DENY, "deny")):
        acl = db.acl_lists.add(AclList(db.acl_lists.next_id(), name=name, description=name))
        for number, traffic in ((1, "ingress"), (2, "egress")):
            db.acl_items.add(AclItem(db.acl_items.next_id(), acl=acl.db_id, number=number,
                                     action=action, traffic=traffic, protocol="all",
                                     source_cidrs=["0.0.0.0/0"]))


def network_json(sim: CloudStackSim, network: Network) -> dict[str, Any]:
    offering = sim.db.offerings[network.offering]
    zone = sim.db.zones[network.zone]
    answer: dict[str, Any] = {
        "id": network.uuid, "name": network.name, "displaytext": network.name,
        "zoneid": zone.uuid, "zonename": zone.name, "networkofferingid": offering.uuid,
        "networkofferingname": offering.name, "cidr": network.cidr,
        "gateway": network.gateway, "netmask": netmask_of(network.cidr),
        "state": network.state, "type": "Isolated", "networkdomain": network.domain,
        "physicalnetworkid": sim.db.physical_networks[network.physical_network].uuid,
        "dns1": zone.dns[0], "restartrequired": False,
        "broadcastdomaintype": network.broadcast_uri.partition("://")[0].capitalize()
        or "Vxlan",
    }
    if network.broadcast_uri:
        answer["broadcasturi"] = network.broadcast_uri
    if network.vpc is not None:
        answer["vpcid"] = sim.db.vpcs[network.vpc].uuid
    if network.acl is not None:
        acl = sim.db.acl_lists[network.acl]
        answer.update(aclid=acl.uuid, aclname=acl.name)
    return answer


def _enabled_offering(sim: CloudStackSim, uuid: str, kind: str) -> Offering:
    offering = find(sim.db.offerings, uuid, f"{kind} offering")
    if offering.kind != kind:
        raise ApiError(PARAM_ERROR, f"Unable to find {kind} offering with specified id {uuid}")
    if offering.state != "Enabled":
        raise ApiError(PARAM_ERROR, f"Offering {offering.name} is not enabled")
    return offering


def _subnet(gateway: str, netmask: str) -> str:
    try:
        return str(ipaddress.ip_interface(f"{gateway}/{netmask}").network)
    except ValueError:
        raise ApiError(PARAM_ERROR, f"Invalid gateway/netmask: {gateway}/{netmask}") from None


@commands.sync("createNetwork", "network")
def create_network(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    offering = _enabled_offering(sim, p.required("networkofferingid"), "network")
    gateway, netmask = p.text("gateway") or "10.1.1.1", p.text("netmask") or "255.255.255.0"
    cidr = _subnet(gateway, netmask)
    vpc = find(sim.db.vpcs, p.required("vpcid"), "VPC") if p.text("vpcid") else None
    if offering.for_vpc != (vpc is not None):
        raise ApiError(PARAM_ERROR, "A VPC tier needs a VPC tier offering, and only a tier "
                                    "takes one")
    acl = None
    if vpc is not None:
        inner, outer = ipaddress.ip_network(cidr), ipaddress.ip_network(vpc.cidr)
        if inner.network_address not in outer or inner.broadcast_address not in outer:
            raise ApiError(PARAM_ERROR, f"Network cidr {cidr} is not within the VPC's "
                                        f"cidr {vpc.cidr}")
        acl = _acl_for(sim, p.text("aclid"), vpc).db_id
    db = sim.db
    network = db.networks.add(Network(
        db.networks.next_id(), name=p.required("name"), zone=ZONE_ID,
        physical_network=sim.vpc_physical_network(), offering=offering.db_id, cidr=cidr,
        gateway=gateway, vpc=vpc.db_id if vpc else None, acl=acl,
        domain=p.text("networkdomain") or (vpc.domain if vpc else "")))
    return network_json(sim, network)


def _acl_for(sim: CloudStackSim, uuid: str | None, vpc: Vpc) -> AclList:
    if uuid is None:
        return next(a for a in sim.db.acl_lists.values() if a.name == DEFAULT_DENY)
    acl = find(sim.db.acl_lists, uuid, "network ACL list")
    if acl.vpc not in (None, vpc.db_id):
        raise ApiError(PARAM_ERROR, "The ACL list belongs to another VPC")
    return acl


@commands.list("listNetworks", "network")
def list_networks(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    vpc = p.text("vpcid")
    return [network_json(sim, n) for n in sim.db.networks.sorted()
            if p.text("id") in (None, n.uuid) and p.text("name") in (None, n.name)
            and (vpc is None or (n.vpc is not None and sim.db.vpcs[n.vpc].uuid == vpc))]


@commands.asynchronous("deleteNetwork", None)
def delete_network(sim: CloudStackSim, p: Params) -> None:
    network = find(sim.db.networks, p.required("id"), "network")
    if sim.orchestrator.nics_on(network):
        raise ApiError(PARAM_ERROR, "Can't delete the network, not all user vms are "
                                    "expunged")
    sim.orchestrator.delete(network)
    db = sim.db
    for table in (db.firewall_rules, db.port_forwards, db.load_balancers):
        for rule in [r for r in table.values() if r.network == network.db_id]:
            del table[rule.db_id]
    del db.networks[network.db_id]


@commands.asynchronous("restartNetwork", "network")
def restart_network(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    network = find(sim.db.networks, p.required("id"), "network")
    if network.vpc is not None:
        raise ApiError(PARAM_ERROR, "A VPC tier restarts with its VPC (restartVPC)")
    sim.orchestrator.restart(network, p.boolean("cleanup", False))
    return network_json(sim, network)


# --- VPCs ----------------------------------------------------------------------------


def vpc_json(sim: CloudStackSim, vpc: Vpc) -> dict[str, Any]:
    zone = sim.db.zones[vpc.zone]
    answer: dict[str, Any] = {
        "id": vpc.uuid, "name": vpc.name, "displaytext": vpc.name, "cidr": vpc.cidr,
        "zoneid": zone.uuid, "zonename": zone.name, "state": vpc.state,
        "vpcofferingid": sim.db.offerings[vpc.offering].uuid, "networkdomain": vpc.domain,
        "network": [network_json(sim, n) for n in sim.db.networks.sorted()
                    if n.vpc == vpc.db_id], "restartrequired": False,
    }
    if vpc.source_nat_ip is not None:
        answer["publicip"] = sim.db.public_ips[vpc.source_nat_ip].address
    return answer


@commands.asynchronous("createVPC", "vpc")
def create_vpc(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    offering = _enabled_offering(sim, p.required("vpcofferingid"), "vpc")
    cidr = p.required("cidr")
    try:
        cidr = str(ipaddress.ip_network(cidr))
    except ValueError:
        raise ApiError(PARAM_ERROR, f"Invalid CIDR: {cidr}") from None
    db = sim.db
    vpc = db.vpcs.add(Vpc(db.vpcs.next_id(), name=p.required("name"), zone=ZONE_ID,
                          offering=offering.db_id, cidr=cidr,
                          domain=p.text("networkdomain") or ""))
    if p.boolean("start", True):
        ip = sim.free_public_ip()
        ip.vpc, ip.source_nat, ip.state = vpc.db_id, True, "Allocated"
        vpc.source_nat_ip = ip.db_id
        sim.orchestrator.implement_vpc(vpc)
    return vpc_json(sim, vpc)


@commands.list("listVPCs", "vpc")
def list_vpcs(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    return [vpc_json(sim, v) for v in sim.db.vpcs.sorted()
            if p.text("id") in (None, v.uuid) and p.text("name") in (None, v.name)]


@commands.asynchronous("updateVPC", "vpc")
def update_vpc(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    vpc = find(sim.db.vpcs, p.required("id"), "VPC")
    if p.text("name"):
        vpc.name = p.required("name")
    address = p.text("sourcenatipaddress")
    if address:
        ip = next((i for i in sim.db.public_ips.values()
                   if i.address == address and i.vpc == vpc.db_id), None)
        if ip is None:
            raise ApiError(PARAM_ERROR, f"IP address {address} is not associated with "
                                        f"VPC {vpc.name}")
        if ip.static_nat_vm is not None or _has_rules(sim, ip.db_id):
            raise ApiError(PARAM_ERROR, f"IP address {address} has rules: it cannot become "
                                        "the source NAT address")
        sim.orchestrator.update_vpc_source_nat(vpc, ip)
        if vpc.source_nat_ip is not None:
            sim.db.public_ips[vpc.source_nat_ip].source_nat = False
        ip.source_nat, vpc.source_nat_ip = True, ip.db_id
    return vpc_json(sim, vpc)


def _has_rules(sim: CloudStackSim, ip_id: int) -> bool:
    db = sim.db
    return any(r.public_ip == ip_id for table in (db.port_forwards, db.load_balancers)
               for r in table.values())


@commands.asynchronous("restartVPC", None)
def restart_vpc(sim: CloudStackSim, p: Params) -> None:
    vpc = find(sim.db.vpcs, p.required("id"), "VPC")
    tiers = [n for n in sim.db.networks.sorted() if n.vpc == vpc.db_id]
    implemented = [t for t in tiers if t.state == "Implemented"]
    if p.boolean("cleanup", False):
        sim.orchestrator.shutdown_vpc(vpc, implemented)
    sim.orchestrator.implement_vpc(vpc)
    for tier in implemented:
        sim.orchestrator.restart(tier, cleanup=False)


@commands.asynchronous("deleteVPC", None)
def delete_vpc(sim: CloudStackSim, p: Params) -> None:
    vpc = find(sim.db.vpcs, p.required("id"), "VPC")
    if any(n.vpc == vpc.db_id for n in sim.db.networks.values()):
        raise ApiError(PARAM_ERROR, f"VPC {vpc.name} has networks: delete them first")
    vpc.state = "Inactive"  # VpcManagerImpl.destroyVpc, before it shuts the VPC down
    sim.orchestrator.shutdown_vpc(vpc, [])
    for ip in sim.db.public_ips.values():
        if ip.vpc == vpc.db_id:
            ip.vpc, ip.source_nat, ip.state = None, False, "Free"
    for acl in [a for a in sim.db.acl_lists.values() if a.vpc == vpc.db_id]:
        del sim.db.acl_lists[acl.db_id]
    del sim.db.vpcs[vpc.db_id]


# --- network ACLs --------------------------------------------------------------------


def acl_list_json(sim: CloudStackSim, acl: AclList) -> dict[str, Any]:
    answer = {"id": acl.uuid, "name": acl.name, "description": acl.description}
    if acl.vpc is not None:
        answer["vpcid"] = sim.db.vpcs[acl.vpc].uuid
    return answer


def acl_item_json(sim: CloudStackSim, item: AclItem) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": item.uuid, "aclid": sim.db.acl_lists[item.acl].uuid, "number": item.number,
        "action": item.action.capitalize(), "traffictype": item.traffic.capitalize(),
        "protocol": item.protocol, "cidrlist": ",".join(item.source_cidrs), "state": "Active"}
    if item.ports:
        answer.update(startport=str(item.ports[0]), endport=str(item.ports[1]))
    if item.icmp:
        answer.update(icmptype=item.icmp[0], icmpcode=item.icmp[1])
    return answer


@commands.asynchronous("createNetworkACLList", "networkacllist")
def create_acl_list(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    vpc = find(sim.db.vpcs, p.required("vpcid"), "VPC")
    acl = sim.db.acl_lists.add(AclList(sim.db.acl_lists.next_id(), name=p.required("name"),
                                       description=p.text("description") or "",
                                       vpc=vpc.db_id))
    return acl_list_json(sim, acl)


@commands.list("listNetworkACLLists", "networkacllist")
def list_acl_lists(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    vpc = p.text("vpcid")
    return [acl_list_json(sim, a) for a in sim.db.acl_lists.sorted()
            if p.text("id") in (None, a.uuid) and p.text("name") in (None, a.name)
            and (vpc is None or a.vpc is None or sim.db.vpcs[a.vpc].uuid == vpc)]


@commands.asynchronous("createNetworkACL", "networkacl")
def create_acl_item(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    acl = find(sim.db.acl_lists, p.required("aclid"), "network ACL list")
    if acl.vpc is None:
        raise ApiError(PARAM_ERROR, "The default ACL lists cannot be changed")
    numbers = [i.number for i in sim.db.acl_items.values() if i.acl == acl.db_id]
    number = p.integer("number", max(numbers, default=0) + 1)
    if number in numbers:
        raise ApiError(PARAM_ERROR, f"ACL item with number {number} already exists in "
                                    f"ACL {acl.name}")
    item = sim.db.acl_items.add(AclItem(
        sim.db.acl_items.next_id(), acl=acl.db_id, number=number,
        action=(p.text("action") or "allow").lower(),
        traffic=(p.text("traffictype") or "ingress").lower(),
        source_cidrs=p.csv("cidrlist") or ["0.0.0.0/0"], **protocol_fields(p)))
    _apply_acl_list(sim, acl.db_id)
    return acl_item_json(sim, item)


def _apply_acl_list(sim: CloudStackSim, acl_id: int) -> None:
    for tier in sim.db.networks.sorted():
        if tier.acl == acl_id and tier.state == "Implemented":
            sim.orchestrator.apply_acl(tier)


@commands.list("listNetworkACLs", "networkacl")
def list_acl_items(sim: CloudStackSim, p: Params) -> list[dict[str, Any]]:
    acl = p.text("aclid")
    return [acl_item_json(sim, i) for i in sim.db.acl_items.sorted()
            if acl in (None, sim.db.acl_lists[i.acl].uuid) and p.text("id") in (None, i.uuid)]


@commands.asynchronous("deleteNetworkACL", None)
def delete_acl_item(sim: CloudStackSim, p: Params) -> None:
    item = find(sim.db.acl_items, p.required("id"), "network ACL")
    if sim.db.acl_lists[item.acl].vpc is None:
        raise ApiError(PARAM_ERROR, "The default ACL lists cannot be changed")
    del sim.db.acl_items[item.db_id]
    _apply_acl_list(sim, item.acl)


@commands.asynchronous("replaceNetworkACLList", None)
def replace_acl_list(sim: CloudStackSim, p: Params) -> None:
    tier = find(sim.db.networks, p.required("networkid"), "network")
    if tier.vpc is None:
        raise ApiError(PARAM_ERROR, "Only VPC tiers take a network ACL list")
    tier.acl = _acl_for(sim, p.required("aclid"), sim.db.vpcs[tier.vpc]).db_id
    if tier.state == "Implemented":
        sim.orchestrator.apply_acl(tier)


# --- custom actions ------------------------------------------------------------------


@commands.asynchronous("runNetworkCustomAction", "customactionresult")
def run_custom_action(sim: CloudStackSim, p: Params) -> dict[str, Any]:
    network = find(sim.db.networks, p.required("networkid"), "network")
    action = sim.custom_actions.get(p.required("actionid"))
    if action is None:
        raise ApiError(PARAM_ERROR, f"Unable to find custom action {p.required('actionid')}")
    params = {item["key"]: item.get("value", "") for item in p.indexed("parameters")
              if "key" in item}
    orchestrator = sim.orchestrator
    fields = custom_action(N(orchestrator.net_view(network)), action, params)
    spawn = orchestrator.run("custom-action", fields, network, fatal=False)
    return {"success": spawn.code == 0, "name": action,
            "result": {"message": spawn.output or "OK"}}
