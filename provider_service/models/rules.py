"""What tenants ask of their public IPs and networks: NAT, firewall, ACLs, load balancers.

Every row hangs off a network or a public IP with ON DELETE CASCADE, so destroying a
network or releasing an address removes its rules in the database itself: no code path
can leave a rule pointing at an address we no longer hold. CIDR lists are stored as
validated, normalised, comma-joined text (an empty string is the empty list).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from provider_service.models.base import Base, Timestamped
from provider_service.models.tenancy import PublicIp

DIRECTIONS = ("ingress", "egress")
NAT_PROTOCOLS = ("tcp", "udp")
FIREWALL_PROTOCOLS = ("tcp", "udp", "icmp", "all")
ACL_ACTIONS = ("allow", "deny")
LB_ALGORITHMS = ("roundrobin", "leastconn", "source")



def _port_checks() -> tuple[CheckConstraint, ...]:
    """Port and ICMP columns of firewall rules and ACL items: both port ends or neither;
    ICMP type/code -1 meaning "any", as in CloudStack. A constraint object belongs to one
    table, hence a function."""
    return (
        CheckConstraint("(port_start IS NULL) = (port_end IS NULL)", name="port_pair"),
        CheckConstraint(
            "1 <= port_start AND port_start <= port_end AND port_end <= 65535", name="ports"
        ),
        CheckConstraint("icmp_type BETWEEN -1 AND 255", name="icmp_type"),
        CheckConstraint("icmp_code BETWEEN -1 AND 255", name="icmp_code"),
    )


class StaticNat(Timestamped, Base):
    """1:1 NAT of a public IP to one private address (CloudStack add-static-nat)."""

    __tablename__ = "static_nats"

    public_ip_id: Mapped[int] = mapped_column(
        ForeignKey("public_ips.id", ondelete="CASCADE"), primary_key=True
    )
    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    private_ip: Mapped[str] = mapped_column(String(45))

    public_ip: Mapped[PublicIp] = relationship(lazy="joined")


class PortForward(Timestamped, Base):
    """DNAT of a public port range to the same-sized private range (add-port-forward)."""

    __tablename__ = "port_forwards"
    __table_args__ = (
        UniqueConstraint("public_ip_id", "protocol", "public_port_start"),
        CheckConstraint("protocol IN ('tcp', 'udp')", name="protocol"),
        CheckConstraint(
            "1 <= public_port_start AND public_port_start <= public_port_end"
            " AND public_port_end <= 65535",
            name="public_ports",
        ),
        CheckConstraint(
            "1 <= private_port_start AND private_port_start <= private_port_end"
            " AND private_port_end <= 65535",
            name="private_ports",
        ),
        CheckConstraint(
            "public_port_end - public_port_start = private_port_end - private_port_start",
            name="same_length",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    public_ip_id: Mapped[int] = mapped_column(
        ForeignKey("public_ips.id", ondelete="CASCADE"), index=True
    )
    protocol: Mapped[str] = mapped_column(String(3))
    public_port_start: Mapped[int] = mapped_column(Integer)
    public_port_end: Mapped[int] = mapped_column(Integer)
    private_ip: Mapped[str] = mapped_column(String(45))
    private_port_start: Mapped[int] = mapped_column(Integer)
    private_port_end: Mapped[int] = mapped_column(Integer)
    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )

    public_ip: Mapped[PublicIp] = relationship(lazy="joined")


class TrafficMatch:
    """What a firewall rule and an ACL item both match: direction, protocol, ports or
    ICMP type/code, source CIDRs. Their checks come from _port_checks()."""

    direction: Mapped[str] = mapped_column(String(7))
    # tcp, udp, icmp, all (and, for ACL items, an IP protocol number 0-255).
    protocol: Mapped[str] = mapped_column(String(4))
    port_start: Mapped[int | None] = mapped_column(Integer)
    port_end: Mapped[int | None] = mapped_column(Integer)
    icmp_type: Mapped[int | None] = mapped_column(Integer)
    icmp_code: Mapped[int | None] = mapped_column(Integer)
    source_cidrs: Mapped[str] = mapped_column(Text, default="")


class FirewallRule(TrafficMatch, Timestamped, Base):
    """One rule of a network's firewall (apply-fw-rules), keyed by CloudStack's rule id."""

    __tablename__ = "firewall_rules"
    __table_args__ = (
        CheckConstraint("direction IN ('ingress', 'egress')", name="direction"),
        CheckConstraint("protocol IN ('tcp', 'udp', 'icmp', 'all')", name="protocol"),
        # Egress rules have no public IP. An ingress rule guards one of our public IPs
        # in a NATTED network and names guest addresses (dest_cidrs) in a ROUTED one,
        # which has no NAT: the network's mode decides (policy.apply_firewall).
        CheckConstraint("direction = 'ingress' OR public_ip_id IS NULL", name="public_ip"),
        *_port_checks(),
    )

    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True
    )
    rule_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    public_ip_id: Mapped[int | None] = mapped_column(
        ForeignKey("public_ips.id", ondelete="CASCADE"), index=True
    )
    # Egress: destinations. A ROUTED network's ingress: the guest addresses it opens
    # (empty: the whole network). A NATTED network's ingress: kept, not applied.
    dest_cidrs: Mapped[str] = mapped_column(Text, default="")

    public_ip: Mapped[PublicIp | None] = relationship(lazy="joined")


class AclItem(TrafficMatch, Timestamped, Base):
    """One item of a VPC tier's network ACL (apply-network-acl), keyed by its number."""

    __tablename__ = "acl_items"
    __table_args__ = (
        CheckConstraint("action IN ('allow', 'deny')", name="action"),
        CheckConstraint("direction IN ('ingress', 'egress')", name="direction"),
        *_port_checks(),
    )

    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    action: Mapped[str] = mapped_column(String(5))


class LbRule(Timestamped, Base):
    """A load balancer on a public IP port (apply-lb-rules), keyed by CloudStack's id."""

    __tablename__ = "lb_rules"
    __table_args__ = (
        # One listener per address, protocol and port, whichever tier of a VPC owns it.
        UniqueConstraint("public_ip_id", "protocol", "public_port"),
        CheckConstraint("protocol IN ('tcp', 'udp')", name="protocol"),
        CheckConstraint(
            "algorithm IN ('roundrobin', 'leastconn', 'source')", name="algorithm"
        ),
        CheckConstraint("public_port BETWEEN 1 AND 65535", name="public_port"),
        CheckConstraint("private_port BETWEEN 1 AND 65535", name="private_port"),
    )

    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True
    )
    rule_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(255))
    public_ip_id: Mapped[int] = mapped_column(
        ForeignKey("public_ips.id", ondelete="CASCADE"), index=True
    )
    public_port: Mapped[int] = mapped_column(Integer)
    private_port: Mapped[int] = mapped_column(Integer)
    protocol: Mapped[str] = mapped_column(String(3))
    algorithm: Mapped[str] = mapped_column(String(10))

    public_ip: Mapped[PublicIp] = relationship(lazy="joined")
    backends: Mapped[list[LbBackend]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin",
        order_by="(LbBackend.ip, LbBackend.port)",
    )


class LbBackend(Base):
    """A member of a load balancer: a guest address and port."""

    __tablename__ = "lb_backends"
    __table_args__ = (
        ForeignKeyConstraint(
            ["network_id", "rule_id"], ["lb_rules.network_id", "lb_rules.rule_id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("port BETWEEN 1 AND 65535", name="port"),
    )

    network_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    rule_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ip: Mapped[str] = mapped_column(String(45), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
