"""Desired links of a SoftGate (the `links` section of softgate.json): data, validated.

docs/softgate-state.md is the contract. Per routing domain: a network namespace
`vxr<N>`, an uplink veth pair (`vxp<N>` in the SoftGate's namespace, `vxpub` in the
domain), an optional L3VNI (`vxv<VNI>` VXLAN + `vxb<VNI>` bridge) and the guest segments
(an L2VNI as VXLAN + bridge, or a transport VLAN as bridge `vxl<VLAN>`), plus the prefixes
the SoftGate routes into the domain over the uplink. SoftGate-wide: the VTEP address,
the guests' gateway MAC and the public pools held as blackholes.

Every name is checked against the contract's pattern and against the number it is made
of (`vxb<VNI>` must carry that VNI): garbage collection deletes by these names, so a
name the agent accepts is a name it may later delete. Errors are one line naming the
field (`domains[3].segments[0].vni: ...`), as LinksStateError.

`LinksState.from_json` is strict (the first bad field raises). `parse_links` is the
lenient form for a full resync: a bad domain is left out and reported, and its namespace
name goes to `LinksState.kept` so the applier leaves whatever the kernel has for it alone
(a typo in one tenant's record must not tear that tenant's network down).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from agent.state_fields import FieldError, integer, items, obj, show, string
from agent.status import ObjectStatus

IPv4Interface = ipaddress.IPv4Interface
IPv6Interface = ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_VNI: Final = 16_777_215
MAX_VLAN: Final = 4094
NETNS_RE: Final = re.compile(r"vxr([0-9]{1,8})")
UPLINK_ROOT_RE: Final = re.compile(r"vxp([0-9]{1,8})")
UPLINK_DOMAIN: Final = "vxpub"
BRIDGE_RE: Final = re.compile(r"vxb([0-9]{1,8})")
VXLAN_RE: Final = re.compile(r"vxv([0-9]{1,8})")
VLAN_BRIDGE_RE: Final = re.compile(r"vxl([0-9]{1,4})")
_NETWORK_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_MAC_RE: Final = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_TOP_FIELDS: Final = frozenset({"vtep_address", "gateway_mac", "blackholes", "domains"})
_DOMAIN_FIELDS: Final = frozenset({"netns", "uplink", "l3vni", "routes", "routes6",
                                   "segments", "sync"})
_SYNC_FIELDS: Final = frozenset({"address", "peer"})
# Every conntrack sync address lies here (the service's softgate_sync.py allots them):
# link-local, so no tenant network holds one; every domain's firewall takes the sync
# only from here (agent.netfilter_compile).
SYNC_NET: Final = ipaddress.IPv4Network("169.254.252.0/24")
_UPLINK_FIELDS: Final = frozenset({"root", "domain"})
_L3VNI_FIELDS: Final = frozenset({"vni", "bridge", "vxlan"})
_SEGMENT_FIELDS: Final = frozenset({"network", "bridge", "vxlan", "vni", "vlan", "gateway",
                                    "gateway6"})

T = TypeVar("T")
N = TypeVar("N", ipaddress.IPv4Network, ipaddress.IPv6Network)


# Raised by the field parsers of agent.state_fields, and by the checks here.
LinksStateError = FieldError



@dataclass(frozen=True)
class Uplink:
    root: str  # vxp<N>, in the SoftGate's namespace
    domain: str = UPLINK_DOMAIN  # in the domain's namespace


@dataclass(frozen=True)
class L3Vni:
    vni: int
    bridge: str
    vxlan: str


@dataclass(frozen=True)
class Segment:
    network: str  # the guest network's id
    bridge: str  # vxb<VNI> or vxl<VLAN>
    gateway: IPv4Interface  # address/prefix on the bridge
    vni: int | None = None  # an L2VNI segment ...
    vxlan: str | None = None
    vlan: int | None = None  # ... or a transport VLAN (VLAN hand-off site)
    gateway6: IPv6Interface | None = None


@dataclass(frozen=True)
class Sync:
    """A domain's conntrack sync: this SoftGate's address (a /32 on the L3VNI bridge,
    announced by FRR into the VRF) and the peer SoftGate's."""

    address: ipaddress.IPv4Address
    peer: ipaddress.IPv4Address

    @property
    def interface_address(self) -> IPv4Interface:
        return IPv4Interface(f"{self.address}/32")


