"""Desired state of a SoftGate's DHCP, DNS, VM-data and password service: data only.

One `Network` per guest network: the routing domain (network namespace) it lives in, the
bridge that carries its gateway address, addresses, DNS settings, and its NICs. Each NIC
carries what dnsmasq needs (MAC, addresses, host name, default NIC or not) and what the
metadata and password server hands to the VM (user data, metadata items, password).

Everything here comes from tenants through CloudStack and ends up in dnsmasq files or HTTP
answers, so `from_json` checks every field and refuses anything that could change the
meaning of a config line: host names and domains are RFC 1123 names (no quote, comma, '#',
space or newline can pass), metadata keys are one safe path component, text is valid UTF-8
without NUL. Errors are one line and name the field: `networks[2].nics[0].hostname: ...`.

`parse_state` is the lenient form the agent uses on a full resync: a bad NIC or network is
left out and reported, so one tenant's broken record cannot take DHCP away from the rest.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

T = TypeVar("T")

MAX_USER_DATA_BYTES: Final = 1024 * 1024  # CloudStack's limit for POSTed user data
MAX_METADATA_BYTES: Final = 64 * 1024  # a value is an id, a name or a few SSH keys
MAX_METADATA_ITEMS: Final = 64  # CloudStack's generateVmData makes about fifteen
MAX_PASSWORD_CHARS: Final = 256
MAX_DNS_SERVERS: Final = 4
_LABEL_RE: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAC_RE: Final = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Kernel interface names: at most 15 bytes, no '/', ':' or white space.
_IFNAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
_NETNS_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KEY_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# C0 controls but TAB, LF and CR, and DEL: user data is a script or cloud-config.
_TEXT_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class DhcpStateError(ValueError):
    """A one-line description of the first bad field, prefixed with its path."""


@dataclass(frozen=True)
class ObjectStatus:
    """The outcome for one object: kind is network, nic, dnsmasq or metadata."""

    kind: str
    id: str
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class VmData:
    """What the metadata and password servers hand to the VM behind one NIC address."""

    user_data: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()  # sorted by key, keys unique ignoring case
    password: str | None = None  # served once; None when CloudStack sent none


@dataclass(frozen=True)
class Nic:
    mac: str  # lower case, colon separated
    ipv4: ipaddress.IPv4Address
    ipv6: ipaddress.IPv6Address | None = None
    hostname: str | None = None
    default: bool = True  # a non-default NIC gets no router, DNS or domain option
    vm_data: VmData = VmData()


@dataclass(frozen=True)
class Network:
    id: str
    netns: str  # the routing domain's network namespace
    bridge: str  # the bridge in that namespace that holds the gateway address
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    domain: str = ""
    dns_servers: tuple[ipaddress.IPv4Address, ...] = ()  # handed to guests after our own
    upstream_dns: tuple[ipaddress.IPv4Address, ...] = ()  # where dnsmasq forwards; none: no
    ipv6_cidr: ipaddress.IPv6Network | None = None
    ipv6_gateway: ipaddress.IPv6Address | None = None
    dhcp: bool = True
    dns: bool = True
    userdata: bool = True
    nics: tuple[Nic, ...] = ()  # sorted by MAC

    @property
    def needs_dnsmasq(self) -> bool:
        return self.dhcp or self.dns


@dataclass(frozen=True)
class DhcpState:
    networks: tuple[Network, ...] = ()  # sorted by id

    @staticmethod
    def from_json(data: object) -> DhcpState:
        """The whole state, or DhcpStateError for the first bad field."""
        body = _obj(data, "state", ("networks",))
        items = _list(body.get("networks", []), "networks")
        networks = [parse_network(item, f"networks[{i}]") for i, item in enumerate(items)]
        return _assemble(networks)

    def network(self, network_id: str) -> Network | None:
        return next((net for net in self.networks if net.id == network_id), None)


def parse_state(data: object) -> tuple[DhcpState, tuple[ObjectStatus, ...]]:
    """Lenient: bad networks and NICs are left out and reported, the rest is kept.
    Only a body that is not {"networks": [...]} at all raises DhcpStateError."""
    body = _obj(data, "state", ("networks",))
    items = _list(body.get("networks", []), "networks")
    problems: list[ObjectStatus] = []
    networks: list[Network] = []
    seen: set[str] = set()
    seen_bridges: set[tuple[str, str]] = set()
    for index, item in enumerate(items):
        where = f"networks[{index}]"
        net_id = str(item.get("id", index)) if isinstance(item, dict) else str(index)
        try:
            network, bad = _parse_network_lenient(item, where)
            if network.id in seen:
                raise DhcpStateError(f"{where}.id: network {network.id} is listed twice")
            if (network.netns, network.bridge) in seen_bridges:
                raise DhcpStateError(f"{where}.bridge: {network.bridge} in {network.netns} "
                                     "already serves another network")
        except DhcpStateError as exc:
            problems.append(ObjectStatus("network", net_id, False, str(exc)))
            continue
        seen.add(network.id)
        seen_bridges.add((network.netns, network.bridge))
        networks.append(network)
        problems.extend(bad)
    return _assemble(networks), tuple(problems)


def with_network(state: DhcpState, network: Network) -> DhcpState:
    """restore-network: one network's whole state replaced (or added) in one step."""
    others = [net for net in state.networks if net.id != network.id]
    return _assemble([*others, network])


