"""/v1/zones, /v1/physical-networks, /v1/devices: the operator's inventory."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provider_service import device_state
from provider_service import inventory as ops
from provider_service import validation as v
from provider_service.api.body import Body
from provider_service.api.openapi import list_of, operation
from provider_service.app import db
from provider_service.errors import BadRequest, NotFound
from provider_service.models import Allocation, Device, NumberPool, PhysicalNetwork, Zone
from provider_service.models.fabric import DEVICE_ROLES, ISOLATION_METHODS, VRF_BACKENDS

blueprint = Blueprint("inventory", __name__, url_prefix="/v1")

# Column sizes (models/fabric.py): checked here, as PostgreSQL would refuse longer text
# where SQLite stores it.
MAX_NAME_CHARS = 255
MAX_URL_CHARS = 255
MAX_INTERFACE_CHARS = 15  # IFNAMSIZ - 1: a kernel limit


def parse_label(value: object, field: str) -> str:
    """A zone's or physical network's name: free text of at most MAX_NAME_CHARS."""
    text = v.require_str(value, field)
    if len(text) > MAX_NAME_CHARS:
        raise BadRequest(f"{field}: {len(text)} characters is more than {MAX_NAME_CHARS}")
    return text


def parse_service_url(value: object, field: str) -> str:
    """Where CloudStack's extension reaches this service: an http(s) URL with a host."""
    text = v.require_str(value, field)
    if len(text) > MAX_URL_CHARS:
        raise BadRequest(f"{field}: {len(text)} characters is more than {MAX_URL_CHARS}")
    # urlsplit drops tabs and newlines silently; the stored text must not keep them.
    if not text.isprintable() or any(char.isspace() for char in text):
        raise BadRequest(f"{field}: a URL has no spaces or control characters: {v.show(text)}")
    try:
        url = urlsplit(text)
        _ = url.port  # raises ValueError for a port that is no number or out of range
    except ValueError as exc:
        raise BadRequest(f"{field}: not a URL: {v.show(text)}") from exc
    if url.scheme.lower() not in ("http", "https") or not url.hostname:
        raise BadRequest(f"{field}: expected an http:// or https:// URL with a host, "
                         f"got {v.show(text)}")
    return text


def parse_interface(value: object, field: str) -> str:
    text = v.parse_name(value, field)
    if len(text) > MAX_INTERFACE_CHARS:
        raise BadRequest(f"{field}: interface names are at most {MAX_INTERFACE_CHARS} "
                         "characters (a kernel limit)")
    return text


# --- zones -----------------------------------------------------------------------------


def parse_zone(zone_id: str, body: Body) -> ops.ZoneSpec:
    return ops.ZoneSpec(
        id=v.parse_id(zone_id, "zone_id"),
        name=body.get("name", parse_label, ""),
        rt_asn=body.get("rt_asn", lambda x, f: v.parse_int(x, f, 1, 65535), 65000),
        asn_range=body.get(
            "asn_range", lambda x, f: v.parse_range(x, f, 1, v.MAX_ASN), ops.DEFAULT_ASN_RANGE
        ),
    )


@blueprint.put("/zones/<zone_id>")
def put_zone(zone_id: str) -> ResponseReturnValue:
    spec = parse_zone(zone_id, Body.from_request(("name", "rt_asn", "asn_range")))
    return db().write(lambda s: zone_json(s, ops.apply_zone(s, spec)))


@blueprint.get("/zones")
def list_zones() -> ResponseReturnValue:
    with db().read() as s:
        return [zone_json(s, zone) for zone in s.scalars(select(Zone).order_by(Zone.id))]


@blueprint.get("/zones/<zone_id>")
def get_zone(zone_id: str) -> ResponseReturnValue:
    with db().read() as s:
        return zone_json(s, ops.get_zone(s, zone_id))


def zone_json(session: Session, zone: Zone) -> dict[str, Any]:
    asn = next(pool for pool in zone.pools if pool.purpose == "asn")
    return {
        "id": zone.id,
        "name": zone.name,
        "rt_asn": zone.rt_asn,
        "pools": {"asn": pool_json(session, asn)},
    }


def pool_json(session: Session, pool: NumberPool) -> dict[str, Any]:
    used = session.scalar(select(func.count()).where(Allocation.pool_id == pool.id)) or 0
    size = pool.last_number - pool.first_number + 1
    return {"range": f"{pool.first_number}-{pool.last_number}", "size": size, "used": used}