@dataclass(frozen=True)
class Domain:
    netns: str
    uplink: Uplink
    l3vni: L3Vni | None = None  # None on a VLAN hand-off site
    routes: tuple[ipaddress.IPv4Network, ...] = ()
    routes6: tuple[ipaddress.IPv6Network, ...] = ()
    segments: tuple[Segment, ...] = ()
    # Conntrack sync with the peer SoftGate (agent.conntrackd); None without a peer.
    sync: Sync | None = None


@dataclass(frozen=True)
class LinksState:
    vtep_address: ipaddress.IPv4Address | None  # None only when no VXLAN is wanted
    gateway_mac: str
    blackholes: tuple[Network, ...] = ()
    domains: tuple[Domain, ...] = ()  # sorted by netns
    kept: tuple[str, ...] = ()  # namespaces of domains parse_links left out: hands off

    @staticmethod
    def from_json(data: object) -> LinksState:
        """The whole state, or LinksStateError for the first bad field."""
        body, items = _top(data)
        registry = _Registry(body)
        for index, item in enumerate(items):
            where = f"links.domains[{index}]"
            registry.add(registry.check(parse_domain(item, where), where))
        return registry.state(())

    def domain(self, netns: str) -> Domain | None:
        return next((d for d in self.domains if d.netns == netns), None)

    @property
    def router_mac(self) -> str | None:
        """The MAC of every L3VNI bridge; None without a VTEP (then there is no L3VNI)."""
        return None if self.vtep_address is None else router_mac(self.vtep_address)


def router_mac(vtep: ipaddress.IPv4Address) -> str:
    """02:00 and the VTEP address's four bytes (10.255.2.1: 02:00:0a:ff:02:01): FRR
    advertises the L3VNI bridge's MAC as the EVPN router MAC, and a bridge left to
    itself takes the lowest MAC of its ports, which changes when a port is remade.
    Locally administered and unicast (02), unique per VTEP, and not the guests' gateway
    MAC 02:00:5e:00:00:01 unless the VTEP is 94.0.0.1."""
    return "02:00:" + ":".join(f"{byte:02x}" for byte in vtep.packed)


def parse_links(data: object) -> tuple[LinksState, tuple[ObjectStatus, ...]]:
    """Lenient: a bad domain (or one clashing with an earlier one) is left out and
    reported; only a bad top level (VTEP address, MAC, blackholes) raises."""
    body, items = _top(data)
    registry = _Registry(body)
    kept: list[str] = []
    problems: list[ObjectStatus] = []
    for index, item in enumerate(items):
        where = f"links.domains[{index}]"
        netns = item.get("netns") if isinstance(item, dict) else None
        name = netns if isinstance(netns, str) and NETNS_RE.fullmatch(netns) else None
        try:
            registry.add(registry.check(parse_domain(item, where), where))
        except LinksStateError as exc:
            problems.append(ObjectStatus("domain", name or where, "error", str(exc)))
            if name is not None:
                kept.append(name)
    return registry.state(tuple(kept)), tuple(problems)


def _top(data: object) -> tuple[Mapping[str, Any], list[Any]]:
    body = obj(data, "links", _TOP_FIELDS)
    return body, items(body.get("domains") or [], "links.domains")


def _uses_vxlan(domain: Domain) -> bool:
    return domain.l3vni is not None or any(s.vni is not None for s in domain.segments)


def _net_key(net: Network) -> tuple[int, int, int]:
    return net.version, int(net.network_address), net.prefixlen