def without_network(state: DhcpState, network_id: str) -> DhcpState:
    return DhcpState(tuple(net for net in state.networks if net.id != network_id))


# --- networks --------------------------------------------------------------------------

_NETWORK_FIELDS: Final = (
    "id", "netns", "bridge", "cidr", "gateway", "domain", "dns_servers", "upstream_dns",
    "ipv6_cidr", "ipv6_gateway", "dhcp", "dns", "userdata", "nics",
)
_NIC_FIELDS: Final = (
    "mac", "ip", "ip6", "hostname", "default", "user_data", "metadata", "password",
)


def parse_network(data: object, where: str) -> Network:
    network, problems = _parse_network_lenient(data, where)
    if problems:
        raise DhcpStateError(problems[0].reason)
    return network


def _parse_network_lenient(data: object, where: str) -> tuple[Network, list[ObjectStatus]]:
    body = _obj(data, where, _NETWORK_FIELDS)
    cidr = _req(body, "cidr", where, _ipv4_network)
    gateway = _req(body, "gateway", where, _ipv4)
    if gateway not in cidr or gateway in (cidr.network_address, cidr.broadcast_address):
        raise DhcpStateError(f"{where}.gateway: {gateway} is not a host address of {cidr}")
    ipv6_cidr = _opt(body, "ipv6_cidr", where, _ipv6_network)
    ipv6_gateway = _opt(body, "ipv6_gateway", where, _ipv6)
    if (ipv6_cidr is None) != (ipv6_gateway is None):
        raise DhcpStateError(f"{where}.ipv6_cidr: give both ipv6_cidr and ipv6_gateway, or "
                             "neither")
    if ipv6_cidr is not None and ipv6_gateway not in ipv6_cidr:
        raise DhcpStateError(f"{where}.ipv6_gateway: {ipv6_gateway} is not in {ipv6_cidr}")
    network = Network(
        id=_req(body, "id", where, _identifier),
        netns=_req(body, "netns", where, _netns),
        bridge=_req(body, "bridge", where, _ifname),
        cidr=cidr,
        gateway=gateway,
        domain=_opt(body, "domain", where, _domain) or "",
        dns_servers=_opt(body, "dns_servers", where, _dns_list) or (),
        upstream_dns=_opt(body, "upstream_dns", where, _dns_list) or (),
        ipv6_cidr=ipv6_cidr,
        ipv6_gateway=ipv6_gateway,
        dhcp=_flag(body, "dhcp", where),
        dns=_flag(body, "dns", where),
        userdata=_flag(body, "userdata", where),
    )
    nics, problems = _parse_nics(network, _list(body.get("nics", []), f"{where}.nics"), where)
    return replace(network, nics=nics), problems


def _parse_nics(
    network: Network, items: list[Any], where: str
) -> tuple[tuple[Nic, ...], list[ObjectStatus]]:
    nics: dict[str, Nic] = {}
    taken: dict[str, str] = {}  # address or lower-case host name -> MAC
    problems: list[ObjectStatus] = []
    for index, item in enumerate(items):
        nic_where = f"{where}.nics[{index}]"
        try:
            nic = _parse_nic(item, nic_where, network)
            _check_unique(nic, nic_where, nics, taken)
        except DhcpStateError as exc:
            mac = item.get("mac") if isinstance(item, dict) else None
            problems.append(ObjectStatus("nic", f"{network.id}/{mac or index}", False, str(exc)))
            continue
        nics[nic.mac] = nic
        for key in _unique_keys(nic):
            taken[key] = nic.mac
    return tuple(nics[mac] for mac in sorted(nics)), problems


def _unique_keys(nic: Nic) -> list[str]:
    keys = [str(nic.ipv4)]
    if nic.ipv6 is not None:
        keys.append(str(nic.ipv6))
    if nic.hostname is not None:
        keys.append("name:" + nic.hostname.lower())
    return keys


