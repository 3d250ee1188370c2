"""Network and VPC life cycle: ensure, implement, shutdown, destroy, VPC implement/shutdown."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from provider_service import tenancy
from provider_service import validation as v
from provider_service.api.networks import network_json, parse_network, parse_vpc
from provider_service.cloudstack import rules
from provider_service.cloudstack.event import Event
from provider_service.models import Network
from provider_service.sql import Sql

# CloudStack network fields (addNetworkToPayload + DNS + extension IP) → our API fields.
NETWORK_FIELDS = {
    "zone_id": "zone_id", "vpc_id": "vpc_id", "guest_type": "guest_type", "cidr": "cidr",
    "gateway": "gateway", "ip6_cidr": "network_ip6_cidr", "ip6_gateway": "network_ip6_gateway",
    "extension_ip": "extension_ip",
}
VPC_FIELDS = {"zone_id": "zone_id", "cidr": "vpc_cidr", "state": "vpc_state"}


def ensure_network_device(session: Session, event: Event) -> str:
    """The details CloudStack stores for the network or VPC and hands back on every call.

    One line of JSON, the same for the same object every time: CloudStack rewrites its
    row whenever the text changes, and stores our output verbatim.
    """
    # Ids are checked: CloudStack stores this answer and hands it back on every call.
    details: dict[str, Any] = {"provider": "vxgate", "zone_id": _id(event, "zone_id")}
    # One query either way: this command precedes every other one.
    if event.has("network_id"):
        details["network_id"] = _id(event, "network_id")
        network = tenancy.find_network(Sql(session), details["network_id"])
        if network is not None:
            details["broadcast_uri"] = network_json(network)["broadcast_uri"]
    else:
        details["vpc_id"] = _id(event, "vpc_id")
        vpc = tenancy.find_vpc(Sql(session), details["vpc_id"])
        if vpc is not None:
            details["l3vni"] = vpc.l3vni
    return json.dumps(details, separators=(",", ":"), sort_keys=True)


def implement_network(session: Session, event: Event) -> dict[str, str]:
    network = _apply_network(session, event)
    answer = network_json(network)
    # protocol.md §4.2: both keys, literal dotted names; the same VNI on every implement.
    return {
        "status": "success",
        "network.broadcast_domain_type": answer["broadcast_domain_type"],
        "network.broadcast_uri": answer["broadcast_uri"],
    }


def shutdown_network(session: Session, event: Event) -> None:
    """Shutdown keeps the network and its numbers; only its state changes."""
    network = session.get(Network, event.text("network_id"))
    if network is not None:
        network.state = "shutdown"


def destroy_network(session: Session, event: Event) -> None:
    """An isolated network's destroy-network comes only from deleteNetwork: release its
    numbers. A tier's may come from a VPC restart as well: keep them (tombstone_tier)."""
    network = session.get(Network, event.text("network_id"))
    if network is None:
        return
    if network.vpc_id is None:
        tenancy.delete_network(session, network.id)
    else:
        tenancy.tombstone_tier(Sql(session), network.id)


def implement_vpc(session: Session, event: Event) -> None:
    spec = parse_vpc(event.text("vpc_id"), event.body(VPC_FIELDS, _physnet(event)))
    tenancy.apply_vpc(Sql(session), spec)
    if event.has("public_ip"):
        # PIP(true): the VPC's source-NAT address, sent once CloudStack has allocated it.
        rules.assign_ip(session, event)


def shutdown_vpc(session: Session, event: Event) -> None:
    """CloudStack never sends destroy-vpc (protocol.md §5). deleteVPC marks the VPC
    Inactive, after all its tiers are deleted, and then sends shutdown-vpc: that is the
    VPC's end. A restart with cleanup sends it with the VPC still Enabled: keep all."""
    vpc_id = event.text("vpc_id")
    if str(event.payload.get("vpc_state", "")).lower() == "inactive":
        tenancy.delete_vpc(session, vpc_id)
    else:
        tenancy.mark_vpc(Sql(session), vpc_id, "shutdown")


def _apply_network(session: Session, event: Event) -> tenancy.NetworkView:
    # The state is what our answer makes it: network_state says "implementing" (and the
    # legacy form and older builds send none), and nothing tells us when it changes.
    extra = {"state": "implemented"}
    if not event.has("vpc_id"):  # a tier goes where its VPC is, in its mode
        extra.update(_physnet(event) or {})
        extra["mode"] = event.network_mode
    body = event.body(NETWORK_FIELDS, extra)
    return tenancy.apply_network(Sql(session), parse_network(event.text("network_id"), body))


def _id(event: Event, key: str) -> str:
    return v.parse_id(event.text(key), f"payload.{key}")


def _physnet(event: Event) -> dict[str, str] | None:
    name = event.physnet_name
    return {"physical_network_name": name} if name else None
