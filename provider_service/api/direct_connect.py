"""/v1/devices/<name>/direct-connects: VLANs on a VTEP leaf's ports mapped to networks.

The data model and config for now; the workflow (a network custom action that attaches
and detaches) builds on these calls.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service import device_state, tenancy
from provider_service import validation as v
from provider_service.api.body import Body
from provider_service.api.inventory import parse_interface
from provider_service.api.openapi import list_of, operation
from provider_service.app import db
from provider_service.errors import BadRequest, Conflict
from provider_service.models import DirectConnectPort

blueprint = Blueprint("direct_connect", __name__, url_prefix="/v1")


def _vtep_leaf(session: Session, name: str) -> str:
    """The zone of the VTEP leaf `name`."""
    device = device_state.get_device(session, name)
    if device.role != "leaf" or not device.vtep:
        raise Conflict(f"device {name} is not a VTEP leaf (role leaf, vtep true)")
    return device.zone_id


@blueprint.put("/devices/<name>/direct-connects/<interface>/<vlan>")
def put_direct_connect(name: str, interface: str, vlan: str) -> ResponseReturnValue:
    interface = parse_interface(interface, "interface")
    vlan_id = v.parse_int(vlan, "vlan", v.MIN_VLAN, v.MAX_VLAN)
    network_id = Body.from_request(("network_id",)).get("network_id", v.parse_id)

    def work(session: Session) -> dict[str, Any]:
        zone_id = _vtep_leaf(session, name)
        network = tenancy.get_network(session, network_id)
        if network.zone_id != zone_id:
            raise Conflict(f"network_id: network {network_id} is in zone {network.zone_id}, "
                           f"device {name} in zone {zone_id}")
        if network.segment_allocation.space != "vni":
            raise BadRequest(f"network_id: network {network_id} is on a VLAN physical "
                             "network; direct connect maps VLANs to VNIs")
        port = session.get(DirectConnectPort, (name, interface, vlan_id))
        if port is None:
            port = DirectConnectPort(device_name=name, interface=interface, vlan=vlan_id)
            session.add(port)
        port.network_id = network_id
        session.flush()
        return port_json(port)

    return db().write(work)


@blueprint.delete("/devices/<name>/direct-connects/<interface>/<vlan>")
def delete_direct_connect(name: str, interface: str, vlan: str) -> ResponseReturnValue:
    vlan_id = v.parse_int(vlan, "vlan", v.MIN_VLAN, v.MAX_VLAN)

    def work(session: Session) -> None:
        port = session.get(DirectConnectPort, (name, interface, vlan_id))
        if port is not None:
            session.delete(port)

    db().write(work)
    return "", 204


@blueprint.get("/devices/<name>/direct-connects")
def list_direct_connects(name: str) -> ResponseReturnValue:
    with db().read() as session:
        device_state.get_device(session, name)
        ports = session.scalars(
            select(DirectConnectPort).where(DirectConnectPort.device_name == name)
            .order_by(DirectConnectPort.interface, DirectConnectPort.vlan))
        return [port_json(port) for port in ports]


def port_json(port: DirectConnectPort) -> dict[str, Any]:
    return {"device": port.device_name, "interface": port.interface, "vlan": port.vlan,
            "network_id": port.network_id}


SCHEMAS: dict[str, Any] = {
    "DirectConnect": {"type": "object", "properties": {
        "device": {"type": "string"}, "interface": {"type": "string"},
        "vlan": {"type": "integer"}, "network_id": {"type": "string"}}},
    "DirectConnectSpec": {"type": "object", "additionalProperties": False,
                          "required": ["network_id"],
                          "properties": {"network_id": {"type": "string"}}},
}
PATHS: dict[str, Any] = {
    "/v1/devices/{name}/direct-connects": {
        "get": operation("VLAN-to-network mappings on a VTEP leaf's ports",
                         response=list_of("DirectConnect"), errors=(404,)),
    },
    "/v1/devices/{name}/direct-connects/{interface}/{vlan}": {
        "put": operation("Map a VLAN on a port to a network's VNI (idempotent)",
                         request="DirectConnectSpec", response="DirectConnect",
                         errors=(400, 404, 409)),
        "delete": operation("Remove a mapping (idempotent)", status=204, errors=(400,)),
    },
}