class _Registry:
    """The SoftGate-wide fields, and what earlier domains already claim: a namespace, a
    VNI or VLAN (one VXLAN socket per VNI on the SoftGate), a guest network id, a routed
    prefix (the blackholes claim theirs first)."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.vtep = _opt(body, "vtep_address", "links", parse_ipv4)
        self.gateway_mac = _req(body, "gateway_mac", "links", parse_mac)
        blackholes = _many(body, "blackholes", "links", parse_network)
        self.blackholes = tuple(sorted(set(blackholes), key=_net_key))
        self.domains: dict[str, Domain] = {}
        self.vnis: dict[int, str] = {}
        self.vlans: dict[int, str] = {}
        self.networks: dict[str, str] = {}
        self.prefixes: dict[Network, str] = dict.fromkeys(blackholes, "links.blackholes")

    def check(self, domain: Domain, where: str) -> Domain:
        if domain.netns in self.domains:
            raise LinksStateError(f"{where}.netns: {domain.netns} is listed twice")
        if self.vtep is None and _uses_vxlan(domain):
            raise LinksStateError(f"{where}: has a VXLAN but links.vtep_address is null")
        for what, key, owners in self._claims(domain):
            if key in owners:
                raise LinksStateError(f"{where}: {what} {key} is already used by "
                                      f"{owners[key]}")
        return domain

    def add(self, domain: Domain) -> None:
        self.domains[domain.netns] = domain
        for _, key, owners in self._claims(domain):
            owners[key] = domain.netns

    def _claims(self, domain: Domain) -> list[tuple[str, object, dict[Any, str]]]:
        claims: list[tuple[str, object, dict[Any, str]]] = []
        if domain.l3vni is not None:
            claims.append(("VNI", domain.l3vni.vni, self.vnis))
        for segment in domain.segments:
            if segment.vni is not None:
                claims.append(("VNI", segment.vni, self.vnis))
            if segment.vlan is not None:
                claims.append(("VLAN", segment.vlan, self.vlans))
            claims.append(("network", segment.network, self.networks))
        claims += [("route", net, self.prefixes) for net in (*domain.routes, *domain.routes6)]
        return claims

    def state(self, kept: tuple[str, ...]) -> LinksState:
        return LinksState(
            vtep_address=self.vtep, gateway_mac=self.gateway_mac, blackholes=self.blackholes,
            domains=tuple(self.domains[name] for name in sorted(self.domains)),
            kept=tuple(sorted(set(kept) - set(self.domains))))


# ---------------------------------------------------------------- domains


def parse_domain(data: object, where: str) -> Domain:
    body = obj(data, where, _DOMAIN_FIELDS)
    netns = _req(body, "netns", where, _named(NETNS_RE, "vxr<number>"))
    number = netns[3:]
    uplink = _req(body, "uplink", where, lambda v, w: _uplink(v, w, number))
    l3vni = _opt(body, "l3vni", where, _l3vni)
    if l3vni is not None and str(l3vni.vni) != number:
        raise LinksStateError(f"{where}.netns: {netns} is not named after its L3VNI "
                              f"{l3vni.vni} (vxr{l3vni.vni})")
    routes = _many(body, "routes", where, _ipv4_network)
    routes6 = _many(body, "routes6", where, _ipv6_network)
    segments = _many(body, "segments", where, _segment)
    _check_segments(segments, l3vni, where)
    sync = _opt(body, "sync", where, _sync)
    if sync is not None and l3vni is None:
        raise LinksStateError(f"{where}.sync: the sync runs over the L3VNI, and this "
                              "domain has none")
    return Domain(netns=netns, uplink=uplink, l3vni=l3vni,
                  routes=_unique_sorted(routes, f"{where}.routes"),
                  routes6=_unique_sorted(routes6, f"{where}.routes6"),
                  segments=tuple(sorted(segments, key=lambda s: s.bridge)),
                  sync=sync)


def _uplink(data: object, where: str, number: str) -> Uplink:
    body = obj(data, where, _UPLINK_FIELDS)
    root = _req(body, "root", where, _named(UPLINK_ROOT_RE, "vxp<number>"))
    if root[3:] != number:
        raise LinksStateError(f"{where}.root: {root} does not match the domain's namespace "
                              f"(expected vxp{number})")
    domain = _req(body, "domain", where, string)
    if domain != UPLINK_DOMAIN:
        raise LinksStateError(f"{where}.domain: expected {UPLINK_DOMAIN!r}, got {show(domain)}")
    return Uplink(root, domain)


def _l3vni(data: object, where: str) -> L3Vni:
    body = obj(data, where, _L3VNI_FIELDS)
    vni = _req(body, "vni", where, parse_vni)
    return L3Vni(vni=vni,
                 bridge=_req(body, "bridge", where, _numbered(BRIDGE_RE, "vxb", vni)),
                 vxlan=_req(body, "vxlan", where, _numbered(VXLAN_RE, "vxv", vni)))


def _segment(data: object, where: str) -> Segment:
    body = obj(data, where, _SEGMENT_FIELDS)
    network = _req(body, "network", where, _named(_NETWORK_ID_RE, "a network id"))
    vni = _opt(body, "vni", where, parse_vni)
    vlan = _opt(body, "vlan", where, parse_vlan)
    if (vni is None) == (vlan is None):
        raise LinksStateError(f"{where}: give exactly one of vni and vlan")
    if vni is not None:
        bridge = _req(body, "bridge", where, _numbered(BRIDGE_RE, "vxb", vni))
        vxlan: str | None = _req(body, "vxlan", where, _numbered(VXLAN_RE, "vxv", vni))
    else:
        assert vlan is not None
        bridge = _req(body, "bridge", where, _numbered(VLAN_BRIDGE_RE, "vxl", vlan))
        if body.get("vxlan") is not None:
            raise LinksStateError(f"{where}.vxlan: must be null on a VLAN segment")
        vxlan = None
    return Segment(network=network, bridge=bridge, vni=vni, vxlan=vxlan, vlan=vlan,
                   gateway=_req(body, "gateway", where, _gateway4),
                   gateway6=_opt(body, "gateway6", where, _gateway6))


def _check_segments(segments: tuple[Segment, ...], l3vni: L3Vni | None, where: str) -> None:
    """One bridge per name and no two guest subnets overlapping in one routing table."""
    bridges = {l3vni.bridge: "the L3VNI"} if l3vni is not None else {}
    subnets: list[tuple[Network, str]] = []
    for index, segment in enumerate(segments):
        here = f"{where}.segments[{index}]"
        if segment.bridge in bridges:
            raise LinksStateError(f"{here}.bridge: {segment.bridge} is already used by "
                                  f"{bridges[segment.bridge]}")
        bridges[segment.bridge] = f"network {segment.network}"
        mine: list[Network] = [segment.gateway.network]
        if segment.gateway6 is not None:
            mine.append(segment.gateway6.network)
        for subnet in mine:
            other = next((owner for net, owner in subnets
                          if net.version == subnet.version and net.overlaps(subnet)), None)
            if other is not None:
                raise LinksStateError(f"{here}: {subnet} overlaps {other}'s subnet")
            subnets.append((subnet, f"network {segment.network}"))


def _unique_sorted(items: tuple[N, ...], where: str) -> tuple[N, ...]:
    if len(set(items)) != len(items):
        twice = next(item for item in items if items.count(item) > 1)
        raise LinksStateError(f"{where}: {twice} is listed twice")
    return tuple(sorted(items, key=_net_key))


# ---------------------------------------------------------------- field parsers


def _req(body: Mapping[str, Any], key: str, where: str,
         parse: Callable[[object, str], T]) -> T:
    if body.get(key) is None:
        raise LinksStateError(f"{where}.{key}: required")
    return parse(body[key], f"{where}.{key}")


def _opt(body: Mapping[str, Any], key: str, where: str,
         parse: Callable[[object, str], T]) -> T | None:
    value = body.get(key)
    return None if value is None else parse(value, f"{where}.{key}")


def _many(body: Mapping[str, Any], key: str, where: str,
          parse: Callable[[object, str], T]) -> tuple[T, ...]:
    values = items(body.get(key) or [], f"{where}.{key}")
    return tuple(parse(item, f"{where}.{key}[{i}]") for i, item in enumerate(values))


def _named(pattern: re.Pattern[str], what: str) -> Callable[[object, str], str]:
    def parse(value: object, where: str) -> str:
        text = string(value, where)
        if not pattern.fullmatch(text):
            raise LinksStateError(f"{where}: not {what}: {show(text)}")
        return text

    return parse


def _numbered(pattern: re.Pattern[str], prefix: str, number: int
              ) -> Callable[[object, str], str]:
    """A name that must be prefix+number exactly (`vxb5000001` for VNI 5000001)."""
    def parse(value: object, where: str) -> str:
        text = string(value, where)
        if not pattern.fullmatch(text) or text != f"{prefix}{number}":
            raise LinksStateError(f"{where}: expected {prefix}{number}, got {show(text)}")
        return text

    return parse


def parse_vni(value: object, where: str) -> int:
    return integer(value, where, 1, MAX_VNI)


def parse_vlan(value: object, where: str) -> int:
    return integer(value, where, 1, MAX_VLAN)


def parse_mac(value: object, where: str) -> str:
    text = string(value, where).lower()
    if not _MAC_RE.fullmatch(text):
        raise LinksStateError(f"{where}: not a MAC address: {show(value)}")
    if int(text[:2], 16) & 1 or text == "00:00:00:00:00:00":
        raise LinksStateError(f"{where}: not a unicast MAC address: {show(value)}")
    return text


def parse_ipv4(value: object, where: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(string(value, where))
    except ValueError:
        raise LinksStateError(f"{where}: not an IPv4 address: {show(value)}") from None


def parse_network(value: object, where: str) -> Network:
    try:
        return ipaddress.ip_network(string(value, where), strict=True)
    except ValueError:
        raise LinksStateError(f"{where}: not a CIDR with host bits clear: {show(value)}"
                              ) from None


def _ipv4_network(value: object, where: str) -> ipaddress.IPv4Network:
    network = parse_network(value, where)
    if not isinstance(network, ipaddress.IPv4Network):
        raise LinksStateError(f"{where}: not an IPv4 CIDR: {show(value)}")
    return network


def _ipv6_network(value: object, where: str) -> ipaddress.IPv6Network:
    network = parse_network(value, where)
    if not isinstance(network, ipaddress.IPv6Network):
        raise LinksStateError(f"{where}: not an IPv6 CIDR: {show(value)}")
    return network


def _sync(value: object, where: str) -> Sync:
    body = obj(value, where, _SYNC_FIELDS)
    address = _req(body, "address", where, _sync_ip)
    peer = _req(body, "peer", where, _sync_ip)
    if address == peer:
        raise LinksStateError(f"{where}: the peer's address is our own ({address})")
    return Sync(address, peer)


def _sync_ip(value: object, where: str) -> ipaddress.IPv4Address:
    address = parse_ipv4(value, where)
    if address not in SYNC_NET:
        raise LinksStateError(f"{where}: {address} is outside {SYNC_NET}")
    return address


def _gateway4(value: object, where: str) -> IPv4Interface:
    try:
        gateway = IPv4Interface(string(value, where))
    except ValueError:
        raise LinksStateError(f"{where}: not an IPv4 address/prefix: {show(value)}") from None
    net = gateway.network
    if net.prefixlen > 30 or gateway.ip in (net.network_address, net.broadcast_address):
        raise LinksStateError(f"{where}: {gateway} is not a host address of a /30 or larger")
    return gateway


def _gateway6(value: object, where: str) -> IPv6Interface:
    try:
        gateway = IPv6Interface(string(value, where))
    except ValueError:
        raise LinksStateError(f"{where}: not an IPv6 address/prefix: {show(value)}") from None
    if gateway.network.prefixlen > 126 or gateway.ip == gateway.network.network_address \
            or gateway.ip.is_link_local:
        raise LinksStateError(f"{where}: {gateway} is not a global host address")
    return gateway
