"""Which handler serves which of CloudStack's commands: all 32 that NetworkExtensionElement
sends (protocol.md §3), and custom-action."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from provider_service import direct_connect, tenancy
from provider_service.api.networks import network_json, vpc_json
from provider_service.cloudstack import networks, nics, rules
from provider_service.cloudstack.event import Event, Handler
from provider_service.errors import BadRequest, NotFound
from provider_service.sql import Sql

COMMANDS: dict[str, Handler] = {
    "ensure-network-device": networks.ensure_network_device,
    "implement-network": networks.implement_network,
    "shutdown-network": networks.shutdown_network,
    "destroy-network": networks.destroy_network,
    "implement-vpc": networks.implement_vpc,
    "shutdown-vpc": networks.shutdown_vpc,
    "update-vpc-source-nat-ip": rules.update_vpc_source_nat_ip,
    "assign-ip": rules.assign_ip,
    "release-ip": rules.release_ip,
    "add-static-nat": rules.add_static_nat,
    "delete-static-nat": rules.delete_static_nat,
    "add-port-forward": rules.add_port_forward,
    "delete-port-forward": rules.delete_port_forward,
    "apply-fw-rules": rules.apply_fw_rules,
    "apply-network-acl": rules.apply_network_acl,
    "apply-lb-rules": rules.apply_lb_rules,
    "prepare-nic": nics.prepare_nic,
    "release-nic": nics.release_nic,
    "add-dhcp-entry": nics.add_dhcp_entry,
    "remove-dhcp-entry": nics.remove_dhcp_entry,
    "config-dhcp-subnet": nics.config_dhcp_subnet,
    "remove-dhcp-subnet": nics.remove_dhcp_subnet,
    "add-dns-entry": nics.add_dns_entry,
    "remove-dns-entry": nics.remove_dns_entry,
    "config-dns-subnet": nics.config_dns_subnet,
    "remove-dns-subnet": nics.remove_dns_subnet,
    "save-vm-data": nics.save_vm_data,
    "save-password": nics.save_password,
    "save-userdata": nics.save_userdata,
    "save-sshkey": nics.save_sshkey,
    "save-hypervisor-hostname": nics.save_hypervisor_hostname,
    "restore-network": nics.restore_network,
}


def handle(session: Session, command: str, envelope: object) -> object:
    event = Event.from_envelope(command, envelope)
    if command == "custom-action":
        return custom_action(session, event)
    handler = COMMANDS.get(command)
    if handler is None:
        raise NotFound(f"unknown command {command[:40]!r}")
    return handler(session, event)


def custom_action(session: Session, event: Event) -> str:
    """runNetworkCustomAction: CloudStack hands our stdout to the API caller."""
    action = event.payload.get("action")
    if action in direct_connect.ACTIONS:
        if not event.has("network_id"):
            raise BadRequest(f"{action}: acts on a network, not a VPC")
        return direct_connect.run_action(session, str(action), event.text("network_id"),
                                         event.payload.get("action-params") or {})
    if action != "show":
        raise BadRequest(f"unknown custom action {str(action)[:40]!r}; known: show, "
                         f"{', '.join(direct_connect.ACTIONS)}")
    if event.has("network_id"):
        message: object = network_json(tenancy.network_view(Sql(session),
                                                             event.text("network_id")))
    else:
        message = vpc_json(tenancy.vpc_view(Sql(session), event.text("vpc_id")))
    return json.dumps({"status": "success", "message": message}, separators=(",", ":"))
