"""/v1/vpcs and /v1/networks: segments and routing domains, allocated idempotently."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from provider_service import tenancy as ops
from provider_service import validation as v
from provider_service.api.body import Body
from provider_service.api.openapi import list_of, operation
from provider_service.app import db
from provider_service.errors import BadRequest
from provider_service.models.tenancy import GUEST_TYPES, NETWORK_MODES
from provider_service.sql import Sql

blueprint = Blueprint("networks", __name__, url_prefix="/v1")

MAX_STATE_CHARS = 32  # the state columns of vpcs and networks


def _physnet_ref(body: Body) -> ops.PhysnetRef:
    return ops.PhysnetRef(
        id=body.get("physical_network_id", v.parse_id, None),
        name=body.get("physical_network_name", v.require_str, None),
    )


def _mode(value: object, field: str) -> str:
    return v.parse_choice(value, field, NETWORK_MODES)


def _state(value: object, field: str) -> str:
    text = v.parse_name(value, field).lower()
    if len(text) > MAX_STATE_CHARS:
        raise BadRequest(f"{field}: {len(text)} characters is more than {MAX_STATE_CHARS}")
    return text


# --- VPCs ------------------------------------------------------------------------------

_VPC_FIELDS = ("zone_id", "cidr", "physical_network_id", "physical_network_name", "mode", "state")


def parse_vpc(vpc_id: str, body: Body) -> ops.VpcSpec:
    return ops.VpcSpec(
        id=v.parse_id(vpc_id, "vpc_id"),
        zone_id=body.get("zone_id", v.parse_id),
        cidr=str(body.get("cidr", lambda x, f: v.parse_cidr(x, f, version=4))),
        physnet=_physnet_ref(body),
        mode=body.get("mode", _mode, "natted"),
        state=body.get("state", _state, ""),
    )


@blueprint.put("/vpcs/<vpc_id>")
def put_vpc(vpc_id: str) -> ResponseReturnValue:
    spec = parse_vpc(vpc_id, Body.from_request(_VPC_FIELDS))
    return db().write_sql(lambda sql: vpc_json(ops.apply_vpc(sql, spec)))


@blueprint.get("/vpcs")
def list_vpcs() -> ResponseReturnValue:
    with db().read() as s:
        return [vpc_json(vpc) for vpc in ops.vpc_views(Sql(s))]


@blueprint.get("/vpcs/<vpc_id>")
def get_vpc(vpc_id: str) -> ResponseReturnValue:
    with db().read() as s:
        return vpc_json(ops.vpc_view(Sql(s), vpc_id))


@blueprint.delete("/vpcs/<vpc_id>")
def delete_vpc(vpc_id: str) -> ResponseReturnValue:
    db().write(lambda s: ops.delete_vpc(s, vpc_id))
    return "", 204


def vpc_json(vpc: ops.VpcView) -> dict[str, Any]:
    return {
        "id": vpc.id,
        "zone_id": vpc.zone_id,
        "physical_network_id": vpc.physical_network_id,
        "cidr": vpc.cidr,
        "mode": vpc.mode,
        "state": vpc.state,
        "l3vni": vpc.l3vni,
        "route_target": f"{vpc.rt_asn}:{vpc.l3vni}",
    }


# --- networks --------------------------------------------------------------------------

_NETWORK_FIELDS = (
    "zone_id", "physical_network_id", "physical_network_name", "vpc_id", "guest_type", "mode",
    "cidr", "gateway", "ip6_cidr", "ip6_gateway", "state", "extension_ip",
)


def parse_network(network_id: str, body: Body) -> ops.NetworkSpec:
    cidr = body.get("cidr", lambda x, f: v.parse_cidr(x, f, version=4))
    gateway = body.get("gateway", lambda x, f: v.parse_ip(x, f, version=4))
    v.gateway_in_cidr(gateway, cidr, "gateway")
    ip6_cidr = body.get("ip6_cidr", lambda x, f: v.parse_cidr(x, f, version=6), None)
    ip6_gateway = body.get("ip6_gateway", lambda x, f: v.parse_ip(x, f, version=6), None)
    if (ip6_cidr is None) != (ip6_gateway is None):
        raise BadRequest("ip6_gateway: IPv6 needs both ip6_cidr and ip6_gateway")
    if ip6_cidr is not None and ip6_gateway is not None:
        v.gateway_in_cidr(ip6_gateway, ip6_cidr, "ip6_gateway")
    extension_ip = body.get("extension_ip", lambda x, f: v.parse_ip(x, f, version=4), None)
    if extension_ip is not None and extension_ip not in cidr:
        raise BadRequest(f"extension_ip: {extension_ip} is outside {cidr}")
    return ops.NetworkSpec(
        id=v.parse_id(network_id, "network_id"),
        zone_id=body.get("zone_id", v.parse_id),
        cidr=str(cidr),
        gateway=str(gateway),
        physnet=_physnet_ref(body),
        vpc_id=body.get("vpc_id", v.parse_id, None),
        guest_type=body.get(
            "guest_type", lambda x, f: v.parse_choice(x, f, GUEST_TYPES),
            "isolated",
        ),
        mode=body.get("mode", _mode, "natted"),
        ip6_cidr=str(ip6_cidr or ""),
        ip6_gateway=str(ip6_gateway or ""),
        state=body.get("state", _state, ""),
        extension_ip=str(extension_ip or ""),
    )


@blueprint.put("/networks/<network_id>")
def put_network(network_id: str) -> ResponseReturnValue:
    spec = parse_network(network_id, Body.from_request(_NETWORK_FIELDS))
    return db().write_sql(lambda sql: network_json(ops.apply_network(sql, spec)))


@blueprint.get("/networks")
def list_networks() -> ResponseReturnValue:
    zone_id, vpc_id = request.args.get("zone_id"), request.args.get("vpc_id")
    with db().read() as s:
        views = ops.network_views(Sql(s), zone_id=zone_id, vpc_id=vpc_id)
        return [network_json(view) for view in views]


@blueprint.get("/networks/<network_id>")
def get_network(network_id: str) -> ResponseReturnValue:
    with db().read() as s:
        return network_json(ops.network_view(Sql(s), network_id))


@blueprint.delete("/networks/<network_id>")
def delete_network(network_id: str) -> ResponseReturnValue:
    db().write(lambda s: ops.delete_network(s, network_id))
    return "", 204


def network_json(network: ops.NetworkView) -> dict[str, Any]:
    kind, number = network.segment_kind, network.segment_id
    l3vni, rt_asn = network.l3vni, network.rt_asn
    return {
        "id": network.id,
        "zone_id": network.zone_id,
        "physical_network_id": network.physical_network_id,
        "vpc_id": network.vpc_id,
        "guest_type": network.guest_type,
        "mode": network.mode,
        "cidr": network.cidr,
        "gateway": network.gateway,
        "ip6_cidr": network.ip6_cidr,
        "ip6_gateway": network.ip6_gateway,
        "state": network.state,
        "extension_ip": network.extension_ip,
        "segment": {"kind": kind, "id": number},
        # What implement-network hands back to CloudStack, unchanged for the network's life.
        "broadcast_domain_type": "Vxlan" if kind == "vni" else "Vlan",
        "broadcast_uri": f"{'vxlan' if kind == 'vni' else 'vlan'}://{number}",
        "l3vni": l3vni,
        "route_targets": {"l2": f"{rt_asn}:{number}" if kind == "vni" else None,
                          "l3": f"{rt_asn}:{l3vni}"},
    }


# --- OpenAPI ---------------------------------------------------------------------------

_STATE = {"type": "string", "maxLength": MAX_STATE_CHARS}
_PHYSNET_REF = {
    "physical_network_id": {"type": "string"},
    "physical_network_name": {"type": "string",
                              "description": "as in CloudStack's physicalnetworkname detail"},
}
SCHEMAS: dict[str, Any] = {
    "VpcSpec": {"type": "object", "additionalProperties": False, "required": ["zone_id", "cidr"],
                "properties": {"zone_id": {"type": "string"}, "cidr": {"type": "string"},
                               "mode": {"enum": list(NETWORK_MODES)}, "state": _STATE,
                               **_PHYSNET_REF}},
    "Vpc": {"type": "object", "properties": {
        "id": {"type": "string"}, "zone_id": {"type": "string"},
        "physical_network_id": {"type": "string"}, "cidr": {"type": "string"},
        "mode": {"enum": list(NETWORK_MODES)}, "state": _STATE, "l3vni": {"type": "integer"},
        "route_target": {"type": "string"}}},
    "NetworkSpec": {"type": "object", "additionalProperties": False,
                    "required": ["zone_id", "cidr", "gateway"], "properties": {
        "zone_id": {"type": "string"}, "vpc_id": {"type": "string"},
        "guest_type": {"enum": list(GUEST_TYPES)}, "mode": {"enum": list(NETWORK_MODES)},
        "cidr": {"type": "string"}, "gateway": {"type": "string"},
        "ip6_cidr": {"type": "string"}, "ip6_gateway": {"type": "string"},
        "state": _STATE, "extension_ip": {"type": "string"}, **_PHYSNET_REF}},
    "Network": {"type": "object", "properties": {
        "id": {"type": "string"}, "zone_id": {"type": "string"},
        "physical_network_id": {"type": "string"},
        "vpc_id": {"type": ["string", "null"]},
        "guest_type": {"enum": list(GUEST_TYPES)}, "mode": {"enum": list(NETWORK_MODES)},
        "cidr": {"type": "string", "examples": ["10.1.0.0/24"]},
        "gateway": {"type": "string"},
        "ip6_cidr": {"type": "string", "description": "empty when the network has no IPv6"},
        "ip6_gateway": {"type": "string"},
        "state": _STATE,
        "extension_ip": {"type": "string", "description": "empty when CloudStack sent none"},
        "segment": {"type": "object", "properties": {"kind": {"enum": ["vni", "vlan"]},
                                                     "id": {"type": "integer"}}},
        "broadcast_domain_type": {"enum": ["Vxlan", "Vlan"]},
        "broadcast_uri": {"type": "string", "examples": ["vxlan://10000"]},
        "l3vni": {"type": "integer"}, "route_targets": {"type": "object"}}},
}
PATHS: dict[str, Any] = {
    "/v1/vpcs": {"get": operation("List VPCs", response=list_of("Vpc"), errors=())},
    "/v1/vpcs/{vpc_id}": {
        "put": operation("Create or update a VPC; allocates its L3VNI once", request="VpcSpec",
                         response="Vpc"),
        "get": operation("Show a VPC", response="Vpc", errors=(404,)),
        "delete": operation("Delete a VPC without tiers; releases its L3VNI", status=204,
                            errors=(409,)),
    },
    "/v1/networks": {
        "get": operation("List networks (filters: vpc_id, zone_id)",
                         response=list_of("Network"), errors=()),
    },
    "/v1/networks/{network_id}": {
        "put": operation("Create or update a network; allocates its segment once",
                         request="NetworkSpec", response="Network"),
        "get": operation("Show a network", response="Network", errors=(404,)),
        "delete": operation("Destroy a network; releases its numbers", status=204, errors=()),
    },
}