# --- physical networks -----------------------------------------------------------------

_PHYSNET_FIELDS = (
    "zone_id", "name", "isolation_method", "l2vni_range", "l3vni_range", "vlan_range",
    "service_url", "token",
)


def parse_physical_network(physnet_id: str, body: Body) -> ops.PhysicalNetworkSpec:
    def vni_range(value: object, field: str) -> tuple[int, int]:
        return v.parse_range(value, field, 1, v.MAX_VNI)

    spec = ops.PhysicalNetworkSpec(
        id=v.parse_id(physnet_id, "physical_network_id"),
        zone_id=body.get("zone_id", v.parse_id),
        name=body.get("name", parse_label, ""),
        isolation_method=body.get(
            "isolation_method", lambda x, f: v.parse_choice(x, f, ISOLATION_METHODS), "vxlan"
        ),
        l2vni_range=body.get("l2vni_range", vni_range, ops.DEFAULT_L2VNI_RANGE),
        l3vni_range=body.get("l3vni_range", vni_range, ops.DEFAULT_L3VNI_RANGE),
        vlan_range=body.get(
            "vlan_range", lambda x, f: v.parse_range(x, f, v.MIN_VLAN, v.MAX_VLAN),
            ops.DEFAULT_VLAN_RANGE,
        ),
        service_url=body.get("service_url", parse_service_url, ""),
        token=body.get("token", v.require_str, None),
    )
    if v.ranges_overlap(spec.l2vni_range, spec.l3vni_range):
        raise BadRequest("l3vni_range: overlaps l2vni_range; segments and VRFs need their own VNIs")
    return spec


@blueprint.put("/physical-networks/<physnet_id>")
def put_physical_network(physnet_id: str) -> ResponseReturnValue:
    spec = parse_physical_network(physnet_id, Body.from_request(_PHYSNET_FIELDS))
    return db().write(lambda s: physnet_json(s, ops.apply_physical_network(s, spec)))


@blueprint.get("/physical-networks")
def list_physical_networks() -> ResponseReturnValue:
    with db().read() as s:
        query = select(PhysicalNetwork).order_by(PhysicalNetwork.id)
        return [physnet_json(s, physnet) for physnet in s.scalars(query)]


@blueprint.get("/physical-networks/<physnet_id>")
def get_physical_network(physnet_id: str) -> ResponseReturnValue:
    with db().read() as s:
        physnet = s.get(PhysicalNetwork, physnet_id)
        if physnet is None:
            raise NotFound(f"unknown physical network {physnet_id}")
        return physnet_json(s, physnet)


def physnet_json(session: Session, physnet: PhysicalNetwork) -> dict[str, Any]:
    pools = ops.physnet_pools(session, physnet)
    return {
        "id": physnet.id,
        "zone_id": physnet.zone_id,
        "name": physnet.name,
        "isolation_method": physnet.isolation_method,
        "service_url": physnet.service_url,
        "token_registered": bool(physnet.token_sha256),
        "pools": {purpose: pool_json(session, pools[purpose]) for purpose in ops.PHYSNET_POOLS},
    }


# --- devices ---------------------------------------------------------------------------

_DEVICE_FIELDS = (
    "zone_id", "role", "loopback", "vtep_address", "management_address", "asn", "uplinks",
    "vrf_backend", "vtep", "upstream_peers", "standby",
)


