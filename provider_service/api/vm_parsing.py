"""Parsing NIC, DHCP/DNS and VM-data requests into specs: pure, one-line errors.

Bodies use CloudStack's own payload keys (addNicToPayload, addNetworkDnsToPayload,
vm_data, restore_data), so the plugin passes fields through instead of renaming them.
Everything here ends up in dnsmasq files, DNS records or files the metadata and password
servers serve, so it is checked strictly: host names are one RFC 1123 label, VM-data
file names one safe path component, contents text without control characters.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Final, TypeVar

from provider_service import validation as v
from provider_service import vms as ops
from provider_service.api.body import Body
from provider_service.errors import BadRequest
from provider_service.models.vms import (
    PASSWORD_CHECKSUM_FILE,
    PASSWORD_DIR,
    PASSWORD_FILE,
    USERDATA_DIR,
    USERDATA_FILE,
    VM_DATA_DIRS,
)

T = TypeVar("T")

MAX_CONTENT_BYTES: Final = 1024 * 1024  # CloudStack's largest user data
# What the agent serves (agent/dhcp_state.py): a larger metadata file or password would be
# stored and never served, so it is refused here, where the sender hears of it.
MAX_METADATA_BYTES: Final = 64 * 1024
MAX_PASSWORD_CHARS: Final = 256
MAX_VM_DATA_ITEMS: Final = 64  # generateVmData makes about fifteen
MAX_RESTORE_NICS: Final = 65536
NIC_FIELDS: Final = (
    "mac", "nic_id", "nic_uuid", "ip", "ip6_address", "hostname", "default_nic", "device_id",
    "gateway", "netmask", "ip6_gateway", "ip6_cidr",
)
DNS_FIELDS: Final = ("dns", "domain")
RESTORE_FIELDS: Final = ("dhcp_enabled", "dns_enabled", "userdata_enabled", "vms", *DNS_FIELDS)
RESTORE_NIC_FIELDS: Final = (*NIC_FIELDS, *DNS_FIELDS, "vm_data")
# PUT .../vm-data/<item>: the CloudStack command's payload key, and the file it sets
# (the names save-vm-data uses for the same file, so both commands address one file).
SINGLE_ITEMS: Final = {
    "password": ("password", PASSWORD_DIR, PASSWORD_FILE),
    "userdata": ("userdata", USERDATA_DIR, USERDATA_FILE),
    "sshkey": ("sshkey", "metadata", "public-keys"),
    "hypervisor-hostname": ("hypervisor_hostname", "metadata", "hypervisor-host-name"),
}
_FILE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# C0 controls but TAB, LF and CR, and DEL: no text a guest needs, and NUL cannot even be
# stored in PostgreSQL text.
_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Metadata files are short values served line by line: C1 controls (NEL among them) and
# the Unicode line and paragraph separators, which line splitters and YAML readers treat
# as line breaks, are refused as well. User data keeps the plain rule: it is the tenant's
# own script, handed to its own VM.
_METADATA_CONTROL_RE: Final = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_CHECKSUM_RE: Final = re.compile(r"[0-9a-f]{1,32}")


# --- field parsers ---------------------------------------------------------------------


def ipv4(value: object, field: str) -> str:
    return str(v.parse_ip(value, field, version=4))


def ipv6(value: object, field: str) -> str:
    return str(v.parse_ip(value, field, version=6))


def netmask(value: object, field: str) -> str:
    text = ipv4(value, field)
    try:
        ipaddress.IPv4Network(f"0.0.0.0/{text}")
    except ValueError as exc:
        raise BadRequest(f"{field}: not a netmask: {text}") from exc
    return text


def ip6_cidr(value: object, field: str) -> str:
    return str(v.parse_cidr(value, field, version=6))


def dns_list(value: object, field: str) -> str:
    return ",".join(v.parse_dns_list(value, field))


def content(value: object, field: str) -> str:
    """User data: UTF-8 text of at most 1 MiB, without C0 control characters."""
    return _text(value, field, _CONTROL_RE)


def metadata(value: object, field: str) -> str:
    """Metadata: as user data, at most 64 KiB, and without C1 controls or Unicode line
    separators."""
    return _text(value, field, _METADATA_CONTROL_RE, MAX_METADATA_BYTES)


def _text(value: object, field: str, control: re.Pattern[str],
          limit: int = MAX_CONTENT_BYTES) -> str:
    text = v.require_str(value, field)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800"
        raise BadRequest(f"{field}: not valid UTF-8 text") from exc
    if size > limit:
        raise BadRequest(f"{field}: {size} bytes is more than {limit}")
    bad = control.search(text)
    if bad is not None:
        raise BadRequest(f"{field}: control character U+{ord(bad.group()):04X} at offset "
                         f"{bad.start()}; only text is accepted")
    return text


def password(value: object, field: str) -> str:
    """Printable characters without white space: the password server keeps passwords in a
    line-oriented store, and guests read them as one word. No error shows the value."""
    if not isinstance(value, str):  # require_str would quote it
        raise BadRequest(f"{field}: expected a string, got {type(value).__name__}")
    text = metadata(value, field)
    if text == "" or not text.isprintable() or any(char.isspace() for char in text):
        raise BadRequest(f"{field}: a password is one or more printable characters without "
                         "white space")
    if len(text) > MAX_PASSWORD_CHARS:
        raise BadRequest(f"{field}: a password is at most {MAX_PASSWORD_CHARS} characters")
    return text


def file_name(value: object, field: str) -> str:
    """One path component: never '/', never '..', never a leading dot."""
    text = v.require_str(value, field)
    if not _FILE_RE.fullmatch(text) or ".." in text:
        raise BadRequest(f"{field}: use 1-64 letters, digits, '.', '_' or '-', starting "
                         f"with a letter or digit: {text[:40]!r}")
    return text


def _given(body: Body, field: str, parse: Callable[[Any, str], str]) -> str | None:
    """None when left out (keep the stored value); "" when sent blank (there is none)."""
    if body.raw(field) == "":
        return ""
    return body.get(field, parse, None)


# --- NICs ------------------------------------------------------------------------------


def parse_mac(value: object) -> str:
    return v.parse_mac(value, "mac")


def parse_nic(network_id: str, mac: str, body: Body) -> ops.NicSpec:
    """The NIC fields of any NIC-scoped body; the path's MAC wins, the body may repeat it."""
    path_mac = parse_mac(mac)
    body_mac = body.get("mac", v.parse_mac, None)
    if body_mac is not None and body_mac != path_mac:
        raise BadRequest(f"mac: {body_mac} is not the NIC {path_mac} the path names")
    return nic_spec(v.parse_id(network_id, "network_id"), path_mac, body)


