"""What each device should run (rendered artifacts) and what it reports back."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from provider_service.models.base import Base, utcnow

OBJECT_STATES = ("pending", "ok", "error")


class DeviceConfig(Base):
    """One rendered artifact of a device (frr.conf, nftables ruleset, dnsmasq, links plan).

    `generation` is the device's config_generation at the time this artifact last
    changed, so an agent that has seen generation N fetches only artifacts above N.
    """

    __tablename__ = "device_configs"

    device_name: Mapped[str] = mapped_column(
        ForeignKey("devices.name", ondelete="CASCADE"), primary_key=True
    )
    artifact: Mapped[str] = mapped_column(String(32), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ObjectStatus(Base):
    """Per-object apply status reported by a device's agent (ok, or error with a reason)."""

    __tablename__ = "object_status"
    __table_args__ = (CheckConstraint("state IN ('pending', 'ok', 'error')", name="state"),)

    device_name: Mapped[str] = mapped_column(
        ForeignKey("devices.name", ondelete="CASCADE"), primary_key=True
    )
    object_kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class StateVersion(Base):
    """One row, bumped by every write of desired state (Database.write): an agent waiting
    for a change (long-poll) reads one integer instead of re-rendering its configs."""

    __tablename__ = "state_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
