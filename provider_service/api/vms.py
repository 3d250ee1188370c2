"""/v1/networks/<id>/nics, /dhcp, /dns, /restore: NICs, leases, DNS names and VM data.

One idempotent call per CloudStack command:

    prepare-nic / release-nic           PUT / DELETE  /networks/<id>/nics/<mac>
    add- / remove-dhcp-entry            PUT / DELETE  /networks/<id>/nics/<mac>/dhcp
    add- / remove-dns-entry             PUT / DELETE  /networks/<id>/nics/<mac>/dns
    save-vm-data                        PUT           /networks/<id>/nics/<mac>/vm-data
    save-password, save-userdata,       PUT           /networks/<id>/nics/<mac>/vm-data/
      save-sshkey, save-hypervisor-hostname             {password,userdata,sshkey,
                                                         hypervisor-hostname}
    config- / remove-dhcp-subnet        PUT / DELETE  /networks/<id>/dhcp
    config- / remove-dns-subnet         PUT / DELETE  /networks/<id>/dns
    restore-network                     POST          /networks/<id>/restore

Passwords are stored (the SoftGate's password server must serve them) but never
returned: responses say only whether a NIC has one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from provider_service import vms as ops
from provider_service.api import vm_parsing as p
from provider_service.api.body import Body
from provider_service.api.openapi import list_of, operation
from provider_service.app import db
from provider_service.errors import NotFound
from provider_service.models.vms import PASSWORD_DIR, NetworkServices, Nic

blueprint = Blueprint("vms", __name__, url_prefix="/v1")

F = TypeVar("F", bound=Callable[..., ResponseReturnValue])
_NIC = "/networks/<network_id>/nics/<mac>"
_ENTRY_FIELDS = (*p.NIC_FIELDS, *p.DNS_FIELDS)
SERVICES: tuple[ops.Service, ...] = ("dhcp", "dns")


def _per_service(method: str, rule: str) -> Callable[[F], F]:
    """Serve `view` at rule + '/dhcp' and rule + '/dns', passing `service`: two plain
    paths (documented as such) rather than a path variable that could catch more."""

    def register(view: F) -> F:
        for service in SERVICES:
            blueprint.add_url_rule(f"{rule}/{service}", f"{view.__name__}_{service}", view,
                                   methods=[method], defaults={"service": service})
        return view

    return register


# --- NICs: prepare-nic, release-nic ----------------------------------------------------


@blueprint.put(_NIC)
def put_nic(network_id: str, mac: str) -> ResponseReturnValue:
    spec = p.parse_nic(network_id, mac, Body.from_request(p.NIC_FIELDS))
    return db().write(lambda s: nic_json(ops.apply_nic(s, spec)))


@blueprint.get("/networks/<network_id>/nics")
def list_nics(network_id: str) -> ResponseReturnValue:
    with db().read() as s:
        return [nic_json(nic) for nic in ops.list_nics(s, network_id)]


@blueprint.get(_NIC)
def get_nic(network_id: str, mac: str) -> ResponseReturnValue:
    mac = p.parse_mac(mac)
    with db().read() as s:
        return nic_json(ops.get_nic(s, network_id, mac, content=True), content=True)


@blueprint.delete(_NIC)
def delete_nic(network_id: str, mac: str) -> ResponseReturnValue:
    mac = p.parse_mac(mac)
    db().write(lambda s: ops.delete_nic(s, network_id, mac))
    return "", 204


# --- DHCP and DNS entries: add/remove-dhcp-entry, add/remove-dns-entry -----------------


@_per_service("PUT", _NIC)
def put_entry(network_id: str, mac: str, service: ops.Service) -> ResponseReturnValue:
    body = Body.from_request(_ENTRY_FIELDS)
    spec, dns_info = p.parse_nic(network_id, mac, body), p.parse_dns_info(body)
    return db().write(lambda s: nic_json(ops.apply_entry(s, service, spec, dns_info)))


@_per_service("DELETE", _NIC)
def delete_entry(network_id: str, mac: str, service: ops.Service) -> ResponseReturnValue:
    mac = p.parse_mac(mac)
    db().write(lambda s: ops.delete_entry(s, service, network_id, mac))
    return "", 204


# --- VM data: save-vm-data, save-password, save-userdata, save-sshkey, ... -------------


@blueprint.put(_NIC + "/vm-data")
def put_vm_data(network_id: str, mac: str) -> ResponseReturnValue:
    body = Body.from_request((*p.NIC_FIELDS, "vm_data"))
    spec, items = p.parse_nic(network_id, mac, body), p.parse_vm_data(body, required=True)
    return db().write(lambda s: nic_json(ops.apply_vm_data(s, spec, items)))


@blueprint.put(_NIC + "/vm-data/<item>")
def put_vm_data_item(network_id: str, mac: str, item: str) -> ResponseReturnValue:
    if item not in p.SINGLE_ITEMS:
        raise NotFound(f"unknown VM data item {item!r}: use one of {', '.join(p.SINGLE_ITEMS)}")
    body = Body.from_request((*p.NIC_FIELDS, p.SINGLE_ITEMS[item][0]))
    spec, value = p.parse_nic(network_id, mac, body), p.parse_single_item(item, body)
    return db().write(lambda s: nic_json(ops.apply_vm_data_item(s, spec, value)))


# --- a network's DHCP/DNS service: config-/remove-dhcp-subnet, -dns-subnet -------------


@_per_service("PUT", "/networks/<network_id>")
def put_service(network_id: str, service: ops.Service) -> ResponseReturnValue:
    dns_info = p.parse_dns_info(Body.from_request(p.DNS_FIELDS))
    return db().write(
        lambda s: services_json(ops.apply_service(s, network_id, service, dns_info))
    )


@_per_service("GET", "/networks/<network_id>")
def get_service(network_id: str, service: ops.Service) -> ResponseReturnValue:
    with db().read() as s:
        return services_json(ops.get_services(s, network_id))


@_per_service("DELETE", "/networks/<network_id>")
def delete_service(network_id: str, service: ops.Service) -> ResponseReturnValue:
    db().write(lambda s: ops.delete_service(s, network_id, service))
    return "", 204


# --- restore-network -------------------------------------------------------------------


@blueprint.post("/networks/<network_id>/restore")
def restore(network_id: str) -> ResponseReturnValue:
    spec = p.parse_restore(network_id, Body.from_request(p.RESTORE_FIELDS))

    def work(session: Session) -> dict[str, Any]:
        services, nics = ops.restore_network(session, spec)
        return {"services": services_json(services), "nics": [nic_json(n) for n in nics]}

    return db().write(work)


# --- serializers -----------------------------------------------------------------------


def nic_json(nic: Nic, *, content: bool = False) -> dict[str, Any]:
    """A NIC; with `content`, its VM data files' contents too. Never a password."""
    files = sorted((item for item in nic.vm_data if item.dir != PASSWORD_DIR),
                   key=lambda item: (item.dir, item.file))
    return {
        "network_id": nic.network_id,
        "mac": nic.mac,
        "nic_id": nic.nic_id,
        "nic_uuid": nic.nic_uuid,
        "ip": nic.ip or "",
        "ip6_address": nic.ip6_address or "",
        "hostname": nic.hostname,
        "default_nic": nic.default_nic,
        "device_id": nic.device_id,
        "dhcp_entry": nic.dhcp_entry,
        "dns_entry": nic.dns_entry,
        "has_password": nic.has_password,
        "vm_data": [{"dir": item.dir, "file": item.file,
                     **({"content": item.content} if content else {})} for item in files],
    }


