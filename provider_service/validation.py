"""Pure validators for everything CloudStack or an operator sends us.

Each takes the raw value and the field name, returns the parsed value, or raises
BadRequest with one line that names the field. Anything that reaches a config file later
(hostnames, domains, addresses, ports) passes through here first, which is what keeps
tenant strings from injecting configuration.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from provider_service.errors import BadRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_VNI: Final = 2**24 - 1
MIN_VLAN, MAX_VLAN = 1, 4094
MAX_ASN: Final = 2**32 - 1
# CloudStack ids arrive as numeric strings or UUIDs; allow both, nothing that could
# escape a file name, a kernel name or a URL path segment.
_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_LABEL_RE: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAC_RE: Final = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# What address and CIDR text may contain. Python's ipaddress also accepts IPv6 scope ids
# ('fe80::1%<anything>', newlines included) and keeps them in str(): never let one in.
_ADDRESS_TEXT_RE: Final = re.compile(r"[0-9A-Fa-f:./]{2,49}")


def show(value: object) -> str:
    """A value quoted for an error message, cut short: errors stay one short line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def require_str(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{field}: expected a string, got {show(value)}")
    return value


def parse_id(value: object, field: str) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _ID_RE.fullmatch(text):
        raise BadRequest(f"{field}: not a valid id: {show(value)}")
    return text


def parse_name(value: object, field: str) -> str:
    """Device and object names: they become file names and FRR/kernel identifiers."""
    text = require_str(value, field)
    if not _NAME_RE.fullmatch(text):
        raise BadRequest(f"{field}: use 1-63 letters, digits, '.', '_' or '-': {show(value)}")
    return text


def _address_text(value: object, field: str, what: str) -> str:
    text = require_str(value, field)
    if not _ADDRESS_TEXT_RE.fullmatch(text):
        raise BadRequest(f"{field}: not {what}: {show(value)}")
    return text


def parse_cidr(
    value: object, field: str, version: int | None = None, *, strict: bool = True
) -> IPNetwork:
    """A network in CIDR form; strict=False accepts host bits ('10.1.1.5/24')."""
    text = _address_text(value, field, "a network in CIDR form")
    try:
        network = ipaddress.ip_network(text, strict=strict)
    except ValueError as exc:
        raise BadRequest(f"{field}: not a network in CIDR form: {show(value)}") from exc
    if version is not None and network.version != version:
        raise BadRequest(f"{field}: expected an IPv{version} network, got {text}")
    return network


def parse_ip(value: object, field: str, version: int | None = None) -> IPAddress:
    text = _address_text(value, field, "an IP address")
    try:
        address = ipaddress.ip_address(text)
    except ValueError as exc:
        raise BadRequest(f"{field}: not an IP address: {show(value)}") from exc
    if version is not None and address.version != version:
        raise BadRequest(f"{field}: expected an IPv{version} address, got {text}")
    return address


def parse_interface_address(value: object, field: str) -> ipaddress.IPv4Interface:
    """An address with its prefix, as CloudStack's public_cidr ('203.0.113.5/24')."""
    text = _address_text(value, field, "an IPv4 address/prefix")
    try:
        return ipaddress.IPv4Interface(text)
    except ValueError as exc:
        raise BadRequest(f"{field}: not an IPv4 address/prefix: {show(value)}") from exc


def gateway_in_cidr(gateway: IPAddress, cidr: IPNetwork, field: str) -> None:
    if gateway not in cidr:
        raise BadRequest(f"{field}: {gateway} is outside {cidr}")
    if cidr.version == 4 and cidr.prefixlen < 31 and gateway in (
        cidr.network_address,
        cidr.broadcast_address,
    ):
        raise BadRequest(f"{field}: {gateway} is the network or broadcast address of {cidr}")


def parse_int(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise BadRequest(f"{field}: expected a whole number, got {show(value)}")
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,20}", value.strip()):
        value = int(value)
    if not isinstance(value, int):
        raise BadRequest(f"{field}: expected a whole number, got {show(value)}")
    if not low <= value <= high:
        raise BadRequest(f"{field}: {value} is outside {low}-{high}")
    return value


def parse_bool(value: object, field: str) -> bool:
    """CloudStack sends flags as JSON booleans or as the strings 'true'/'false'."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRequest(f"{field}: expected true or false, got {show(value)}")


def parse_range(value: object, field: str, low: int, high: int) -> tuple[int, int]:
    """'3000-4094' or [3000, 4094] → (3000, 4094), both ends inside low..high."""
    if isinstance(value, list | tuple) and len(value) == 2:
        first, last = value
    elif isinstance(value, str) and re.fullmatch(r" *[0-9]{1,20} *- *[0-9]{1,20} *", value):
        first, last = (int(part) for part in value.split("-"))
    else:
        raise BadRequest(f"{field}: expected a range like '3000-4094', got {show(value)}")
    start = parse_int(first, field, low, high)
    end = parse_int(last, field, low, high)
    if start > end:
        raise BadRequest(f"{field}: range start {start} is above its end {end}")
    return start, end


def parse_port_range(value: object, field: str) -> tuple[int, int]:
    """CloudStack sends ports as '80', '8000-8100' or a number."""
    if isinstance(value, int) and not isinstance(value, bool):
        port = parse_int(value, field, 1, 65535)
        return port, port
    text = require_str(value, field).strip()
    if re.fullmatch(r"[0-9]{1,20}", text):
        port = parse_int(text, field, 1, 65535)
        return port, port
    return parse_range(text, field, 1, 65535)


def parse_choice(value: object, field: str, choices: tuple[str, ...]) -> str:
    text = require_str(value, field).lower()
    if text not in choices:
        raise BadRequest(f"{field}: {show(value)} is not one of {', '.join(choices)}")
    return text


def parse_hostname(value: object, field: str) -> str:
    """One DNS label (RFC 1123): VM host names end up in dnsmasq and metadata files."""
    text = require_str(value, field)
    if not _LABEL_RE.fullmatch(text):
        raise BadRequest(f"{field}: not a valid host name: {show(value)}")
    return text


def parse_domain(value: object, field: str) -> str:
    text = require_str(value, field).rstrip(".")
    if text == "":
        return ""
    if len(text) > 253 or not all(_LABEL_RE.fullmatch(label) for label in text.split(".")):
        raise BadRequest(f"{field}: not a valid domain name: {show(value)}")
    return text


def parse_mac(value: object, field: str) -> str:
    text = require_str(value, field).lower()
    if not _MAC_RE.fullmatch(text):
        raise BadRequest(f"{field}: not a MAC address: {show(value)}")
    return text


def parse_dns_list(value: object, field: str) -> list[str]:
    """CloudStack's comma-joined DNS servers ('8.8.8.8,1.1.1.1'), or a JSON list."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise BadRequest(f"{field}: expected a comma-separated list of addresses")
    return [str(parse_ip(item.strip() if isinstance(item, str) else item, field))
            for item in items if not (isinstance(item, str) and item.strip() == "")]


def ranges_overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]