def _check_unique(nic: Nic, where: str, nics: Mapping[str, Nic], taken: Mapping[str, str]
                  ) -> None:
    if nic.mac in nics:
        raise DhcpStateError(f"{where}.mac: {nic.mac} is listed twice")
    for key in _unique_keys(nic):
        if key in taken:
            what = key.removeprefix("name:")
            raise DhcpStateError(f"{where}: {what} is already used by NIC {taken[key]}")


def _parse_nic(data: object, where: str, network: Network) -> Nic:
    body = _obj(data, where, _NIC_FIELDS)
    ipv4 = _req(body, "ip", where, _ipv4)
    cidr = network.cidr
    if ipv4 not in cidr or ipv4 in (cidr.network_address, cidr.broadcast_address,
                                    network.gateway):
        raise DhcpStateError(f"{where}.ip: {ipv4} is not a free host address of {cidr}")
    ipv6 = _opt(body, "ip6", where, _ipv6)
    if ipv6 is not None and (network.ipv6_cidr is None or ipv6 not in network.ipv6_cidr):
        raise DhcpStateError(f"{where}.ip6: {ipv6} is not in the network's IPv6 prefix "
                             f"{network.ipv6_cidr}")
    return Nic(
        mac=_req(body, "mac", where, _mac),
        ipv4=ipv4,
        ipv6=ipv6,
        hostname=_opt(body, "hostname", where, _hostname),
        default=_flag(body, "default", where),
        vm_data=VmData(
            user_data=_opt(body, "user_data", where, _user_data),
            metadata=_opt(body, "metadata", where, _metadata) or (),
            password=_opt(body, "password", where, _password),
        ),
    )


def _assemble(networks: list[Network]) -> DhcpState:
    ids = [net.id for net in networks]
    duplicate = next((net_id for net_id in ids if ids.count(net_id) > 1), None)
    if duplicate is not None:
        raise DhcpStateError(f"networks: network {duplicate} is listed twice")
    bridges = [(net.netns, net.bridge) for net in networks]
    clash = next((b for b in bridges if bridges.count(b) > 1), None)
    if clash is not None:
        raise DhcpStateError(f"networks: bridge {clash[1]} in {clash[0]} serves two networks")
    return DhcpState(tuple(sorted(networks, key=lambda net: net.id)))


# --- generic field helpers -------------------------------------------------------------


def show(value: object) -> str:
    """A value for an error message: repr keeps it on one line, and it is cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _obj(data: object, where: str, fields: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise DhcpStateError(f"{where}: expected an object, got {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in fields)
    if unknown:
        raise DhcpStateError(f"{where}: unknown field {show(unknown[0])}")
    return data


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise DhcpStateError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _req(body: Mapping[str, Any], key: str, where: str, parse: Callable[[object], T]) -> T:
    if key not in body or body[key] is None:
        raise DhcpStateError(f"{where}.{key}: required")
    return _field(body[key], f"{where}.{key}", parse)


def _opt(body: Mapping[str, Any], key: str, where: str, parse: Callable[[object], T]
         ) -> T | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    return _field(value, f"{where}.{key}", parse)


def _field(value: object, where: str, parse: Callable[[object], T]) -> T:
    try:
        return parse(value)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, DhcpStateError):
            raise DhcpStateError(f"{where}{exc}") from None
        raise DhcpStateError(f"{where}: {exc}") from None


def _flag(body: Mapping[str, Any], key: str, where: str) -> bool:
    value = body.get(key, True)
    if not isinstance(value, bool):
        raise DhcpStateError(f"{where}.{key}: expected true or false, got {show(value)}")
    return value


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = _string(value)
        if not pattern.fullmatch(text):
            raise ValueError(f"not {what}: {show(text)}")
        return text

    return parse


_identifier = _matching(_ID_RE, "an id (letters, digits, '_', '-'; at most 64)")
_ifname = _matching(_IFNAME_RE, "an interface name (at most 15 of letters, digits, '_.-')")
_netns = _matching(_NETNS_RE, "a namespace name (letters, digits, '_.-'; at most 64)")


def _mac(value: object) -> str:
    text = _string(value).lower()
    if not _MAC_RE.fullmatch(text):
        raise ValueError(f"not a MAC address: {show(value)}")
    return text


def _hostname(value: object) -> str:
    """One DNS label: it becomes a dnsmasq host name and a DNS record."""
    text = _string(value)
    if not _LABEL_RE.fullmatch(text):
        raise ValueError(f"not a valid host name (one DNS label): {show(value)}")
    return text


def _domain(value: object) -> str:
    text = _string(value).rstrip(".")
    labels = text.split(".")
    if len(text) > 253 or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError(f"not a valid domain name: {show(value)}")
    return text.lower()


def _ip(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(_string(value))
    except ValueError:
        raise ValueError(f"not an IP address: {show(value)}") from None


def _ipv4(value: object) -> ipaddress.IPv4Address:
    address = _ip(value)
    if not isinstance(address, ipaddress.IPv4Address):
        raise ValueError(f"not an IPv4 address: {show(value)}")
    return address


def _ipv6(value: object) -> ipaddress.IPv6Address:
    address = _ip(value)
    if not isinstance(address, ipaddress.IPv6Address):
        raise ValueError(f"not an IPv6 address: {show(value)}")
    return address


def _ipv4_network(value: object) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(_string(value))
    except ValueError:
        raise ValueError(f"not an IPv4 CIDR: {show(value)}") from None
    if network.prefixlen > 30:
        raise ValueError(f"{network} has no room for a gateway and VMs")
    return network


def _ipv6_network(value: object) -> ipaddress.IPv6Network:
    try:
        network = ipaddress.IPv6Network(_string(value))
    except ValueError:
        raise ValueError(f"not an IPv6 CIDR: {show(value)}") from None
    if network.prefixlen != 64:
        # SLAAC, which router advertisements hand out, works on /64 prefixes only.
        raise ValueError(f"{network}: IPv6 guest networks must be /64 for SLAAC")
    return network


def _dns_list(value: object) -> tuple[ipaddress.IPv4Address, ...]:
    """A list of IPv4 addresses, or CloudStack's comma-joined form '8.8.8.8,1.1.1.1'."""
    items = [x.strip() for x in value.split(",") if x.strip()] if isinstance(value, str) \
        else value
    if not isinstance(items, list):
        raise ValueError("expected a list of IPv4 addresses")
    if len(items) > MAX_DNS_SERVERS:
        raise ValueError(f"{len(items)} servers is more than {MAX_DNS_SERVERS}")
    return tuple(_ipv4(item) for item in items)