def parse_device(name: str, body: Body) -> ops.DeviceSpec:
    def ipv4(value: object, field: str) -> str:
        return str(v.parse_ip(value, field, version=4))

    uplinks = tuple(
        ops.UplinkSpec(
            interface=up.get("interface", parse_interface),
            peer_device=up.get("peer_device", v.parse_name, ""),
            peer_interface=up.get("peer_interface", parse_interface, ""),
        )
        for index, item in enumerate(body.items("uplinks"))
        for up in [Body.nested(item, ("interface", "peer_device", "peer_interface"),
                               f"uplinks[{index}]")]
    )
    role = body.get("role", lambda x, f: v.parse_choice(x, f, DEVICE_ROLES))
    peers = tuple(parse_upstream_peer(item, index)
                  for index, item in enumerate(body.items("upstream_peers")))
    if peers and role != "softgate":
        raise BadRequest("upstream_peers: only SoftGates peer with upstream routers")
    if len({peer.address for peer in peers}) < len(peers):
        raise BadRequest("upstream_peers: an address is listed twice")
    standby = body.get("standby", v.parse_bool, False)
    if standby and role != "softgate":
        raise BadRequest("standby: only a SoftGate can be the standby of a pair")
    return ops.DeviceSpec(
        name=v.parse_name(name, "name"),
        zone_id=body.get("zone_id", v.parse_id),
        role=role,
        loopback=body.get("loopback", ipv4),
        vtep_address=body.get("vtep_address", ipv4, ""),
        management_address=body.get("management_address", lambda x, f: str(v.parse_ip(x, f)), ""),
        fixed_asn=body.get("asn", lambda x, f: v.parse_int(x, f, 1, v.MAX_ASN), None),
        uplinks=uplinks,
        vrf_backend=body.get(
            "vrf_backend", lambda x, f: v.parse_choice(x, f, VRF_BACKENDS), "netns"
        ),
        vtep=body.get("vtep", v.parse_bool, False),
        upstream_peers=peers,
        standby=standby,
    )


def parse_upstream_peer(item: object, index: int) -> ops.UpstreamPeerSpec:
    peer = Body.nested(item, ("address", "remote_asn", "bfd"), f"upstream_peers[{index}]")
    return ops.UpstreamPeerSpec(
        address=peer.get("address", lambda x, f: str(v.parse_ip(x, f, version=4))),
        remote_asn=peer.get("remote_asn", lambda x, f: v.parse_int(x, f, 1, v.MAX_ASN)),
        bfd=peer.get("bfd", v.parse_bool, True),
    )


@blueprint.put("/devices/<name>")
def put_device(name: str) -> ResponseReturnValue:
    spec = parse_device(name, Body.from_request(_DEVICE_FIELDS))
    return db().write(lambda s: device_json(ops.apply_device(s, spec)))


@blueprint.get("/devices")
def list_devices() -> ResponseReturnValue:
    with db().read() as s:
        return [device_json(device) for device in s.scalars(select(Device).order_by(Device.name))]


@blueprint.get("/devices/<name>")
def get_device(name: str) -> ResponseReturnValue:
    with db().read() as s:
        return device_json(device_state.get_device(s, name))


@blueprint.delete("/devices/<name>")
def delete_device(name: str) -> ResponseReturnValue:
    db().write(lambda s: ops.delete_device(s, name))
    return "", 204


def device_json(device: Device) -> dict[str, Any]:
    return {
        "name": device.name,
        "zone_id": device.zone_id,
        "role": device.role,
        "loopback": device.loopback,
        "vtep_address": device.vtep_address,
        "management_address": device.management_address,
        "asn": device.asn,
        "asn_allocated": device.fixed_asn is None,
        "config_generation": device.config_generation,
        "vrf_backend": device.vrf_backend,
        "vtep": device.vtep,
        "standby": device.standby,
        "upstream_peers": [
            {"address": peer.address, "remote_asn": peer.remote_asn, "bfd": peer.bfd}
            for peer in device.upstream_peers
        ],
        "uplinks": [
            {"interface": up.interface, "peer_device": up.peer_device,
             "peer_interface": up.peer_interface}
            for up in device.uplinks
        ],
    }


# --- OpenAPI ---------------------------------------------------------------------------

_RANGE = {"type": "string", "pattern": r"^\d+-\d+$", "examples": ["3000-4094"]}
_POOL = {"type": "object", "properties": {"range": _RANGE, "size": {"type": "integer"},
                                           "used": {"type": "integer"}}}
