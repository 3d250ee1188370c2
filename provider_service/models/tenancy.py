"""The tenants' side: routing domains, VPCs, networks (isolated or VPC tier), public IPs.

Relationships load lazily: the hot paths read numbers with plain SQL (tenancy.py), and a
network or VPC loaded through the ORM can then be locked (FOR UPDATE) without outer
joins, which PostgreSQL refuses to lock.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from provider_service.models.base import Base, Timestamped
from provider_service.models.fabric import Allocation, PhysicalNetwork

# The values the check constraints below allow; the API parses against these.
NETWORK_MODES = ("natted", "routed")
GUEST_TYPES = ("isolated", "shared", "l2")


class RoutingDomain(Base):
    """An L3VNI and its VRF: one per VPC and one per isolated network."""

    __tablename__ = "routing_domains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id", ondelete="RESTRICT"))
    l3vni_allocation_id: Mapped[int] = mapped_column(
        ForeignKey("allocations.id", ondelete="RESTRICT"), unique=True
    )

    l3vni_allocation: Mapped[Allocation] = relationship()


class Vpc(Timestamped, Base):
    __tablename__ = "vpcs"
    __table_args__ = (CheckConstraint("mode IN ('natted', 'routed')", name="mode"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # CloudStack VPC id
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id", ondelete="RESTRICT"), index=True)
    physical_network_id: Mapped[str] = mapped_column(
        ForeignKey("physical_networks.id", ondelete="RESTRICT")
    )
    cidr: Mapped[str] = mapped_column(String(49))
    mode: Mapped[str] = mapped_column(String(8), default="natted")
    state: Mapped[str] = mapped_column(String(32), default="")
    routing_domain_id: Mapped[int] = mapped_column(
        ForeignKey("routing_domains.id", ondelete="RESTRICT"), unique=True
    )

    routing_domain: Mapped[RoutingDomain] = relationship()
    physical_network: Mapped[PhysicalNetwork] = relationship()
    tiers: Mapped[list[Network]] = relationship(back_populates="vpc", order_by="Network.id")


class Network(Timestamped, Base):
    """An isolated network or a VPC tier: one L2 segment (L2VNI or VLAN)."""

    __tablename__ = "networks"
    __table_args__ = (
        CheckConstraint("mode IN ('natted', 'routed')", name="mode"),
        CheckConstraint("guest_type IN ('isolated', 'shared', 'l2')", name="guest_type"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # CloudStack network id
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id", ondelete="RESTRICT"), index=True)
    physical_network_id: Mapped[str] = mapped_column(
        ForeignKey("physical_networks.id", ondelete="RESTRICT")
    )
    vpc_id: Mapped[str | None] = mapped_column(
        ForeignKey("vpcs.id", ondelete="RESTRICT"), index=True
    )
    guest_type: Mapped[str] = mapped_column(String(8), default="isolated")
    mode: Mapped[str] = mapped_column(String(8), default="natted")
    cidr: Mapped[str] = mapped_column(String(49))
    gateway: Mapped[str] = mapped_column(String(45))
    ip6_cidr: Mapped[str] = mapped_column(String(49), default="")
    ip6_gateway: Mapped[str] = mapped_column(String(45), default="")
    state: Mapped[str] = mapped_column(String(32), default="")
    # The address our gateway answers on; CloudStack's extension_ip (protocol.md §6).
    extension_ip: Mapped[str] = mapped_column(String(45), default="")
    # Firewall egress policy of the network's offering; set by apply-fw-rules.
    default_egress_allow: Mapped[bool] = mapped_column(Boolean, default=True)
    segment_allocation_id: Mapped[int] = mapped_column(
        ForeignKey("allocations.id", ondelete="RESTRICT"), unique=True
    )
    routing_domain_id: Mapped[int] = mapped_column(
        ForeignKey("routing_domains.id", ondelete="RESTRICT"), index=True
    )

    segment_allocation: Mapped[Allocation] = relationship()
    routing_domain: Mapped[RoutingDomain] = relationship()
    physical_network: Mapped[PhysicalNetwork] = relationship()
    vpc: Mapped[Vpc | None] = relationship(back_populates="tiers")


class PublicIp(Timestamped, Base):
    """A public address acquired for a network or a VPC (CloudStack assign-ip)."""

    __tablename__ = "public_ips"
    __table_args__ = (
        UniqueConstraint("zone_id", "address"),
        CheckConstraint(
            "(network_id IS NULL) <> (vpc_id IS NULL)", name="one_owner"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("zones.id", ondelete="RESTRICT"))
    address: Mapped[str] = mapped_column(String(45))
    cidr: Mapped[str] = mapped_column(String(49))  # the public range, e.g. 203.0.113.0/24
    gateway: Mapped[str] = mapped_column(String(45), default="")
    vlan: Mapped[str] = mapped_column(String(32), default="")  # as CloudStack stores it
    source_nat: Mapped[bool] = mapped_column(Boolean, default=False)
    network_id: Mapped[str | None] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    vpc_id: Mapped[str | None] = mapped_column(
        ForeignKey("vpcs.id", ondelete="CASCADE"), index=True
    )


class DirectConnectPort(Base):
    """A VLAN on a VTEP leaf's switch port mapped to a network's segment (direct connect):
    bare-metal hosts behind the port join the network."""

    __tablename__ = "direct_connect_ports"
    __table_args__ = (CheckConstraint("vlan BETWEEN 1 AND 4094", name="vlan"),)

    device_name: Mapped[str] = mapped_column(
        ForeignKey("devices.name", ondelete="CASCADE"), primary_key=True
    )
    interface: Mapped[str] = mapped_column(String(15), primary_key=True)
    vlan: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
