"""Guest NICs and what the SoftGate serves them: DHCP leases, DNS names, VM data.

Every row hangs off a network with ON DELETE CASCADE (VM data off its NIC), so
destroying a network removes its NICs, leases, names, user data and passwords in the
database itself. A NIC is keyed by (network, MAC): every CloudStack NIC payload carries
the MAC, while restore-network's items carry no nic_id.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from provider_service.models.base import Base, Timestamped

# The directories of CloudStack's generateVmData (NetworkModel constants).
USERDATA_DIR, METADATA_DIR, PASSWORD_DIR = "userdata", "metadata", "password"
VM_DATA_DIRS = (USERDATA_DIR, METADATA_DIR, PASSWORD_DIR)
USERDATA_FILE = "user_data"
PASSWORD_FILE, PASSWORD_CHECKSUM_FILE = "vm_password", "vm-password-md5checksum"


class Nic(Timestamped, Base):
    """A guest NIC on one of our networks, and whether it has a DHCP lease and a DNS name.

    The unique constraints are the guarantee, under any concurrency, that two NICs of a
    network never share an address or a DNS name (NULLs never collide, so a NIC without
    an address or a DNS entry takes nothing).
    """

    __tablename__ = "nics"
    __table_args__ = (
        UniqueConstraint("network_id", "ip"),
        UniqueConstraint("network_id", "ip6_address"),
        UniqueConstraint("network_id", "dns_name"),
    )

    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True
    )
    mac: Mapped[str] = mapped_column(String(17), primary_key=True)  # lower-case, colons
    nic_id: Mapped[str] = mapped_column(String(64), default="")  # CloudStack's ids
    nic_uuid: Mapped[str] = mapped_column(String(64), default="")
    ip: Mapped[str | None] = mapped_column(String(15))
    ip6_address: Mapped[str | None] = mapped_column(String(45))
    hostname: Mapped[str] = mapped_column(String(63), default="")  # as CloudStack spells it
    default_nic: Mapped[bool] = mapped_column(Boolean, default=True)
    device_id: Mapped[str] = mapped_column(String(64), default="")
    dhcp_entry: Mapped[bool] = mapped_column(Boolean, default=False)
    # The lower-cased host name while the NIC has a DNS entry, else NULL. DNS names are
    # case-insensitive; keeping the published name in its own column lets a plain unique
    # constraint (portable, no partial or expression index) keep names unique.
    dns_name: Mapped[str | None] = mapped_column(String(63))

    vm_data: Mapped[list[NicVmData]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )

    @property
    def dns_entry(self) -> bool:
        return self.dns_name is not None

    @property
    def has_password(self) -> bool:
        return any(
            (item.dir, item.file) == (PASSWORD_DIR, PASSWORD_FILE) for item in self.vm_data
        )


class NicVmData(Base):
    """One file of a NIC's user data, metadata or password, as save-vm-data names it.

    `content` is deferred: user data may be up to 1 MiB, and listing NICs needs only the
    names.
    """

    __tablename__ = "nic_vm_data"
    __table_args__ = (
        ForeignKeyConstraint(
            ["network_id", "mac"], ["nics.network_id", "nics.mac"], ondelete="CASCADE"
        ),
        CheckConstraint("dir IN ('userdata', 'metadata', 'password')", name="dir"),
    )

    network_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    mac: Mapped[str] = mapped_column(String(17), primary_key=True)
    dir: Mapped[str] = mapped_column(String(16), primary_key=True)
    file: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[str] = mapped_column(Text, deferred=True)


class NetworkServices(Base):
    """A network's DHCP and DNS service state (config-/remove-dhcp-subnet, -dns-subnet).

    `dns` and `domain` are what the DHCP/DNS commands carry (addNetworkDnsToPayload):
    implement-network, which feeds the networks row, does not carry them.
    """

    __tablename__ = "network_services"

    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True
    )
    dhcp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    dns_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    dns: Mapped[str] = mapped_column(Text, default="")  # comma-separated, validated addresses
    domain: Mapped[str] = mapped_column(String(253), default="")
