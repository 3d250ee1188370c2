"""What FRR on one device should do, as plain data: the input of the FRR renderer.

`compile_frr_intent` reads the desired state (zone, device, networks, VPCs, public IPs)
and decides, per role, which EVPN segments, routing domains and BGP sessions the device
has. Everything here is derived deterministically and sorted, so the same state always
renders the same text.

Route targets are explicit, `<zone rt_asn>:<vni>`, on every device: each device has its
own ASN (RFC 7938), and an explicit zone-wide RT keeps import and export independent of
them. Route distinguishers are left to FRR (`<router-id>:<index>`): an RD only has to be
unique per VTEP, and no explicit RD format fits a 24-bit VNI next to a 4-byte ASN.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service import tenancy
from provider_service.models import Device, DirectConnectPort, PublicIp, Zone
from provider_service.softgate_sync import SyncPair, sync_pair
from provider_service.sql import Sql

# Update-group coalescing delays every advertisement by this much; FRR's default of
# 1000 ms adds a second to every convergence (lab FINDINGS §3).
COALESCE_TIME_MS = 100
# Two extra hops: longer than any path through the fabric to the active SoftGate, so
# the choice never falls to router-id tie-breaks (docs/softgate-pair.md).
STANDBY_PREPEND = 2
# A SoftGate announces upstream (public pools, ROUTED CIDRs) only while it has a route
# learned on a fabric port: FRR conditional advertisement. Otherwise an upstream session
# that comes back before the fabric one, or a fabric uplink lost while the WAN stays up,
# draws ingress the SoftGate cannot deliver. FRR 8.4 checks the condition on a timer,
# not on change; 5 s is the least it accepts. A (re)established upstream session gets
# the routes before the first check (FRR keeps the condition's last result across the
# session), so until then they carry this many extra prepends: longer than the standby's
# path, upstream keeps using the partner. (docs/softgate-pair.md, "Fail-back")
FABRIC_CONDITION_TIMER_S = 5
UNCONFIRMED_PREPEND = STANDBY_PREPEND + 1
VRF_PREFIX = "vxr"  # + L3VNI: at most 3 + 8 digits, inside the 15-character limit


def vrf_name(l3vni: int) -> str:
    """The VRF of a routing domain; also the kernel VRF device or network namespace."""
    return f"{VRF_PREFIX}{l3vni}"


@dataclass(frozen=True)
class EvpnSegment:
    """An L2VNI this device is a VTEP for."""

    vni: int
    route_target: str


@dataclass(frozen=True)
class TenantVrf:
    """A routing domain (VPC or isolated network) a SoftGate routes for."""

    name: str
    l3vni: int | None  # None: VLAN hand-off, the domain has no EVPN L3VNI
    route_target: str
    prefixes: tuple[str, ...]  # its guest CIDRs, announced as type-5 routes


@dataclass(frozen=True)
class UpstreamSession:
    address: str
    remote_asn: int
    bfd: bool


@dataclass(frozen=True)
class DirectConnect:
    interface: str
    vlan: int
    vni: int


@dataclass(frozen=True)
class FrrIntent:
    hostname: str
    role: str
    asn: int
    router_id: str
    fabric_interfaces: tuple[str, ...]
    vrf_backend: str  # "netns" or "vrf"
    # advertise-all-vni: the device is a VTEP (hypervisor, SoftGate, VTEP leaf)
    vtep: bool
    # Centralized gateway: advertise-default-gw, default route into each tenant VRF.
    gateway: bool
    segments: tuple[EvpnSegment, ...] = ()
    vrfs: tuple[TenantVrf, ...] = ()
    upstream_peers: tuple[UpstreamSession, ...] = ()
    # What the SoftGate announces upstream: public pools and ROUTED guest CIDRs.
    announced_prefixes: tuple[str, ...] = ()
    direct_connects: tuple[DirectConnect, ...] = ()
    coalesce_time_ms: int = COALESCE_TIME_MS
    # The standby SoftGate of a pair sends its EVPN and upstream routes out with its
    # ASN prepended this many times, so everyone prefers the active one while it is up.
    as_path_prepend: int = 0
    # Upstream announcements wait for the fabric (see FABRIC_CONDITION_TIMER_S).
    fabric_condition_timer_s: int = FABRIC_CONDITION_TIMER_S
    unconfirmed_prepend: int = UNCONFIRMED_PREPEND

    @property
    def upstream_needs_fabric(self) -> bool:
        """Whether the upstream announcements wait for the fabric: on a SoftGate that has
        both (on a VLAN-only site there is no fabric session to wait for)."""
        return bool(self.gateway and self.fabric_interfaces and self.upstream_peers
                    and self.announced_prefixes)

    @property
    def evpn(self) -> bool:
        """Whether BGP carries l2vpn evpn at all: not on a SoftGate of a VLAN-only site."""
        return bool(self.fabric_interfaces) and (self.role in ("spine", "leaf") or self.vtep)


def route_target(rt_asn: int, vni: int) -> str:
    return f"{rt_asn}:{vni}"


# --- compiling from the desired state ----------------------------------------------------


def compile_frr_intent(session: Session, device: Device) -> FrrIntent:
    zone = session.get(Zone, device.zone_id)
    assert zone is not None, "devices reference their zone"
    networks = tenancy.network_views(Sql(session), zone_id=device.zone_id)
    base = FrrIntent(
        hostname=device.name, role=device.role, asn=device.asn, router_id=device.loopback,
        fabric_interfaces=tuple(uplink.interface for uplink in device.uplinks),
        vrf_backend=device.vrf_backend, vtep=device.role in ("hypervisor", "softgate"),
        gateway=device.role == "softgate",
    )
    if device.role == "hypervisor":
        return replace(base, segments=_segments(networks, zone.rt_asn))
    if device.role == "softgate":
        return _softgate(session, base, device, zone, networks)
    if device.role == "leaf" and device.vtep:
        return _vtep_leaf(session, base, device, networks, zone.rt_asn)
    return base


def _softgate(session: Session, base: FrrIntent, device: Device, zone: Zone,
              networks: list[tenancy.NetworkView]) -> FrrIntent:
    vpcs = tenancy.vpc_views(Sql(session), zone_id=zone.id)
    return replace(
        base,
        segments=_segments(networks, zone.rt_asn),
        vrfs=_tenant_vrfs(networks, vpcs, zone.rt_asn, sync_pair(session, device)),
        upstream_peers=tuple(UpstreamSession(peer.address, peer.remote_asn, peer.bfd)
                             for peer in device.upstream_peers),
        announced_prefixes=_announced(session, zone.id, networks),
        as_path_prepend=STANDBY_PREPEND if device.standby else 0,
    )


def _vtep_leaf(session: Session, base: FrrIntent, device: Device,
               networks: list[tenancy.NetworkView], rt_asn: int) -> FrrIntent:
    ports = session.scalars(
        select(DirectConnectPort).where(DirectConnectPort.device_name == device.name)
    ).all()
    by_id = {network.id: network for network in networks}
    connects = sorted(
        (DirectConnect(port.interface, port.vlan, by_id[port.network_id].segment_id)
         for port in ports
         if port.network_id in by_id and by_id[port.network_id].segment_kind == "vni"),
        key=lambda c: (c.interface, c.vlan),
    )
    vnis = sorted({connect.vni for connect in connects})
    return replace(base, vtep=True, direct_connects=tuple(connects),
                 segments=tuple(EvpnSegment(vni, route_target(rt_asn, vni)) for vni in vnis))


def _segments(networks: list[tenancy.NetworkView], rt_asn: int) -> tuple[EvpnSegment, ...]:
    vnis = sorted(n.segment_id for n in networks if n.segment_kind == "vni")
    return tuple(EvpnSegment(vni, route_target(rt_asn, vni)) for vni in vnis)


def _tenant_vrfs(networks: list[tenancy.NetworkView], vpcs: list[tenancy.VpcView],
                 rt_asn: int, pair: SyncPair | None) -> tuple[TenantVrf, ...]:
    """One VRF per routing domain: every VPC (also before its first tier) and every
    isolated network. With a peer SoftGate, each EVPN VRF also announces this one's
    conntrack sync address (softgate_sync.py), so the pair reaches each other there."""
    evpn = evpn_domains(networks, vpcs)
    prefixes: dict[int, list[str]] = {vpc.l3vni: [] for vpc in vpcs}
    for network in networks:
        prefixes.setdefault(network.l3vni, []).append(network.cidr)
    if pair is not None:
        for l3vni in (number for number, has_evpn in evpn.items() if has_evpn):
            prefixes.setdefault(l3vni, []).append(pair.prefix)
    return tuple(
        TenantVrf(name=vrf_name(l3vni), l3vni=l3vni if evpn[l3vni] else None,
                  route_target=route_target(rt_asn, l3vni),
                  prefixes=tuple(sorted(set(prefixes[l3vni]), key=prefix_key)))
        for l3vni in sorted(evpn)
    )


def evpn_domains(networks: list[tenancy.NetworkView],
                 vpcs: list[tenancy.VpcView]) -> dict[int, bool]:
    """Every routing domain's L3VNI, and whether the domain has it in EVPN (the SoftGate's
    links build the L3VNI device exactly when FRR configures it). A domain on a VLAN
    physical network has no L3VNI in EVPN."""
    # A VPC without tiers yet has no segment to say which kind of physical network it is
    # on, and an L3VNI with no L2VNI would carry nothing: it gets its VRF, no L3VNI.
    evpn: dict[int, bool] = {vpc.l3vni: False for vpc in vpcs}
    for network in networks:
        evpn[network.l3vni] = evpn.get(network.l3vni, False) or network.segment_kind == "vni"
    return evpn


def _announced(session: Session, zone_id: str,
               networks: list[tenancy.NetworkView]) -> tuple[str, ...]:
    routed = [network.cidr for network in networks if network.mode == "routed"]
    return tuple(sorted({*public_pools(session, zone_id), *routed}, key=prefix_key))


def public_pools(session: Session, zone_id: str) -> list[str]:
    """The zone's public ranges (every range an acquired public IP is in), sorted: what a
    SoftGate announces upstream and holds a blackhole route for."""
    pools = session.scalars(
        select(PublicIp.cidr).where(PublicIp.zone_id == zone_id).distinct()
    ).all()
    return sorted(pools, key=prefix_key)


def prefix_key(cidr: str) -> tuple[int, int, int]:
    network = ipaddress.ip_network(cidr, strict=False)
    return (network.version, int(network.network_address), network.prefixlen)
