"""The operator's side: zones, physical networks, number pools and the device inventory."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy import (
    false as sa_false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from provider_service.models.base import Base, Timestamped

# What a pool hands out, and the number space it lives in: L2 and L3 VNIs share one
# space per zone, so the database refuses the same VNI for a segment and a VRF.
POOL_SPACES = {"l2vni": "vni", "l3vni": "vni", "vlan": "vlan", "asn": "asn"}
ZONE_SCOPE = ""  # NumberPool.scope of zone-wide pools (ASNs)

# The values the check constraints below allow; the API parses against these.
ISOLATION_METHODS = ("vxlan", "vlan")
DEVICE_ROLES = ("hypervisor", "leaf", "spine", "softgate")
# How a device realises a routing domain: a kernel VRF device (production hosts), or a
# network namespace that FRR's netns VRF backend (zebra -n) manages, for kernels built
# without CONFIG_NET_VRF. The names are the same either way.
VRF_BACKENDS = ("netns", "vrf")


class Zone(Timestamped, Base):
    __tablename__ = "zones"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # CloudStack zone id
    name: Mapped[str] = mapped_column(String(255), default="")
    # Route targets are <rt_asn>:<vni>; a 2-byte ASN leaves 4 bytes for any 24-bit VNI.
    rt_asn: Mapped[int] = mapped_column(Integer, default=65000)

    pools: Mapped[list[NumberPool]] = relationship(
        back_populates="zone", cascade="all, delete-orphan"
    )


class PhysicalNetwork(Timestamped, Base):
    __tablename__ = "physical_networks"
    __table_args__ = (CheckConstraint("isolation_method IN ('vxlan', 'vlan')", name="isolation"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # CloudStack id
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    isolation_method: Mapped[str] = mapped_column(String(8), default="vxlan")
    # As registered with CloudStack (registerExtension details). Only a digest of the
    # token is kept: enough to tell which token is in use, useless to a reader.
    service_url: Mapped[str] = mapped_column(String(255), default="")
    token_sha256: Mapped[str] = mapped_column(String(64), default="")

    zone: Mapped[Zone] = relationship(lazy="joined")


class NumberPool(Base):
    """A range of numbers to hand out, with a cursor: allocation is O(1).

    Fresh numbers come from the cursor first, released ones only when the range is used
    up, so a VNI that was just freed is not reused while devices may still hold stale
    state for it.
    """

    __tablename__ = "number_pools"
    __table_args__ = (
        UniqueConstraint("zone_id", "scope", "purpose"),
        CheckConstraint("first_number <= last_number", name="ordered"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id", ondelete="CASCADE"))
    # The physical network id for VNI/VLAN pools, ZONE_SCOPE for zone-wide ones.
    scope: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(8))
    first_number: Mapped[int] = mapped_column(BigInteger)
    last_number: Mapped[int] = mapped_column(BigInteger)
    cursor: Mapped[int] = mapped_column(BigInteger)  # next never-used candidate

    zone: Mapped[Zone] = relationship(back_populates="pools")


class ReleasedNumber(Base):
    """A number below the cursor that is free again."""

    __tablename__ = "released_numbers"

    pool_id: Mapped[int] = mapped_column(
        ForeignKey("number_pools.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class Allocation(Base):
    """One number in use. The unique constraint is the guarantee, under any concurrency."""

    __tablename__ = "allocations"
    __table_args__ = (UniqueConstraint("zone_id", "space", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id", ondelete="RESTRICT"))
    space: Mapped[str] = mapped_column(String(8))
    number: Mapped[int] = mapped_column(BigInteger)
    purpose: Mapped[str] = mapped_column(String(8))
    pool_id: Mapped[int] = mapped_column(ForeignKey("number_pools.id", ondelete="RESTRICT"))


class Device(Timestamped, Base):
    __tablename__ = "devices"
    __table_args__ = (
        CheckConstraint("role IN ('hypervisor', 'leaf', 'spine', 'softgate')", name="role"),
        CheckConstraint("vrf_backend IN ('netns', 'vrf')", name="vrf_backend"),
    )

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id", ondelete="RESTRICT"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    loopback: Mapped[str] = mapped_column(String(45))  # router-id, /32 on lo
    vtep_address: Mapped[str] = mapped_column(String(45))  # usually the loopback
    management_address: Mapped[str] = mapped_column(String(45), default="")
    # Either allocated from the zone's ASN pool, or fixed by the operator (RFC 7938
    # gives all spines of a tier one shared ASN, which a unique pool cannot express).
    asn_allocation_id: Mapped[int | None] = mapped_column(
        ForeignKey("allocations.id", ondelete="RESTRICT"), unique=True
    )
    fixed_asn: Mapped[int | None] = mapped_column(BigInteger)
    vrf_backend: Mapped[str] = mapped_column(String(8), default="netns")
    # A leaf that is also a VTEP: it maps VLANs on its ports to VNIs (direct connect).
    # Hypervisors and SoftGates are VTEPs by role.
    vtep: Mapped[bool] = mapped_column(Boolean, default=False)
    # A SoftGate of a pair that carries traffic only while its partner is down: its
    # routes go out with a longer AS path (docs/softgate-pair.md).
    standby: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    token_sha256: Mapped[str] = mapped_column(String(64), default="")
    # Bumped whenever any of the device's rendered artifacts changes.
    config_generation: Mapped[int] = mapped_column(BigInteger, default=0)

    asn_allocation: Mapped[Allocation | None] = relationship(lazy="joined")
    uplinks: Mapped[list[DeviceUplink]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="DeviceUplink.interface"
    )
    upstream_peers: Mapped[list[UpstreamPeer]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="UpstreamPeer.address"
    )

    @property
    def asn(self) -> int:
        if self.fixed_asn is not None:
            return self.fixed_asn
        assert self.asn_allocation is not None, "a device has a fixed or an allocated ASN"
        return self.asn_allocation.number


class DeviceUplink(Base):
    """A fabric port: BGP unnumbered runs on it; the peer is for documentation and checks."""

    __tablename__ = "device_uplinks"

    device_name: Mapped[str] = mapped_column(
        ForeignKey("devices.name", ondelete="CASCADE"), primary_key=True
    )
    interface: Mapped[str] = mapped_column(String(15), primary_key=True)
    peer_device: Mapped[str] = mapped_column(String(63), default="")
    peer_interface: Mapped[str] = mapped_column(String(15), default="")


class UpstreamPeer(Base):
    """An eBGP session from a SoftGate to a router of the provider's upstream network."""

    __tablename__ = "upstream_peers"

    device_name: Mapped[str] = mapped_column(
        ForeignKey("devices.name", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(45), primary_key=True)
    remote_asn: Mapped[int] = mapped_column(BigInteger)
    bfd: Mapped[bool] = mapped_column(Boolean, default=True)