def nic_spec(network_id: str, mac: str, body: Body) -> ops.NicSpec:
    return ops.NicSpec(
        network_id=network_id,
        mac=mac,
        nic_id=_given(body, "nic_id", v.parse_id),
        nic_uuid=_given(body, "nic_uuid", v.parse_id),
        ip=_given(body, "ip", ipv4),
        ip6_address=_given(body, "ip6_address", ipv6),
        hostname=_given(body, "hostname", v.parse_hostname),
        default_nic=body.get("default_nic", v.parse_bool, None),
        device_id=_given(body, "device_id", v.parse_id),
        facts=ops.NetworkFacts(
            gateway=body.get("gateway", ipv4, None),
            netmask=body.get("netmask", netmask, None),
            ip6_gateway=body.get("ip6_gateway", ipv6, None),
            ip6_cidr=body.get("ip6_cidr", ip6_cidr, None),
        ),
    )


def parse_dns_info(body: Body) -> ops.DnsInfo:
    return ops.DnsInfo(dns=_given(body, "dns", dns_list),
                       domain=_given(body, "domain", v.parse_domain))


# --- VM data ---------------------------------------------------------------------------


def parse_vm_data(
    body: Body, where: str = "", *, required: bool = False
) -> tuple[ops.VmDataItem, ...]:
    """save-vm-data's list of {dir, file, content}; each file at most once. Required by
    save-vm-data itself: left out, it would silently empty the NIC's files."""
    field = where + "vm_data"
    if required and not body.has("vm_data"):
        raise BadRequest(f"{field}: required")
    values = body.items("vm_data")
    if len(values) > MAX_VM_DATA_ITEMS:
        raise BadRequest(f"{field}: {len(values)} items is more than {MAX_VM_DATA_ITEMS}")
    items: list[ops.VmDataItem] = []
    seen: set[tuple[str, str]] = set()
    for index, value in enumerate(values):
        item = parse_vm_data_item(value, f"{field}[{index}]")
        if (item.dir, item.file) in seen:
            raise BadRequest(f"{field}[{index}]: {item.dir}/{item.file} is listed twice")
        seen.add((item.dir, item.file))
        items.append(item)
    return tuple(items)


