"""NIC, DHCP, DNS, VM data and restore-network commands."""

from __future__ import annotations

from sqlalchemy.orm import Session

from provider_service import vms
from provider_service.api import vm_parsing as p
from provider_service.api.body import Body
from provider_service.cloudstack.event import Event, Handler

NIC_FIELDS = {field: field for field in p.NIC_FIELDS}
DNS_FIELDS = {field: field for field in p.DNS_FIELDS}


def _nic(event: Event, *extra: str) -> tuple[vms.NicSpec, Body]:
    body = event.body({**NIC_FIELDS, **{key: key for key in extra}})
    return p.parse_nic(event.text("network_id"), event.text("mac"), body), body


def prepare_nic(session: Session, event: Event) -> None:
    vms.apply_nic(session, _nic(event)[0])


def release_nic(session: Session, event: Event) -> None:
    vms.delete_nic(session, event.text("network_id"), event.text("mac"))


def _add_entry(service: vms.Service) -> Handler:
    def handler(session: Session, event: Event) -> None:
        spec, body = _nic(event, *p.DNS_FIELDS)
        vms.apply_entry(session, service, spec, p.parse_dns_info(body))

    return handler


def _remove_entry(service: vms.Service) -> Handler:
    def handler(session: Session, event: Event) -> None:
        vms.delete_entry(session, service, event.text("network_id"), event.text("mac"))

    return handler


def _config_subnet(service: vms.Service) -> Handler:
    def handler(session: Session, event: Event) -> None:
        info = p.parse_dns_info(event.body(DNS_FIELDS))
        vms.apply_service(session, event.text("network_id"), service, info)

    return handler


def _remove_subnet(service: vms.Service) -> Handler:
    def handler(session: Session, event: Event) -> None:
        vms.delete_service(session, event.text("network_id"), service)

    return handler


def save_vm_data(session: Session, event: Event) -> None:
    spec, body = _nic(event, "vm_data")
    vms.apply_vm_data(session, spec, p.parse_vm_data(body, required=True))


def _save_item(item: str) -> Handler:
    key = p.SINGLE_ITEMS[item][0]

    def handler(session: Session, event: Event) -> None:
        spec, body = _nic(event, key)
        vms.apply_vm_data_item(session, spec, p.parse_single_item(item, body))

    return handler


def restore_network(session: Session, event: Event) -> None:
    data = event.payload.get("restore_data")
    restore = dict(data) if isinstance(data, dict) else {}
    restore.update({key: event.payload[key] for key in p.DNS_FIELDS if event.has(key)})
    body = Body(restore, p.RESTORE_FIELDS, "payload.restore_data.")
    vms.restore_network(session, p.parse_restore(event.text("network_id"), body))


add_dhcp_entry, remove_dhcp_entry = _add_entry("dhcp"), _remove_entry("dhcp")
add_dns_entry, remove_dns_entry = _add_entry("dns"), _remove_entry("dns")
config_dhcp_subnet, remove_dhcp_subnet = _config_subnet("dhcp"), _remove_subnet("dhcp")
config_dns_subnet, remove_dns_subnet = _config_subnet("dns"), _remove_subnet("dns")
save_password, save_userdata = _save_item("password"), _save_item("userdata")
save_sshkey, save_hypervisor_hostname = _save_item("sshkey"), _save_item("hypervisor-hostname")
