"""NIC, DHCP, DNS, VM data and restore-network commands."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service import vms
from provider_service.api import vm_parsing as p
from provider_service.api.body import Body
from provider_service.cloudstack.event import Event, Handler
from provider_service.errors import BadRequest
from provider_service.models.vms import Nic

NIC_FIELDS = {field: field for field in p.NIC_FIELDS}
DNS_FIELDS = {field: field for field in p.DNS_FIELDS}


def _nic(session: Session, event: Event, *extra: str) -> tuple[vms.NicSpec, Body]:
    body = event.body({**NIC_FIELDS, **{key: key for key in extra}})
    network_id = event.text("network_id")
    return p.parse_nic(network_id, _mac(session, event, network_id), body), body


def _mac(session: Session, event: Event, network_id: str) -> str:
    """The NIC's MAC; the legacy flag form names the NIC of add-dns-entry and the save-*
    commands by its IPv4 address only (protocol.md §9)."""
    if event.has("mac") or not event.has("ip"):
        return event.text("mac")
    ip = p.ipv4(event.text("ip"), "payload.ip")
    mac = session.scalars(select(Nic.mac).where(Nic.network_id == network_id,
                                                Nic.ip == ip)).first()
    if mac is None:
        raise BadRequest(f"payload.mac: required (network {network_id} has no NIC with IP {ip})")
    return mac


def prepare_nic(session: Session, event: Event) -> None:
    vms.apply_nic(session, _nic(session, event)[0])


def release_nic(session: Session, event: Event) -> None:
    network_id = event.text("network_id")
    vms.delete_nic(session, network_id, p.parse_mac(_mac(session, event, network_id)))


def _add_entry(service: vms.Service) -> Handler:
    def handler(session: Session, event: Event) -> None:
        spec, body = _nic(session, event, *p.DNS_FIELDS)
        vms.apply_entry(session, service, spec, p.parse_dns_info(body))
        # CloudStack sends entries only for a service we provide, and config-dhcp-subnet
        # never comes (we declare DhcpAccrossMultipleSubnets=false): the first entry is
        # what turns the network's service on.
        vms.apply_service(session, spec.network_id, service, vms.DnsInfo())

    return handler


def _remove_entry(service: vms.Service) -> Handler:
    def handler(session: Session, event: Event) -> None:
        network_id = event.text("network_id")
        vms.delete_entry(session, service, network_id,
                         p.parse_mac(_mac(session, event, network_id)))

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
    spec, body = _nic(session, event, "vm_data")
    vms.apply_vm_data(session, spec, p.parse_vm_data(body, required=True))


def _save_item(item: str) -> Handler:
    key = p.SINGLE_ITEMS[item][0]

    def handler(session: Session, event: Event) -> None:
        spec, body = _nic(session, event, key)
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
