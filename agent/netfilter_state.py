"""Desired netfilter state of one routing domain on a SoftGate: data, validated.

A routing domain (one per VPC, one per isolated network) is a network namespace on the
SoftGate. This module is the data the service sends for it: guest networks, source NAT,
static NAT, port forwards, firewall rules, VPC ACLs, load balancers. `from_json` parses
the service's JSON and rejects, with one line naming the field, anything that is not
exactly what it should be. Every value that later reaches nft text is parsed into a
typed value here (addresses by ipaddress, ports as ints, names by a strict regex), so
the renderer never has to quote or escape tenant data.

Semantics follow CloudStack's virtual router:
- isolated network: ingress to its public IPs is denied unless a firewall rule allows
  it; egress follows the offering's default policy and the egress rules invert it;
- VPC: no firewall on public IPs; each tier's ACL (items by number, first match wins,
  terminal deny) governs traffic into the tier (ingress) and out of it (egress);
- ROUTED mode: no NAT at all; ingress firewall rules name guest destinations.
The JSON shape is documented by `RoutingDomain.from_json` and the tests.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, cast

from agent.state_fields import FieldError, boolean, integer, items, obj, show, string

IPv4 = ipaddress.IPv4Address
Net4 = ipaddress.IPv4Network
Net6 = ipaddress.IPv6Network
Protocol = Literal["tcp", "udp", "icmp", "all"]
PortProtocol = Literal["tcp", "udp"]
Direction = Literal["ingress", "egress"]
Algorithm = Literal["roundrobin", "leastconn", "source"]

PROTOCOLS: Final = ("tcp", "udp", "icmp", "all")
PORT_PROTOCOLS: Final = ("tcp", "udp")
ALGORITHMS: Final = ("roundrobin", "leastconn", "source")
# CloudStack ids are numbers or UUIDs. No '_': names derived from ids map '-' to '_'
# (nft identifiers may not hold '-'), which stays one-to-one only without '_'.
_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}")
_IFNAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
# Plain dotted quad (optionally /len): ipaddress alone would accept more spellings.
_V4_TEXT_RE: Final = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?")
# Hex groups and colons with a length: no zone index ("%eth0"), no dotted quad tail.
_V6_NET_TEXT_RE: Final = re.compile(r"[0-9A-Fa-f:]{2,39}/[0-9]{1,3}")
MAX_WEIGHT: Final = 1000
ANY_NET: Final = Net4("0.0.0.0/0")


# Raised by the field parsers of agent.state_fields, and by the checks here.
StateError = FieldError


def parse_id(value: object, field: str) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _ID_RE.fullmatch(text):
        raise StateError(f"{field}: not a valid id: {show(value)}")
    return text


def parse_ifname(value: object, field: str) -> str:
    text = string(value, field)
    if not _IFNAME_RE.fullmatch(text):
        raise StateError(f"{field}: not a valid interface name: {show(value)}")
    return text


def parse_ip(value: object, field: str) -> IPv4:
    text = string(value, field)
    if not _V4_TEXT_RE.fullmatch(text) or "/" in text:
        raise StateError(f"{field}: not an IPv4 address: {show(value)}")
    try:
        return IPv4(text)
    except ValueError as exc:
        raise StateError(f"{field}: not an IPv4 address: {show(value)}") from exc


def parse_cidr(value: object, field: str) -> Net4:
    text = string(value, field)
    if not _V4_TEXT_RE.fullmatch(text):
        raise StateError(f"{field}: not an IPv4 CIDR: {show(value)}")
    try:
        return Net4(text, strict=True)
    except ValueError as exc:
        raise StateError(f"{field}: not an IPv4 CIDR with host bits clear: {show(value)}") \
            from exc


def parse_cidr6(value: object, field: str) -> Net6:
    """A guest IPv6 prefix: global or unique-local unicast, host bits clear."""
    text = string(value, field)
    if not _V6_NET_TEXT_RE.fullmatch(text):
        raise StateError(f"{field}: not an IPv6 CIDR: {show(value)}")
    try:
        net = Net6(text, strict=True)
    except ValueError as exc:
        raise StateError(f"{field}: not an IPv6 CIDR with host bits clear: {show(value)}") \
            from exc
    # Link-local never crosses the router, multicast is no subnet, and a /0 (or ::, ::1)
    # in the guest prefix set would let the firewall treat the world as a guest.
    if (net.prefixlen == 0 or net.is_multicast or net.is_link_local or net.is_loopback
            or net.is_unspecified or net.is_site_local
            or net.network_address.ipv4_mapped is not None):
        raise StateError(f"{field}: not a unicast guest prefix: {show(value)}")
    return net


def parse_port(value: object, field: str) -> int:
    return integer(value, field, 1, 65535)


def _choice(value: object, field: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise StateError(f"{field}: expected one of {', '.join(choices)}, got {show(value)}")
    return value


def _cidrs(data: Mapping[str, Any], key: str, field: str) -> tuple[Net4, ...]:
    """A CIDR list; absent or empty means anywhere (CloudStack's 0.0.0.0/0)."""
    values = items(data.get(key, []), f"{field}.{key}")
    parsed = [parse_cidr(item, f"{field}.{key}[{i}]") for i, item in enumerate(values)]
    return tuple(sorted(set(parsed))) or (ANY_NET,)


_T = TypeVar("_T")


def _many(data: Mapping[str, Any], key: str, field: str,
          parse: Callable[[object, str], _T]) -> tuple[_T, ...]:
    values = items(data.get(key, []), f"{field}.{key}")
    return tuple(parse(item, f"{field}.{key}[{i}]") for i, item in enumerate(values))


# ---------------------------------------------------------------- objects

@dataclass(frozen=True, order=True)
class PortRange:
    start: int
    end: int

    @staticmethod
    def parse(value: object, field: str) -> PortRange:
        """A port (80), a range ('1000-1010' as CloudStack sends it) or [start, end]."""
        if isinstance(value, int) and not isinstance(value, bool):
            port = parse_port(value, field)
            return PortRange(port, port)
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,5}(-[0-9]{1,5})?", value):
            low, _, high = value.partition("-")
            return PortRange.of(int(low), int(high or low), field)
        if isinstance(value, list) and len(value) == 2:
            return PortRange.of(parse_port(value[0], field), parse_port(value[1], field), field)
        raise StateError(f"{field}: expected a port or a 'start-end' range, got {show(value)}")

    @staticmethod
    def of(start: int, end: int, field: str) -> PortRange:
        parse_port(start, field)
        parse_port(end, field)
        if start > end:
            raise StateError(f"{field}: port range {start}-{end} runs backwards")
        return PortRange(start, end)

    @property
    def size(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class Match:
    """What a firewall rule or an ACL item matches besides addresses."""

    protocol: Protocol | int  # int: an IP protocol number (ACL items only)
    ports: PortRange | None  # tcp/udp only; None = every port
    icmp_type: int | None  # icmp only; None = any type
    icmp_code: int | None

    @staticmethod
    def parse(data: Mapping[str, Any], field: str, numeric_ok: bool) -> Match:
        raw = data.get("protocol", "all")
        protocol: Protocol | int
        if numeric_ok and isinstance(raw, int) and not isinstance(raw, bool):
            protocol = integer(raw, f"{field}.protocol", 0, 255)
        else:
            protocol = cast(Protocol, _choice(raw, f"{field}.protocol", PROTOCOLS))
        ports = _ports(data, field) if protocol in PORT_PROTOCOLS else None
        if ports is None and ("port_start" in data or "port_end" in data):
            raise StateError(f"{field}: ports need protocol tcp or udp")
        icmp_type = icmp_code = None
        if protocol == "icmp":
            # CloudStack's -1 means "any".
            icmp_type = _icmp(data.get("icmp_type", -1), f"{field}.icmp_type")
            icmp_code = _icmp(data.get("icmp_code", -1), f"{field}.icmp_code")
        elif "icmp_type" in data or "icmp_code" in data:
            raise StateError(f"{field}: icmp_type/icmp_code need protocol icmp")
        return Match(protocol, ports, icmp_type, icmp_code)


def _ports(data: Mapping[str, Any], field: str) -> PortRange | None:
    if "port_start" not in data and "port_end" not in data:
        return None
    start = parse_port(data.get("port_start", data.get("port_end")), f"{field}.port_start")
    end = parse_port(data.get("port_end", start), f"{field}.port_end")
    return PortRange.of(start, end, field)


def _icmp(value: object, field: str) -> int | None:
    number = integer(value, field, -1, 255)
    return None if number == -1 else number


_MATCH_KEYS: Final = {"protocol", "port_start", "port_end", "icmp_type", "icmp_code"}


@dataclass(frozen=True)
class FirewallRule:
    """An ingress rule allows traffic to `destinations` (a public IP in NAT mode, guest
    CIDRs in ROUTED mode); an egress rule of a network inverts its default policy."""

    id: str
    direction: Direction
    network: str  # the guest network it belongs to
    match: Match
    sources: tuple[Net4, ...]
    destinations: tuple[Net4, ...]

    @staticmethod
    def parse(value: object, field: str) -> FirewallRule:
        data = obj(value, field)
        obj(data, field, _MATCH_KEYS | {"id", "direction", "network", "public_ip",
                                                "source_cidrs", "dest_cidrs"})
        direction = cast(Direction, _choice(data.get("direction"), f"{field}.direction",
                                            ("ingress", "egress")))
        destinations = _cidrs(data, "dest_cidrs", field)
        if "public_ip" in data:
            if direction != "ingress" or "dest_cidrs" in data:
                raise StateError(f"{field}: public_ip is for ingress rules without dest_cidrs")
            destinations = (Net4(parse_ip(data["public_ip"], f"{field}.public_ip")),)
        return FirewallRule(parse_id(data.get("id"), f"{field}.id"), direction,
                            parse_id(data.get("network"), f"{field}.network"),
                            Match.parse(data, field, numeric_ok=False),
                            _cidrs(data, "source_cidrs", field), destinations)


@dataclass(frozen=True)
class AclItem:
    """One VPC ACL item. `cidrs` are sources for ingress and destinations for egress,
    as in CloudStack's virtual router."""

    number: int
    action: Literal["allow", "deny"]
    direction: Direction
    match: Match
    cidrs: tuple[Net4, ...]

    @staticmethod
    def parse(value: object, field: str) -> AclItem:
        data = obj(value, field)
        obj(data, field, _MATCH_KEYS | {"number", "action", "direction", "cidrs"})
        return AclItem(
            integer(data.get("number"), f"{field}.number", 1, 2**31 - 1),
            cast(Literal["allow", "deny"],
                 _choice(data.get("action"), f"{field}.action", ("allow", "deny"))),
            cast(Direction, _choice(data.get("direction"), f"{field}.direction",
                                    ("ingress", "egress"))),
            Match.parse(data, field, numeric_ok=True),
            _cidrs(data, "cidrs", field))


@dataclass(frozen=True)
class GuestNetwork:
    id: str
    cidr: Net4
    gateway: IPv4
    egress_default_allow: bool
    # None: not ACL-controlled (isolated network). A tuple, even empty: a VPC tier whose
    # ACL ends in a terminal deny. Sorted by number.
    acl: tuple[AclItem, ...] | None
    source_nat_ip: IPv4 | None  # overrides the domain's
    # The network's IPv6 prefix, None without IPv6. Routed, never NATed; the IPv6
    # firewall is the default policy only (see netfilter_compile: firewall rules and
    # ACL items are IPv4 in this contract).
    ipv6_cidr: Net6 | None = None

    @staticmethod
    def parse(value: object, field: str) -> GuestNetwork:
        data = obj(value, field)
        obj(data, field, {"id", "cidr", "gateway", "egress_default_allow", "acl",
                                  "source_nat_ip", "ipv6_cidr"})
        cidr = parse_cidr(data.get("cidr"), f"{field}.cidr")
        gateway = parse_ip(data.get("gateway"), f"{field}.gateway")
        if gateway not in cidr:
            raise StateError(f"{field}.gateway: {gateway} is outside {cidr}")
        acl = None
        if data.get("acl") is not None:
            acl = tuple(sorted(_many(data, "acl", field, AclItem.parse),
                               key=lambda item: item.number))
            numbers = [item.number for item in acl]
            if len(set(numbers)) != len(numbers):
                raise StateError(f"{field}.acl: two items share a number")
        snat, cidr6 = data.get("source_nat_ip"), data.get("ipv6_cidr")
        return GuestNetwork(
            parse_id(data.get("id"), f"{field}.id"), cidr, gateway,
            boolean(data.get("egress_default_allow", True), f"{field}.egress_default_allow"),
            acl, None if snat is None else parse_ip(snat, f"{field}.source_nat_ip"),
            None if cidr6 is None else parse_cidr6(cidr6, f"{field}.ipv6_cidr"))


@dataclass(frozen=True)
class StaticNat:
    public_ip: IPv4
    private_ip: IPv4

    @staticmethod
    def parse(value: object, field: str) -> StaticNat:
        data = obj(value, field)
        obj(data, field, {"public_ip", "private_ip"})
        return StaticNat(parse_ip(data.get("public_ip"), f"{field}.public_ip"),
                         parse_ip(data.get("private_ip"), f"{field}.private_ip"))


@dataclass(frozen=True)
class PortForward:
    id: str
    public_ip: IPv4
    protocol: PortProtocol
    public_ports: PortRange
    private_ip: IPv4
    private_ports: PortRange

    @staticmethod
    def parse(value: object, field: str) -> PortForward:
        data = obj(value, field)
        obj(data, field, {"id", "public_ip", "protocol", "public_port", "private_ip",
                                  "private_port"})
        public = PortRange.parse(data.get("public_port"), f"{field}.public_port")
        private = PortRange.parse(data.get("private_port", data.get("public_port")),
                                  f"{field}.private_port")
        if public.size != private.size:
            raise StateError(f"{field}: public and private port ranges differ in size")
        return PortForward(
            parse_id(data.get("id"), f"{field}.id"),
            parse_ip(data.get("public_ip"), f"{field}.public_ip"),
            cast(PortProtocol, _choice(data.get("protocol"), f"{field}.protocol",
                                       PORT_PROTOCOLS)),
            public, parse_ip(data.get("private_ip"), f"{field}.private_ip"), private)


@dataclass(frozen=True, order=True)
class Backend:
    ip: IPv4
    port: int
    alive: bool = True  # set by health checks; dead backends get no new connections
    weight: int = 1  # share of new connections; the agent sets it for leastconn

    @staticmethod
    def parse(value: object, field: str) -> Backend:
        data = obj(value, field)
        obj(data, field, {"ip", "port", "alive", "weight"})
        return Backend(parse_ip(data.get("ip"), f"{field}.ip"),
                       parse_port(data.get("port"), f"{field}.port"),
                       boolean(data.get("alive", True), f"{field}.alive"),
                       integer(data.get("weight", 1), f"{field}.weight", 1, MAX_WEIGHT))


@dataclass(frozen=True)
class LoadBalancer:
    id: str
    public_ip: IPv4
    public_port: int
    protocol: PortProtocol
    algorithm: Algorithm
    backends: tuple[Backend, ...]  # sorted, unique by (ip, port)

    @staticmethod
    def parse(value: object, field: str) -> LoadBalancer:
        data = obj(value, field)
        obj(data, field, {"id", "public_ip", "public_port", "protocol", "algorithm",
                                  "backends"})
        backends = tuple(sorted(_many(data, "backends", field, Backend.parse)))
        if len({(b.ip, b.port) for b in backends}) != len(backends):
            raise StateError(f"{field}.backends: a backend is listed twice")
        return LoadBalancer(
            parse_id(data.get("id"), f"{field}.id"),
            parse_ip(data.get("public_ip"), f"{field}.public_ip"),
            parse_port(data.get("public_port"), f"{field}.public_port"),
            cast(PortProtocol, _choice(data.get("protocol", "tcp"), f"{field}.protocol",
                                       PORT_PROTOCOLS)),
            cast(Algorithm, _choice(data.get("algorithm", "roundrobin"),
                                    f"{field}.algorithm", ALGORITHMS)),
            backends)


@dataclass(frozen=True)
class RoutingDomain:
    """Everything netfilter does in one routing-domain namespace."""

    id: str
    kind: Literal["isolated", "vpc"]
    mode: Literal["natted", "routed"]
    public_interface: str
    networks: tuple[GuestNetwork, ...]
    source_nat_ip: IPv4 | None
    static_nats: tuple[StaticNat, ...]
    port_forwards: tuple[PortForward, ...]
    firewall_rules: tuple[FirewallRule, ...]
    load_balancers: tuple[LoadBalancer, ...]

    @property
    def natted(self) -> bool:
        return self.mode == "natted"

    @staticmethod
    def from_json(value: object) -> RoutingDomain:
        """Parse and validate the service's JSON for one routing domain."""
        data = obj(value, "domain")
        obj(data, "domain", {"id", "kind", "mode", "public_interface", "networks",
                                     "source_nat_ip", "static_nats", "port_forwards",
                                     "firewall_rules", "load_balancers"})
        snat = data.get("source_nat_ip")
        domain = RoutingDomain(
            parse_id(data.get("id"), "domain.id"),
            cast(Literal["isolated", "vpc"],
                 _choice(data.get("kind"), "domain.kind", ("isolated", "vpc"))),
            cast(Literal["natted", "routed"],
                 _choice(data.get("mode", "natted"), "domain.mode", ("natted", "routed"))),
            parse_ifname(data.get("public_interface"), "domain.public_interface"),
            _many(data, "networks", "domain", GuestNetwork.parse),
            None if snat is None else parse_ip(snat, "domain.source_nat_ip"),
            _many(data, "static_nats", "domain", StaticNat.parse),
            _many(data, "port_forwards", "domain", PortForward.parse),
            _many(data, "firewall_rules", "domain", FirewallRule.parse),
            _many(data, "load_balancers", "domain", LoadBalancer.parse))
        check_domain(domain)
        return domain


def empty_domain(domain_id: str, public_interface: str) -> RoutingDomain:
    """A domain with nothing in it: the tables exist and are empty."""
    return RoutingDomain(domain_id, "isolated", "natted", public_interface, (), None, (), (),
                         (), ())


# ---------------------------------------------------------------- cross-field checks

def check_domain(domain: RoutingDomain) -> None:
    """Rules that span objects: what CloudStack itself would refuse, and what would make
    two set elements collide."""
    _check_networks(domain)
    _unique([n.id for n in domain.networks], "domain.networks: network id")
    _unique([p.id for p in domain.port_forwards], "domain.port_forwards: id")
    _unique([r.id for r in domain.firewall_rules], "domain.firewall_rules: id")
    _unique([lb.id for lb in domain.load_balancers], "domain.load_balancers: id")
    _unique([s.public_ip for s in domain.static_nats], "domain.static_nats: public_ip")
    _unique([s.private_ip for s in domain.static_nats], "domain.static_nats: private_ip")
    _check_nat_mode(domain)
    _check_listeners(domain)
    _check_firewall(domain)


def _check_firewall(domain: RoutingDomain) -> None:
    if domain.kind == "vpc" and domain.firewall_rules:
        raise StateError("domain.firewall_rules: a VPC is governed by its tiers' ACLs")
    network_ids = {n.id for n in domain.networks}
    for rule in domain.firewall_rules:
        if rule.network not in network_ids:
            raise StateError(f"domain.firewall_rules: rule {rule.id} names unknown network "
                             f"{rule.network}")
        if domain.natted and rule.direction == "ingress" and rule.destinations == (ANY_NET,):
            raise StateError(f"domain.firewall_rules: ingress rule {rule.id} needs public_ip")


def _unique(values: list[Any], what: str) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise StateError(f"{what} {value} appears twice")
        seen.add(value)


def _check_networks(domain: RoutingDomain) -> None:
    if domain.kind == "isolated" and len(domain.networks) > 1:
        raise StateError("domain.networks: an isolated domain has one network")
    for network in domain.networks:
        if (network.acl is not None) != (domain.kind == "vpc"):
            raise StateError(f"domain.networks: network {network.id}: acl is for VPC tiers "
                             "and required there")
    ordered = sorted(domain.networks, key=lambda n: n.cidr)
    for first, second in itertools.pairwise(ordered):
        if first.cidr.overlaps(second.cidr):
            raise StateError(f"domain.networks: {first.cidr} overlaps {second.cidr}")
    # Overlapping prefixes would also be refused by the kernel's interval sets.
    prefixes = sorted(n.ipv6_cidr for n in domain.networks if n.ipv6_cidr is not None)
    for first6, second6 in itertools.pairwise(prefixes):
        if first6.overlaps(second6):
            raise StateError(f"domain.networks: {first6} overlaps {second6}")


def _check_nat_mode(domain: RoutingDomain) -> None:
    if domain.natted:
        return
    has_nat = (domain.source_nat_ip or domain.static_nats or domain.port_forwards
               or domain.load_balancers or any(n.source_nat_ip for n in domain.networks))
    if has_nat:
        raise StateError("domain.mode: a routed domain has no NAT, port forwards or "
                         "load balancers")


def _check_listeners(domain: RoutingDomain) -> None:
    """A public (ip, proto, port) belongs to one port forward or load balancer, and a
    static NAT IP to nothing else: the kernel would otherwise pick one at random."""
    static_ips = {s.public_ip for s in domain.static_nats}
    taken: dict[tuple[IPv4, str], list[tuple[PortRange, str]]] = {}
    listeners = [(p.public_ip, p.protocol, p.public_ports, f"port forward {p.id}")
                 for p in domain.port_forwards]
    listeners += [(lb.public_ip, lb.protocol, PortRange(lb.public_port, lb.public_port),
                   f"load balancer {lb.id}") for lb in domain.load_balancers]
    for ip, proto, ports, name in listeners:
        if ip in static_ips:
            raise StateError(f"domain: {name} uses {ip}, which has static NAT")
        for other_ports, other in taken.setdefault((ip, proto), []):
            if ports.start <= other_ports.end and other_ports.start <= ports.end:
                raise StateError(f"domain: {name} overlaps {other} on {ip} {proto}")
        taken[(ip, proto)].append((ports, name))