SCHEMAS: dict[str, Any] = {
    "ZoneSpec": {"type": "object", "additionalProperties": False, "properties": {
        "name": {"type": "string", "maxLength": MAX_NAME_CHARS},
        "rt_asn": {"type": "integer", "minimum": 1, "maximum": 65535},
        "asn_range": _RANGE}},
    "Zone": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "rt_asn": {"type": "integer"},
        "pools": {"type": "object", "additionalProperties": _POOL}}},
    "PhysicalNetworkSpec": {"type": "object", "additionalProperties": False,
                            "required": ["zone_id"], "properties": {
        "zone_id": {"type": "string"}, "name": {"type": "string", "maxLength": MAX_NAME_CHARS,
                                                "description": "unique in the zone"},
        "isolation_method": {"enum": list(ISOLATION_METHODS)}, "l2vni_range": _RANGE,
        "l3vni_range": _RANGE, "vlan_range": _RANGE,
        "service_url": {"type": "string", "format": "uri", "maxLength": MAX_URL_CHARS,
                        "description": "http:// or https://"},
        "token": {"type": "string", "description": "stored only as a SHA-256 digest"}}},
    "PhysicalNetwork": {"type": "object", "properties": {
        "id": {"type": "string"}, "zone_id": {"type": "string"}, "name": {"type": "string"},
        "isolation_method": {"enum": list(ISOLATION_METHODS)},
        "service_url": {"type": "string"},
        "token_registered": {"type": "boolean"},
        "pools": {"type": "object", "additionalProperties": _POOL}}},
    "DeviceSpec": {"type": "object", "additionalProperties": False,
                   "required": ["zone_id", "role", "loopback"], "properties": {
        "zone_id": {"type": "string"}, "role": {"enum": list(DEVICE_ROLES)},
        "loopback": {"type": "string", "format": "ipv4"},
        "vtep_address": {"type": "string", "format": "ipv4"},
        "management_address": {"type": "string"},
        "asn": {"type": "integer", "description": "fixed ASN; omit to allocate from the zone"},
        "uplinks": {"type": "array", "items": {"type": "object", "required": ["interface"],
                                               "properties": {
            "interface": {"type": "string", "maxLength": MAX_INTERFACE_CHARS},
            "peer_device": {"type": "string"},
            "peer_interface": {"type": "string", "maxLength": MAX_INTERFACE_CHARS}}}},
        "vrf_backend": {"enum": list(VRF_BACKENDS), "description":
                        "routing domains as kernel VRF devices, or as network namespaces "
                        "(FRR's netns VRF backend) where the kernel has no VRF"},
        "vtep": {"type": "boolean", "description": "a leaf that maps port VLANs to VNIs"},
        "standby": {"type": "boolean", "description":
                    "SoftGates only: carries traffic only while the zone's active "
                    "SoftGate is down (its routes go out with a longer AS path)"},
        "upstream_peers": {"type": "array", "description": "SoftGates only", "items": {
            "type": "object", "required": ["address", "remote_asn"], "properties": {
                "address": {"type": "string", "format": "ipv4"},
                "remote_asn": {"type": "integer"}, "bfd": {"type": "boolean"}}}}}},
    "Device": {"type": "object", "properties": {
        "name": {"type": "string"}, "zone_id": {"type": "string"}, "role": {"type": "string"},
        "loopback": {"type": "string"}, "vtep_address": {"type": "string"},
        "management_address": {"type": "string"}, "asn": {"type": "integer"},
        "asn_allocated": {"type": "boolean"}, "config_generation": {"type": "integer"},
        "vrf_backend": {"enum": list(VRF_BACKENDS)}, "vtep": {"type": "boolean"},
        "standby": {"type": "boolean"},
        "upstream_peers": {"type": "array", "items": {"type": "object"}},
        "uplinks": {"type": "array", "items": {"type": "object"}}}},
}
PATHS: dict[str, Any] = {
    "/v1/zones": {"get": operation("List zones", response=list_of("Zone"), errors=())},
    "/v1/zones/{zone_id}": {
        "put": operation("Create or update a zone (idempotent)", request="ZoneSpec",
                         response="Zone"),
        "get": operation("Show a zone", response="Zone", errors=(404,)),
    },
    "/v1/physical-networks": {
        "get": operation("List physical networks", response=list_of("PhysicalNetwork"),
                         errors=()),
    },
    "/v1/physical-networks/{physnet_id}": {
        "put": operation("Create or update a physical network and its pools (idempotent)",
                         request="PhysicalNetworkSpec", response="PhysicalNetwork"),
        "get": operation("Show a physical network", response="PhysicalNetwork", errors=(404,)),
    },
    "/v1/devices": {"get": operation("List devices", response=list_of("Device"), errors=())},
    "/v1/devices/{name}": {
        "put": operation("Create or update a device (idempotent)", request="DeviceSpec",
                         response="Device"),
        "get": operation("Show a device", response="Device", errors=(404,)),
        "delete": operation("Delete a device (idempotent)", status=204, errors=()),
    },
}