def parse_vm_data_item(value: object, where: str) -> ops.VmDataItem:
    body = Body.nested(value, ("dir", "file", "content"), where)
    directory = body.get("dir", lambda x, f: v.parse_choice(x, f, VM_DATA_DIRS))
    name = body.get("file", file_name)
    return ops.VmDataItem(directory, name, body.get("content", _content_parser(directory, name)))


def _content_parser(directory: str, name: str) -> Callable[[Any, str], str]:
    """Files the servers interpret are held to their format; others are plain text."""
    if directory == USERDATA_DIR and name != USERDATA_FILE:
        return _refuse(f"userdata holds only {USERDATA_FILE}, not {name}")
    if directory == PASSWORD_DIR and name == PASSWORD_FILE:
        return password
    if directory == PASSWORD_DIR and name == PASSWORD_CHECKSUM_FILE:
        return _checksum
    if directory == PASSWORD_DIR:
        return _refuse(f"password holds only {PASSWORD_FILE} and {PASSWORD_CHECKSUM_FILE}, "
                       f"not {name}")
    if directory == USERDATA_DIR:
        return content
    return metadata


def _checksum(value: object, field: str) -> str:
    text = v.require_str(value, field)
    if not _CHECKSUM_RE.fullmatch(text):
        raise BadRequest(f"{field}: not a hex MD5 checksum: {text[:40]!r}")
    return text


def _refuse(message: str) -> Callable[[Any, str], str]:
    def parse(_value: object, field: str) -> str:
        raise BadRequest(f"{field.rsplit('.', 1)[0]}: {message}")

    return parse


def parse_single_item(item: str, body: Body) -> ops.VmDataItem:
    """PUT .../vm-data/<item>: the value under the command's payload key."""
    key, directory, name = SINGLE_ITEMS[item]
    return ops.VmDataItem(directory, name, body.get(key, _content_parser(directory, name)))


# --- restore-network -------------------------------------------------------------------


def parse_restore(network_id: str, body: Body) -> ops.RestoreSpec:
    values = body.items("vms")
    if len(values) > MAX_RESTORE_NICS:
        raise BadRequest(f"vms: {len(values)} NICs is more than {MAX_RESTORE_NICS}")
    network_id = v.parse_id(network_id, "network_id")
    nics: list[ops.RestoreNic] = []
    macs: set[str] = set()
    for index, value in enumerate(values):
        nic = _restore_nic(network_id, value, f"vms[{index}]")
        if nic.nic.mac in macs:
            raise BadRequest(f"vms[{index}].mac: {nic.nic.mac} is listed twice")
        macs.add(nic.nic.mac)
        nics.append(nic)
    return ops.RestoreSpec(
        network_id=network_id,
        dhcp_enabled=body.get("dhcp_enabled", v.parse_bool),
        dns_enabled=body.get("dns_enabled", v.parse_bool),
        userdata_enabled=body.get("userdata_enabled", v.parse_bool),
        dns_info=parse_dns_info(body),
        nics=tuple(nics),
    )


def _restore_nic(network_id: str, value: object, where: str) -> ops.RestoreNic:
    body = Body.nested(value, RESTORE_NIC_FIELDS, where)
    # Each VM repeats the network's dns and domain: checked here, stored once from the
    # top level.
    parse_dns_info(body)
    return ops.RestoreNic(
        nic=nic_spec(network_id, body.get("mac", v.parse_mac), body),
        vm_data=parse_vm_data(body, where + "."),
    )
