"""/v1/devices/<name>/direct-connects: VLANs on a VTEP leaf's ports mapped to networks.

The operator's view of the mappings; the tenant's workflow is the network custom actions
attach-vlan and detach-vlan (provider_service/direct_connect.py), which share the checks.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service import device_state, direct_connect
from provider_service import validation as v
from provider_service.api.body import Body
from provider_service.api.inventory import parse_interface
from provider_service.api.openapi import list_of, operation
from provider_service.app import db
from provider_service.models import DirectConnectPort

blueprint = Blueprint("direct_connect", __name__, url_prefix="/v1")


@blueprint.put("/devices/<name>/direct-connects/<interface>/<vlan>")
def put_direct_connect(name: str, interface: str, vlan: str) -> ResponseReturnValue:
    where = _port_vlan(name, interface, vlan)
    network_id = Body.from_request(("network_id",)).get("network_id", v.parse_id)

    def work(session: Session) -> dict[str, Any]:
        direct_connect.attach(session, network_id, where, replace=True)
        port = session.get(DirectConnectPort, (where.device, where.port, where.vlan))
        assert port is not None
        return port_json(port)

    return db().write(work)


@blueprint.delete("/devices/<name>/direct-connects/<interface>/<vlan>")
def delete_direct_connect(name: str, interface: str, vlan: str) -> ResponseReturnValue:
    where = _port_vlan(name, interface, vlan)
    db().write(lambda session: direct_connect.detach(session, None, where))
    return "", 204


def _port_vlan(name: str, interface: str, vlan: str) -> direct_connect.PortVlan:
    return direct_connect.PortVlan(name, parse_interface(interface, "interface"),
                                   v.parse_int(vlan, "vlan", v.MIN_VLAN, v.MAX_VLAN))


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