def _text(value: object, limit: int, control: re.Pattern[str]) -> str:
    text = _string(value)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: JSON allows it, UTF-8 does not
        raise ValueError("not valid UTF-8 text") from None
    if size > limit:
        raise ValueError(f"{size} bytes is more than {limit}")
    bad = control.search(text)
    if bad is not None:
        raise ValueError(f"control character U+{ord(bad.group()):04X} at offset {bad.start()}")
    return text


def _user_data(value: object) -> str:
    return _text(value, MAX_USER_DATA_BYTES, _TEXT_CONTROL_RE)


def _metadata(value: object) -> tuple[tuple[str, str], ...]:
    """{key: value}: keys are URL path components and lines of the listing."""
    if not isinstance(value, dict):
        raise ValueError(f"expected an object of key: text, got {type(value).__name__}")
    if len(value) > MAX_METADATA_ITEMS:
        raise ValueError(f"{len(value)} items is more than {MAX_METADATA_ITEMS}")
    seen: set[str] = set()
    items: list[tuple[str, str]] = []
    for key, text in value.items():
        if not _KEY_RE.fullmatch(key) or ".." in key:
            raise DhcpStateError(f": bad key {show(key)}: use 1-64 letters, digits, '.', '_' "
                                 "or '-', starting with a letter or digit")
        if key.lower() in seen or key.lower() == "user-data":
            raise DhcpStateError(f": key {show(key)} is listed twice (keys ignore case)")
        seen.add(key.lower())
        try:
            items.append((key, _text(text, MAX_METADATA_BYTES, _TEXT_CONTROL_RE)))
        except ValueError as exc:
            raise DhcpStateError(f".{key}: {exc}") from None
    return tuple(sorted(items))


def _password(value: object) -> str:
    """Printable, no white space: guests read it as one word, with a trailing newline cut."""
    text = _string(value)
    if not 0 < len(text) <= MAX_PASSWORD_CHARS or not text.isprintable() \
            or any(char.isspace() for char in text):
        raise ValueError(f"a password is 1-{MAX_PASSWORD_CHARS} printable characters without "
                         "white space")
    return text


def nic_json(nic: Nic) -> dict[str, Any]:
    """A NIC back in from_json's form (tests and the bench build states with it)."""
    out: dict[str, Any] = {"mac": nic.mac, "ip": str(nic.ipv4), "default": nic.default}
    if nic.ipv6 is not None:
        out["ip6"] = str(nic.ipv6)
    if nic.hostname is not None:
        out["hostname"] = nic.hostname
    if nic.vm_data.user_data is not None:
        out["user_data"] = nic.vm_data.user_data
    if nic.vm_data.metadata:
        out["metadata"] = dict(nic.vm_data.metadata)
    if nic.vm_data.password is not None:
        out["password"] = nic.vm_data.password
    return out

