"""Public IPs, NAT, firewall, ACL and load balancer commands."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service import nat, policy
from provider_service import validation as v
from provider_service.api import rule_parsing as p
from provider_service.api.body import Body
from provider_service.cloudstack.event import Event
from provider_service.errors import BadRequest
from provider_service.models import PublicIp

# addPublicIpToPayload's keys → our public-IP fields.
PUBLIC_IP_FIELDS = {"cidr": "public_cidr", "gateway": "public_gateway", "vlan": "public_vlan",
                    "source_nat": "source_nat"}


def assign_ip(session: Session, event: Event) -> None:
    _apply_public_ip(session, event)


def release_ip(session: Session, event: Event) -> None:
    nat.delete_public_ip(session, event.text("zone_id"), event.text("public_ip"))


def add_static_nat(session: Session, event: Event) -> None:
    _ensure_public_ip(session, event)
    body = event.body({"network_id": "network_id", "private_ip": "private_ip"})
    spec = p.parse_static_nat(event.text("zone_id"), event.text("public_ip"), body)
    nat.apply_static_nat(session, spec)


def delete_static_nat(session: Session, event: Event) -> None:
    nat.delete_static_nat(session, event.text("zone_id"), event.text("public_ip"))


def add_port_forward(session: Session, event: Event) -> None:
    _ensure_public_ip(session, event)
    body = event.body({"network_id": "network_id", "private_ip": "private_ip",
                       "private_port": "private_port"})
    spec = p.parse_port_forward(event.text("zone_id"), event.text("public_ip"),
                                event.text("protocol"), event.text("public_port"), body)
    nat.apply_port_forward(session, spec)


def delete_port_forward(session: Session, event: Event) -> None:
    protocol = p.parse_nat_protocol(event.text("protocol"), "payload.protocol")
    ports = v.parse_port_range(event.text("public_port"), "payload.public_port")
    nat.delete_port_forward(session, event.text("zone_id"), event.text("public_ip"),
                            protocol, ports)


def apply_fw_rules(session: Session, event: Event) -> None:
    """CloudStack sends the network's whole firewall (protocol.md row 11). A ROUTED
    network's ingress rules (routing firewall rules) come with publicIp "" and the guest
    addresses they open in destCidrs; policy.apply_firewall checks them by mode."""
    body = Body.nested(event.payload.get("fw_rules"), p.FIREWALL_FIELDS, "payload.fw_rules")
    policy.apply_firewall(session, p.parse_firewall(event.text("network_id"), body))


def apply_network_acl(session: Session, event: Event) -> None:
    body = Body({"rules": _list(event, "acl_rules")}, p.RULE_LIST_FIELDS, "payload.acl_rules.")
    policy.apply_acl(session, p.parse_acl(event.text("network_id"), body))


def apply_lb_rules(session: Session, event: Event) -> None:
    body = Body({"rules": _list(event, "lb_rules")}, p.RULE_LIST_FIELDS, "payload.lb_rules.")
    policy.apply_load_balancers(session, p.parse_load_balancers(event.text("network_id"), body))


def update_vpc_source_nat_ip(session: Session, event: Event) -> None:
    """The new address becomes the VPC's only source-NAT IP."""
    new = _apply_public_ip(session, event)
    others = session.scalars(select(PublicIp).where(
        PublicIp.vpc_id == new.vpc_id, PublicIp.source_nat.is_(True), PublicIp.id != new.id))
    for old in others:
        old.source_nat = False


def _apply_public_ip(session: Session, event: Event) -> PublicIp:
    # A VPC's addresses belong to the VPC, whichever tier's command carries them.
    owner = {"vpc_id": event.text("vpc_id")} if event.has("vpc_id") else {
        "network_id": event.text("network_id")}
    body = event.body(PUBLIC_IP_FIELDS, owner)
    return nat.apply_public_ip(
        session, p.parse_public_ip(event.text("zone_id"), event.text("public_ip"), body))


def _ensure_public_ip(session: Session, event: Event) -> None:
    """NAT commands carry the address's details; record it if assign-ip was lost."""
    zone_id, address = event.text("zone_id"), event.text("public_ip")
    existing = session.scalars(select(PublicIp).where(
        PublicIp.zone_id == zone_id, PublicIp.address == address)).one_or_none()
    if existing is None:
        _apply_public_ip(session, event)


def _list(event: Event, key: str) -> list[object]:
    value = event.payload.get(key)
    if not isinstance(value, list):
        raise BadRequest(f"payload.{key}: expected a JSON list")
    return value
