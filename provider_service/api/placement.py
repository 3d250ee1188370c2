"""/v1/placement: which devices carry which networks, read-only (for `vxgate status`).

A device's agent reports status on its own object ids (a network's agent id, a routing
domain's namespace), not on the service's network ids; this answer names, for every
network, the devices whose configs carry it, the artifacts that carry it there and the
object ids to look for in GET /v1/devices/{name}/status. Nothing is rendered: the
artifacts' generations are the ones last rendered (agents render them as they poll).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service import tenancy
from provider_service import validation as v
from provider_service.api.device_state import SOFTGATE_ARTIFACT
from provider_service.api.openapi import operation
from provider_service.app import db
from provider_service.frr_intent import vrf_name
from provider_service.frr_render import ARTIFACT as FRR_ARTIFACT
from provider_service.leaf_state import ARTIFACT as LEAF_ARTIFACT
from provider_service.models import Device, DeviceConfig, DirectConnectPort
from provider_service.models.base import utcnow
from provider_service.models.rules import LbRule
from provider_service.softgate_domains import agent_id
from provider_service.sql import Sql

blueprint = Blueprint("placement", __name__, url_prefix="/v1")

# What a SoftGate's agent reports under a network's agent id: links (segment), nftables
# (network), DHCP (dnsmasq, metadata; only where the network has them), and, per NIC,
# "nic" with the id "<network>/<mac>". Its load balancers' members are reported apart, as
# "lb_backend" "<lb rule id>/<ip>:<port>" (agent/lb_health), so found by rule id.
NETWORK_KINDS = ("segment", "network", "dnsmasq", "metadata")
FRR_OBJECT = ("frr", FRR_ARTIFACT)  # FRR's own report on applying frr.conf


@dataclass(frozen=True)
class Carrier:
    """A device whose configs carry a network, and how its agent reports on it."""

    device: str
    artifacts: tuple[str, ...]
    objects: tuple[tuple[str, str], ...]  # (kind, id) the agent may report for the network
    # (kind, id prefix): the NICs, and the members of each of the network's LB rules
    object_prefixes: tuple[tuple[str, str], ...]


def carriers(network: tenancy.NetworkView, devices: list[Device],
             direct_connects: set[tuple[str, str]],
             lb_rule_ids: Iterable[int] = ()) -> list[Carrier]:
    """The devices of the network's zone that carry it, by the rules the compilers follow:
    every SoftGate (softgate.json and frr.conf), every hypervisor when the segment is a VNI
    (frr.conf's advertise-all-vni; a VLAN needs no config there), and a VTEP leaf with a
    direct connect on it. `lb_rule_ids`: the network's load-balancer rules, whose members'
    health a SoftGate reports."""
    if network.state == tenancy.TOMBSTONE:
        return []  # kept for its numbers only: no device carries it
    found = []
    net = agent_id(network.id)
    # The trailing "/" keeps rule 1 from claiming rule 12's members.
    prefixes = (("nic", f"{net}/"),
                *(("lb_backend", f"{rule_id}/") for rule_id in sorted(lb_rule_ids)))
    for device in devices:
        if device.zone_id != network.zone_id:
            continue
        if device.role == "softgate":
            found.append(Carrier(
                device.name, (SOFTGATE_ARTIFACT, FRR_ARTIFACT),
                (FRR_OBJECT, ("domain", vrf_name(network.l3vni)),
                 ("conntrack_sync", vrf_name(network.l3vni)),  # a pair's, per domain
                 *((kind, net) for kind in NETWORK_KINDS)),
                prefixes))
        elif device.role == "hypervisor" and network.segment_kind == "vni":
            found.append(Carrier(device.name, (FRR_ARTIFACT,), (FRR_OBJECT,), ()))
        elif (device.name, network.id) in direct_connects:
            found.append(Carrier(device.name, (LEAF_ARTIFACT, FRR_ARTIFACT), (FRR_OBJECT,), ()))
    return found


@blueprint.get("/placement")
def get_placement() -> ResponseReturnValue:
    network_id = request.args.get("network_id")
    if network_id is not None:
        network_id = v.parse_id(network_id, "network_id")
    with db().read() as session:
        if network_id is None:
            networks = tenancy.network_views(Sql(session))
        else:
            networks = [tenancy.network_view(Sql(session), network_id)]
        devices = list(session.scalars(select(Device).order_by(Device.name)))
        connects = {(port.device_name, port.network_id)
                    for port in session.scalars(select(DirectConnectPort))}
        rules = _lb_rule_ids(session, network_id)
        placed = {network.id: carriers(network, devices, connects, rules.get(network.id, ()))
                  for network in networks}
        # Filtered: the devices that carry the network; else every device (a spine's
        # frr.conf has no network, but its errors are the fabric's).
        wanted = {c.device for found in placed.values() for c in found}
        shown = [d for d in devices if network_id is None or d.name in wanted]
        return {
            "generated_at": utcnow().isoformat(),
            "devices": [_device_json(session, device) for device in shown],
            "networks": [{"id": net, "devices": [_carrier_json(c) for c in found]}
                         for net, found in placed.items()],
        }


def _lb_rule_ids(session: Session, network_id: str | None) -> dict[str, list[int]]:
    """Each network's LB rule ids (only `network_id`'s when given), in one query."""
    query = select(LbRule.network_id, LbRule.rule_id)
    if network_id is not None:
        query = query.where(LbRule.network_id == network_id)
    found: dict[str, list[int]] = defaultdict(list)
    for network, rule_id in session.execute(query):
        found[network].append(rule_id)
    return found


def _device_json(session: Session, device: Device) -> dict[str, Any]:
    artifacts = session.scalars(select(DeviceConfig).where(
        DeviceConfig.device_name == device.name).order_by(DeviceConfig.artifact))
    return {
        "name": device.name,
        "role": device.role,
        "zone_id": device.zone_id,
        "config_generation": device.config_generation,
        "created_at": device.created_at.isoformat(),
        "artifacts": [{"name": a.artifact, "generation": a.generation,
                       "rendered_at": a.updated_at.isoformat()} for a in artifacts],
    }


def _carrier_json(carrier: Carrier) -> dict[str, Any]:
    return {
        "device": carrier.device,
        "artifacts": list(carrier.artifacts),
        "objects": [{"kind": kind, "id": ident} for kind, ident in carrier.objects],
        "object_prefixes": [{"kind": kind, "prefix": prefix}
                            for kind, prefix in carrier.object_prefixes],
    }


_KIND_ID = {"type": "object", "properties": {"kind": {"type": "string"},
                                             "id": {"type": "string"}}}
SCHEMAS: dict[str, Any] = {
    "Placement": {"type": "object", "properties": {
        "generated_at": {"type": "string", "format": "date-time",
                         "description": "the service's clock, for ages"},
        "devices": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "role": {"type": "string"},
            "zone_id": {"type": "string"}, "config_generation": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "artifacts": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "generation": {"type": "integer"},
                "rendered_at": {"type": "string", "format": "date-time"}}}}}}},
        "networks": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "string"},
            "devices": {"type": "array", "items": {"type": "object", "properties": {
                "device": {"type": "string"},
                "artifacts": {"type": "array", "items": {"type": "string"}},
                "objects": {"type": "array", "items": _KIND_ID,
                            "description": "status objects (kind, id) of this network"},
                "object_prefixes": {"type": "array", "items": {
                    "type": "object", "properties": {"kind": {"type": "string"},
                                                     "prefix": {"type": "string"}}},
                    "description": "status objects whose id starts so (the NICs, the "
                                   "members of the network's load balancers)"}}}}}}}}},
}
PATHS: dict[str, Any] = {
    "/v1/placement": {
        "get": operation("Which devices carry which networks (filter: network_id), the "
                         "artifacts that carry them and the status object ids their agents "
                         "report; each device's artifact generations. Read-only.",
                         response="Placement", errors=(400, 404)),
    },
}