def services_json(services: NetworkServices) -> dict[str, Any]:
    return {
        "network_id": services.network_id,
        "dhcp_enabled": services.dhcp_enabled,
        "dns_enabled": services.dns_enabled,
        "dns": services.dns.split(",") if services.dns else [],
        "domain": services.domain,
    }


# --- OpenAPI ---------------------------------------------------------------------------

_STR = {"type": "string"}
_FLAG = {"description": "JSON boolean or the string 'true'/'false'"}
_NIC_PROPS: dict[str, Any] = {
    "mac": {"type": "string", "description": "optional; must equal the path's MAC"},
    "nic_id": _STR, "nic_uuid": _STR, "device_id": {"type": ["string", "integer"]},
    "ip": {"type": "string", "description": "IPv4 inside the network's cidr; '' = none"},
    "ip6_address": {"type": "string", "description": "inside the network's ip6_cidr"},
    "hostname": {"type": "string", "description": "one RFC 1123 label"},
    "default_nic": _FLAG,
    "gateway": {"type": "string", "description": "checked against the network"},
    "netmask": {"type": "string", "description": "checked against the network"},
    "ip6_gateway": {"type": "string", "description": "checked against the network"},
    "ip6_cidr": {"type": "string", "description": "checked against the network"},
}
_DNS_PROPS: dict[str, Any] = {
    "dns": {"description": "comma-separated string or list of addresses"},
    "domain": _STR,
}
_VM_DATA_ITEM = {"type": "object", "additionalProperties": False,
                 "required": ["dir", "file", "content"], "properties": {
    "dir": {"enum": ["userdata", "metadata", "password"]},
    "file": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
             "examples": ["user_data", "instance-id", "public-keys", "vm_password"]},
    "content": {"type": "string", "description": "UTF-8 text, at most 1 MiB"}}}
_NIC_BODY = "Fields left out keep their stored value; '' clears ip, ip6_address, hostname."


def _body(description: str, props: dict[str, Any], required: tuple[str, ...] = ()) -> Any:
    return {"type": "object", "additionalProperties": False, "description": description,
            "required": list(required), "properties": props}


