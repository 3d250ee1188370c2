"""Direct connect: a VLAN on a VTEP leaf's port joined to a network's VNI, so bare-metal
hosts behind that port are on the network's L2 segment.

The network custom actions `attach-vlan` and `detach-vlan` (runNetworkCustomAction, with
parameters `device`, `port`, `vlan`) and /v1/devices/<name>/direct-connects both come
here. A mapping is a DirectConnectPort row; the leaf's rendered frr.conf (its VNIs) and
leaf.json (the bridge, VXLAN device and port member its agent builds) follow from it.
Deleting a network deletes its mappings (the foreign key cascades).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from provider_service import device_state, tenancy
from provider_service import validation as v
from provider_service.api.inventory import parse_interface
from provider_service.errors import BadRequest, Conflict
from provider_service.models import DirectConnectPort

ATTACH, DETACH = "attach-vlan", "detach-vlan"
ACTIONS = (ATTACH, DETACH)
# runNetworkCustomAction's parameters (all strings, protocol.md §3 #30).
PARAMETERS = ("device", "port", "vlan")
MAX_MEMBER_CHARS = 15  # the port's VLAN member, "<port>.<vlan>", is a kernel link name


@dataclass(frozen=True)
class PortVlan:
    """One VLAN on one port of one leaf: what the custom actions name."""

    device: str
    port: str
    vlan: int

    def __str__(self) -> str:
        return f"VLAN {self.vlan} on {self.device} port {self.port}"


def parse_port_vlan(params: object) -> PortVlan:
    """The custom action's parameters; one-line errors naming the parameter."""
    if not isinstance(params, dict):
        raise BadRequest("action-params: expected an object with device, port and vlan")
    missing = [name for name in PARAMETERS if params.get(name) in (None, "")]
    if missing:
        raise BadRequest(f"action-params: missing {', '.join(missing)} "
                         "(device, port and vlan are required)")
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise BadRequest(f"action-params: unknown {', '.join(map(str, unknown))[:80]}; "
                         "known: device, port, vlan")
    device = v.parse_name(params["device"], "device")
    port = parse_interface(params["port"], "port")
    vlan = v.parse_int(params["vlan"], "vlan", v.MIN_VLAN, v.MAX_VLAN)
    if len(f"{port}.{vlan}") > MAX_MEMBER_CHARS:
        raise BadRequest(f"port: {port}.{vlan} (the port's VLAN member) is longer than "
                         f"{MAX_MEMBER_CHARS} characters")
    return PortVlan(device, port, vlan)


def check_vtep_leaf_port(session: Session, where: PortVlan) -> str:
    """The leaf's zone; the device must be a VTEP leaf and the port one of its access
    ports (not a fabric port, where BGP runs)."""
    device = device_state.get_device(session, where.device)
    if device.role != "leaf" or not device.vtep:
        raise Conflict(f"device {where.device} is not a VTEP leaf (role leaf, vtep true)")
    if where.port in {uplink.interface for uplink in device.uplinks}:
        raise Conflict(f"port {where.port} is a fabric port of {where.device}, "
                       "not an access port")
    return device.zone_id


def attach(session: Session, network_id: str, where: PortVlan, *,
           replace: bool = False) -> bool:
    """Map the VLAN to the network's VNI; False when it already was (nothing changes).
    A VLAN mapped to another network is a Conflict, unless `replace` (the PUT of
    /v1/devices/<name>/direct-connects, which states the whole mapping)."""
    zone_id = check_vtep_leaf_port(session, where)
    network = tenancy.get_network(session, network_id)
    if network.zone_id != zone_id:
        raise Conflict(f"network {network_id} is in zone {network.zone_id}, "
                       f"device {where.device} in zone {zone_id}")
    if network.segment_allocation.space != "vni":
        raise BadRequest(f"network {network_id} is on a VLAN physical network; "
                         "direct connect maps VLANs to VNIs")
    port = session.get(DirectConnectPort, (where.device, where.port, where.vlan))
    if port is not None and port.network_id == network_id:
        return False
    if port is not None and not replace:
        raise Conflict(f"{where} is attached to network {port.network_id}; "
                       "detach it there first")
    if port is None:
        port = DirectConnectPort(device_name=where.device, interface=where.port,
                                 vlan=where.vlan)
        session.add(port)
    port.network_id = network_id
    session.flush()
    return True


def detach(session: Session, network_id: str | None, where: PortVlan) -> bool:
    """Remove the mapping; False when there was none (no error: detach is idempotent).
    With a `network_id`, a VLAN mapped to another network is a Conflict."""
    port = session.get(DirectConnectPort, (where.device, where.port, where.vlan))
    if port is None:
        return False
    if network_id is not None and port.network_id != network_id:
        raise Conflict(f"{where} is attached to network {port.network_id}, "
                       f"not {network_id}")
    session.delete(port)
    session.flush()
    return True


def run_action(session: Session, action: str, network_id: str, params: object) -> str:
    """attach-vlan / detach-vlan: the line CloudStack shows the API caller."""
    where = parse_port_vlan(params)
    if action == ATTACH:
        changed = attach(session, network_id, where)
        return f"{'attached' if changed else 'already attached'}: {where} " \
               f"to network {network_id}"
    check_vtep_leaf_port(session, where)
    changed = detach(session, network_id, where)
    return f"{'detached' if changed else 'was not attached'}: {where} " \
           f"from network {network_id}"
