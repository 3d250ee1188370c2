"""/v1 public IPs, static NAT, port forwards; each network's firewall, ACL and LBs.

Public IPs live under their zone (an address is unique per zone, not globally); the rule
sets CloudStack sends whole (firewall, ACL, load balancers) live under their network and
take CloudStack's own camelCase rule objects, and their GET gives back a body the PUT
accepts, so a replay of what we show is a no-op.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from provider_service import nat, policy
from provider_service import validation as v
from provider_service.api import rule_parsing as parse
from provider_service.api.body import Body
from provider_service.api.openapi import list_of, operation, ref
from provider_service.app import db
from provider_service.models import Network, PublicIp
from provider_service.models.rules import AclItem, FirewallRule, LbRule, PortForward, StaticNat
from provider_service.tenancy import get_network

blueprint = Blueprint("rules", __name__, url_prefix="/v1")

_IP = "/zones/<zone_id>/public-ips/<address>"
_FORWARD = _IP + "/port-forwards/<protocol>/<public_ports>"


# --- public IPs ------------------------------------------------------------------------


@blueprint.put(_IP)
def put_public_ip(zone_id: str, address: str) -> ResponseReturnValue:
    spec = parse.parse_public_ip(zone_id, address, Body.from_request(parse.PUBLIC_IP_FIELDS))
    return db().write(lambda s: public_ip_json(s, nat.apply_public_ip(s, spec)))


@blueprint.get("/zones/<zone_id>/public-ips")
def list_public_ips(zone_id: str) -> ResponseReturnValue:
    network_id, vpc_id = (
        v.parse_id(request.args[name], name) if name in request.args else None
        for name in ("network_id", "vpc_id")
    )
    with db().read() as s:
        ips = nat.list_public_ips(s, zone_id, network_id, vpc_id)
        statics = nat.static_nats(s, ips)
        return [_public_ip_json(ip, statics.get(ip.id)) for ip in ips]


@blueprint.get(_IP)
def get_public_ip(zone_id: str, address: str) -> ResponseReturnValue:
    with db().read() as s:
        return public_ip_json(s, nat.get_public_ip(s, zone_id, address))


@blueprint.delete(_IP)
def delete_public_ip(zone_id: str, address: str) -> ResponseReturnValue:
    address = parse.parse_ipv4(address, "address")
    db().write(lambda s: nat.delete_public_ip(s, zone_id, address))
    return "", 204


def public_ip_json(session: Session, ip: PublicIp) -> dict[str, Any]:
    return _public_ip_json(ip, nat.static_nat_of(session, ip))


def _public_ip_json(ip: PublicIp, static: StaticNat | None) -> dict[str, Any]:
    return {
        "zone_id": ip.zone_id,
        "address": ip.address,
        "network_id": ip.network_id,
        "vpc_id": ip.vpc_id,
        "cidr": ip.cidr,
        "gateway": ip.gateway,
        "vlan": ip.vlan,
        "source_nat": ip.source_nat,
        "static_nat": None if static is None else static_nat_json(static),
    }


# --- static NAT ------------------------------------------------------------------------


@blueprint.put(_IP + "/static-nat")
def put_static_nat(zone_id: str, address: str) -> ResponseReturnValue:
    spec = parse.parse_static_nat(zone_id, address, Body.from_request(parse.STATIC_NAT_FIELDS))
    return db().write(lambda s: static_nat_json(nat.apply_static_nat(s, spec)))


@blueprint.get(_IP + "/static-nat")
def get_static_nat(zone_id: str, address: str) -> ResponseReturnValue:
    with db().read() as s:
        return static_nat_json(nat.get_static_nat(s, zone_id, address))


@blueprint.delete(_IP + "/static-nat")
def delete_static_nat(zone_id: str, address: str) -> ResponseReturnValue:
    address = parse.parse_ipv4(address, "address")
    db().write(lambda s: nat.delete_static_nat(s, zone_id, address))
    return "", 204


def static_nat_json(static: StaticNat) -> dict[str, Any]:
    return {
        "public_ip": static.public_ip.address,
        "network_id": static.network_id,
        "private_ip": static.private_ip,
    }


# --- port forwards ---------------------------------------------------------------------


@blueprint.put(_FORWARD)
def put_port_forward(
    zone_id: str, address: str, protocol: str, public_ports: str
) -> ResponseReturnValue:
    body = Body.from_request(parse.PORT_FORWARD_FIELDS)
    spec = parse.parse_port_forward(zone_id, address, protocol, public_ports, body)
    return db().write(lambda s: port_forward_json(nat.apply_port_forward(s, spec)))


@blueprint.get(_IP + "/port-forwards")
def list_port_forwards(zone_id: str, address: str) -> ResponseReturnValue:
    with db().read() as s:
        return [port_forward_json(forward)
                for forward in nat.list_port_forwards(s, zone_id, address)]


@blueprint.get(_FORWARD)
def get_port_forward(
    zone_id: str, address: str, protocol: str, public_ports: str
) -> ResponseReturnValue:
    protocol = parse.parse_nat_protocol(protocol, "protocol")
    ports = v.parse_port_range(public_ports, "public_ports")
    with db().read() as s:
        return port_forward_json(nat.get_port_forward(s, zone_id, address, protocol, ports))


@blueprint.delete(_FORWARD)
def delete_port_forward(
    zone_id: str, address: str, protocol: str, public_ports: str
) -> ResponseReturnValue:
    address = parse.parse_ipv4(address, "address")
    protocol = parse.parse_nat_protocol(protocol, "protocol")
    ports = v.parse_port_range(public_ports, "public_ports")
    db().write(lambda s: nat.delete_port_forward(s, zone_id, address, protocol, ports))
    return "", 204


def port_forward_json(forward: PortForward) -> dict[str, Any]:
    return {
        "public_ip": forward.public_ip.address,
        "protocol": forward.protocol,
        "public_ports": nat.ranged((forward.public_port_start, forward.public_port_end)),
        "network_id": forward.network_id,
        "private_ip": forward.private_ip,
        "private_ports": nat.ranged((forward.private_port_start, forward.private_port_end)),
    }


# --- firewall --------------------------------------------------------------------------


@blueprint.put("/networks/<network_id>/firewall")
def put_firewall(network_id: str) -> ResponseReturnValue:
    spec = parse.parse_firewall(network_id, Body.from_request(parse.FIREWALL_FIELDS))
    return db().write(lambda s: firewall_json(s, policy.apply_firewall(s, spec)))


@blueprint.get("/networks/<network_id>/firewall")
def get_firewall(network_id: str) -> ResponseReturnValue:
    with db().read() as s:
        return firewall_json(s, get_network(s, network_id))


def firewall_json(session: Session, network: Network) -> dict[str, Any]:
    return {
        "default_egress_allow": network.default_egress_allow,
        "cidr": network.cidr,
        "rules": [firewall_rule_json(rule) for rule in policy.firewall_rules(session, network.id)],
    }


def firewall_rule_json(rule: FirewallRule) -> dict[str, Any]:
    return {
        "id": rule.rule_id,
        "type": rule.direction,
        "protocol": rule.protocol,
        **_ports_json(rule),
        "publicIp": None if rule.public_ip is None else rule.public_ip.address,
        "sourceCidrs": _cidrs(rule.source_cidrs),
        "destCidrs": _cidrs(rule.dest_cidrs),
    }


# --- network ACL -----------------------------------------------------------------------


@blueprint.put("/networks/<network_id>/acl")
def put_acl(network_id: str) -> ResponseReturnValue:
    spec = parse.parse_acl(network_id, Body.from_request(parse.RULE_LIST_FIELDS))
    return db().write(lambda s: acl_json(s, policy.apply_acl(s, spec)))


@blueprint.get("/networks/<network_id>/acl")
def get_acl(network_id: str) -> ResponseReturnValue:
    with db().read() as s:
        return acl_json(s, get_network(s, network_id))


def acl_json(session: Session, network: Network) -> dict[str, Any]:
    return {"rules": [acl_item_json(item) for item in policy.acl_items(session, network.id)]}


def acl_item_json(item: AclItem) -> dict[str, Any]:
    return {
        "number": item.number,
        "action": item.action,
        "trafficType": item.direction,
        "protocol": item.protocol,
        **_ports_json(item),
        "sourceCidrs": _cidrs(item.source_cidrs),
    }


# --- load balancers --------------------------------------------------------------------


@blueprint.put("/networks/<network_id>/load-balancers")
def put_load_balancers(network_id: str) -> ResponseReturnValue:
    spec = parse.parse_load_balancers(network_id, Body.from_request(parse.RULE_LIST_FIELDS))
    return db().write(lambda s: lb_json(s, policy.apply_load_balancers(s, spec)))


@blueprint.get("/networks/<network_id>/load-balancers")
def get_load_balancers(network_id: str) -> ResponseReturnValue:
    with db().read() as s:
        return lb_json(s, get_network(s, network_id))


def lb_json(session: Session, network: Network) -> dict[str, Any]:
    return {"rules": [lb_rule_json(rule) for rule in policy.lb_rules(session, network.id)]}


def lb_rule_json(rule: LbRule) -> dict[str, Any]:
    return {
        "id": rule.rule_id,
        "name": rule.name,
        "publicIp": rule.public_ip.address,
        "publicPort": rule.public_port,
        "privatePort": rule.private_port,
        "protocol": rule.protocol,
        "algorithm": rule.algorithm,
        "backends": [{"ip": backend.ip, "port": backend.port} for backend in rule.backends],
    }


def _ports_json(rule: FirewallRule | AclItem) -> dict[str, int | None]:
    return {"portStart": rule.port_start, "portEnd": rule.port_end,
            "icmpType": rule.icmp_type, "icmpCode": rule.icmp_code}


def _cidrs(joined: str) -> list[str]:
    return joined.split(",") if joined else []


# --- OpenAPI ---------------------------------------------------------------------------

_STR = {"type": "string"}
_INT = {"type": "integer"}
_OPT_INT = {"type": ["integer", "null"]}
_BOOL = {"description": "a JSON boolean or 'true'/'false'"}
_CIDRS = {"type": "array", "items": _STR}
_PORTS = {"type": "string", "pattern": r"^\d+(-\d+)?$", "examples": ["80", "8000-8100"]}
_RULE_PORTS = {"portStart": _OPT_INT, "portEnd": _OPT_INT,
               "icmpType": {**_OPT_INT, "minimum": -1, "maximum": 255},
               "icmpCode": {**_OPT_INT, "minimum": -1, "maximum": 255}}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": required,
            "properties": properties}


def _rule_set(item: str) -> dict[str, Any]:
    return _object(["rules"], {"rules": {"type": "array", "items": ref(item)}})


SCHEMAS: dict[str, Any] = {
    "PublicIpSpec": _object(["cidr", "gateway"], {
        "network_id": _STR, "vpc_id": {**_STR, "description": "exactly one of the two owners"},
        "cidr": {**_STR, "description": "CloudStack's public_cidr, e.g. 203.0.113.5/24"},
        "gateway": _STR, "vlan": {**_STR, "examples": ["vlan://101", "untagged"]},
        "source_nat": _BOOL}),
    "PublicIp": {"type": "object", "properties": {
        "zone_id": _STR, "address": _STR, "network_id": {"type": ["string", "null"]},
        "vpc_id": {"type": ["string", "null"]}, "cidr": _STR, "gateway": _STR, "vlan": _STR,
        "source_nat": {"type": "boolean"},
        "static_nat": {"oneOf": [ref("StaticNat"), {"type": "null"}]}}},
    "StaticNatSpec": _object(["network_id", "private_ip"], {"network_id": _STR,
                                                            "private_ip": _STR}),
    "StaticNat": {"type": "object", "properties": {"public_ip": _STR, "network_id": _STR,
                                                   "private_ip": _STR}},
    "PortForwardSpec": _object(["network_id", "private_ip", "private_port"], {
        "network_id": _STR, "private_ip": _STR,
        "private_port": {**_PORTS, "description": "as long as the public range"}}),
    "PortForward": {"type": "object", "properties": {
        "public_ip": _STR, "protocol": {"enum": ["tcp", "udp"]}, "public_ports": _PORTS,
        "network_id": _STR, "private_ip": _STR, "private_ports": _PORTS}},
    "FirewallRule": _object(["id", "type", "protocol"], {
        "id": _INT, "type": {"enum": ["ingress", "egress"]},
        "protocol": {"enum": ["tcp", "udp", "icmp", "all"]}, **_RULE_PORTS,
        "publicIp": {"type": ["string", "null"], "description": (
            "ingress rules of a NATTED network only; a ROUTED network's ingress rules open "
            "guest addresses, destCidrs (none: the whole network)")},
        "sourceCidrs": _CIDRS, "destCidrs": _CIDRS}),
    "Firewall": _object(["default_egress_allow", "rules"], {
        "default_egress_allow": _BOOL, "cidr": {**_STR, "description": "the network's CIDR"},
        "rules": {"type": "array", "items": ref("FirewallRule")}}),
    "AclItem": _object(["number", "action", "trafficType", "protocol"], {
        "number": _INT, "action": {"enum": ["allow", "deny"]},
        "trafficType": {"enum": ["ingress", "egress"]},
        "protocol": {**_STR, "description": "tcp, udp, icmp, all or a protocol number"},
        **_RULE_PORTS, "sourceCidrs": _CIDRS}),
    "Acl": _rule_set("AclItem"),
    "LbBackend": _object(["ip", "port"], {"ip": _STR, "port": _INT, "revoked": _BOOL}),
    "LbRule": _object(
        ["id", "name", "publicIp", "publicPort", "privatePort", "protocol", "algorithm"], {
            "id": _INT, "name": {**_STR, "maxLength": 255}, "publicIp": _STR,
            "publicPort": _INT, "privatePort": _INT, "protocol": {"enum": ["tcp", "udp"]},
            "algorithm": {"enum": ["roundrobin", "leastconn", "source"]},
            "revoke": {**_BOOL, "description": "revoked rules are dropped"},
            "backends": {"type": "array", "items": ref("LbBackend")}}),
    "LoadBalancers": _rule_set("LbRule"),
}
_IP_DOC = "/v1/zones/{zone_id}/public-ips/{address}"
PATHS: dict[str, Any] = {
    "/v1/zones/{zone_id}/public-ips": {"get": operation(
        "List a zone's public IPs (filters: network_id, vpc_id)",
        response=list_of("PublicIp"), errors=(400, 404))},
    _IP_DOC: {
        "put": operation("Assign a public IP to a network or VPC (idempotent)",
                         request="PublicIpSpec", response="PublicIp"),
        "get": operation("Show a public IP", response="PublicIp", errors=(404,)),
        "delete": operation("Release a public IP with its NAT and rules (idempotent)",
                            status=204, errors=(400,)),
    },
    _IP_DOC + "/static-nat": {
        "put": operation("Enable static NAT (idempotent)", request="StaticNatSpec",
                         response="StaticNat"),
        "get": operation("Show a static NAT", response="StaticNat", errors=(404,)),
        "delete": operation("Disable static NAT (idempotent)", status=204, errors=(400,)),
    },
    _IP_DOC + "/port-forwards": {"get": operation(
        "List a public IP's port forwards", response=list_of("PortForward"), errors=(404,))},
    _IP_DOC + "/port-forwards/{protocol}/{public_ports}": {
        "put": operation("Create or update a port forward (idempotent)",
                         request="PortForwardSpec", response="PortForward"),
        "get": operation("Show a port forward", response="PortForward", errors=(400, 404)),
        "delete": operation("Delete a port forward (idempotent)", status=204, errors=(400,)),
    },
    "/v1/networks/{network_id}/firewall": {
        "put": operation("Replace a network's firewall rules (CloudStack's fw_rules)",
                         request="Firewall", response="Firewall"),
        "get": operation("Show a network's firewall rules", response="Firewall",
                         errors=(404,)),
    },
    "/v1/networks/{network_id}/acl": {
        "put": operation("Replace a VPC tier's network ACL (CloudStack's acl_rules)",
                         request="Acl", response="Acl"),
        "get": operation("Show a network's ACL, sorted by number", response="Acl",
                         errors=(404,)),
    },
    "/v1/networks/{network_id}/load-balancers": {
        "put": operation("Replace a network's load balancers (CloudStack's lb_rules)",
                         request="LoadBalancers", response="LoadBalancers"),
        "get": operation("Show a network's load balancers", response="LoadBalancers",
                         errors=(404,)),
    },
}