SCHEMAS: dict[str, Any] = {
    "NicSpec": _body(_NIC_BODY, _NIC_PROPS),
    "NicEntrySpec": _body(_NIC_BODY + " dns/domain update the network's DHCP/DNS service.",
                          {**_NIC_PROPS, **_DNS_PROPS}),
    "VmDataSpec": _body(_NIC_BODY + " The password is kept unless vm_data has one.",
                        {**_NIC_PROPS, "vm_data": {"type": "array", "items": _VM_DATA_ITEM}},
                        ("vm_data",)),
    "VmDataItemSpec": _body(_NIC_BODY + " Exactly the key the path's item names.", {
        **_NIC_PROPS, "password": {"type": "string", "description": "one line"},
        "userdata": _STR, "sshkey": _STR, "hypervisor_hostname": _STR}),
    "Nic": {"type": "object", "properties": {
        **{name: _STR for name in ("network_id", "mac", "nic_id", "nic_uuid", "ip",
                                   "ip6_address", "hostname", "device_id")},
        **{name: {"type": "boolean"} for name in ("default_nic", "dhcp_entry", "dns_entry",
                                                   "has_password")},
        "vm_data": {"type": "array", "description": "without password files; content only "
                    "in GET of one NIC", "items": {"type": "object", "properties": {
                        "dir": _STR, "file": _STR, "content": _STR}}}}},
    "ServiceSpec": _body("config-dhcp-subnet / config-dns-subnet", _DNS_PROPS),
    "NetworkServices": {"type": "object", "properties": {
        "network_id": _STR, "dhcp_enabled": {"type": "boolean"},
        "dns_enabled": {"type": "boolean"}, "dns": {"type": "array", "items": _STR},
        "domain": _STR}},
    "RestoreSpec": _body("restore-network's restore_data plus the payload's dns/domain", {
        "dhcp_enabled": _FLAG, "dns_enabled": _FLAG, "userdata_enabled": _FLAG, **_DNS_PROPS,
        "vms": {"type": "array", "items": {"type": "object", "required": ["mac"],
                                           "additionalProperties": False, "properties": {
            **_NIC_PROPS, **_DNS_PROPS,
            "vm_data": {"type": "array", "items": _VM_DATA_ITEM}}}}},
        ("dhcp_enabled", "dns_enabled", "userdata_enabled")),
    "RestoreResult": {"type": "object", "properties": {
        "services": {"$ref": "#/components/schemas/NetworkServices"}, "nics": list_of("Nic")}},
}


def _service_ops(service: str) -> dict[str, Any]:
    return {
        "put": operation(f"config-{service}-subnet: enable the network's {service.upper()} "
                         "service", request="ServiceSpec", response="NetworkServices"),
        "get": operation("The network's DHCP and DNS service state",
                         response="NetworkServices", errors=(404,)),
        "delete": operation(f"remove-{service}-subnet (idempotent)", status=204, errors=()),
    }


def _entry_ops(service: str) -> dict[str, Any]:
    return {
        "put": operation(f"add-{service}-entry: upsert the NIC and give it a "
                         f"{service.upper()} entry", request="NicEntrySpec", response="Nic"),
        "delete": operation(f"remove-{service}-entry (idempotent)", status=204,
                            errors=(400,)),
    }


PATHS: dict[str, Any] = {
    "/v1/networks/{network_id}/nics": {
        "get": operation("List a network's NICs", response=list_of("Nic"), errors=(404,)),
    },
    "/v1/networks/{network_id}/nics/{mac}": {
        "put": operation("prepare-nic: create or update a NIC", request="NicSpec",
                         response="Nic"),
        "get": operation("Show a NIC with its VM data (never the password)", response="Nic",
                         errors=(400, 404)),
        "delete": operation("release-nic: remove the NIC, its entries and VM data "
                            "(idempotent)", status=204, errors=(400,)),
    },
    **{f"/v1/networks/{{network_id}}/nics/{{mac}}/{service}": _entry_ops(service)
       for service in SERVICES},
    "/v1/networks/{network_id}/nics/{mac}/vm-data": {
        "put": operation("save-vm-data: replace the NIC's VM data", request="VmDataSpec",
                         response="Nic"),
    },
    "/v1/networks/{network_id}/nics/{mac}/vm-data/{item}": {
        "put": operation("save-password / save-userdata / save-sshkey / "
                         "save-hypervisor-hostname (item: password, userdata, sshkey, "
                         "hypervisor-hostname)", request="VmDataItemSpec", response="Nic"),
    },
    **{f"/v1/networks/{{network_id}}/{service}": _service_ops(service) for service in SERVICES},
    "/v1/networks/{network_id}/restore": {
        "post": operation("restore-network: the network's whole DHCP/DNS/VM-data state, one "
                          "transaction; NICs not listed are removed, passwords kept",
                          request="RestoreSpec", response="RestoreResult"),
    },
}
