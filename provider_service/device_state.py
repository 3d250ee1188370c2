"""Rendered artifacts per device, numbered by generation, and the status agents report.

A device's config_generation goes up by one whenever any of its artifacts changes; an
artifact remembers the generation at which it last changed. An agent that has applied
generation N asks for everything above N and gets exactly what changed since.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC

from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service.errors import NotFound
from provider_service.models import Device, DeviceConfig, ObjectStatus
from provider_service.models.base import utcnow

ARTIFACT_KIND = "artifact"  # agent/status.ARTIFACT: the report on a whole artifact


@dataclass(frozen=True)
class ObjectReport:
    kind: str
    id: str
    state: str
    reason: str = ""


def get_device(session: Session, name: str, *, lock: bool = False) -> Device:
    """The device; `lock=True` for writes that bump its generation (store_artifact) or
    must not interleave with them: on PostgreSQL the row is read FOR NO KEY UPDATE, so
    two writers take turns instead of both reading generation N and both writing N + 1."""
    # OF devices: the joined ASN allocation is the nullable side of an outer join, which
    # PostgreSQL will not lock. populate_existing: a row already in the session is
    # re-read under the lock, not served as it was.
    lock_mode = {"of": Device, "key_share": True} if lock else None
    device = session.get(Device, name, with_for_update=lock_mode, populate_existing=lock)
    if device is None:
        raise NotFound(f"unknown device {name}")
    return device


def store_artifact(session: Session, device: Device, artifact: str, content: str) -> int:
    """Record a rendered artifact; returns its generation (unchanged if the text is).
    The device must come from get_device(..., lock=True): the generation is read and
    bumped here."""
    digest = hashlib.sha256(content.encode()).hexdigest()
    current = session.get(DeviceConfig, (device.name, artifact))
    if current is not None and current.sha256 == digest:
        return current.generation
    device.config_generation += 1
    if current is None:
        current = DeviceConfig(device_name=device.name, artifact=artifact)
        session.add(current)
    current.generation = device.config_generation
    current.content, current.sha256, current.updated_at = content, digest, utcnow()
    return current.generation


def artifacts_since(session: Session, device: Device, generation: int) -> list[DeviceConfig]:
    return list(
        session.scalars(
            select(DeviceConfig)
            .where(DeviceConfig.device_name == device.name, DeviceConfig.generation > generation)
            .order_by(DeviceConfig.artifact)
        )
    )


def apply_latencies(
    session: Session, device: Device, generation: int, reports: list[ObjectReport]
) -> list[tuple[str, float]]:
    """(artifact, seconds from its generation being stored to now) for each artifact
    these reports say is applied for the first time: call before record_status. A
    report of an artifact already applied at that generation (the agent's resync,
    another artifact's change) is not a new apply."""
    now = utcnow()
    found = []
    for report in reports:
        if report.kind != ARTIFACT_KIND or report.state != "ok":
            continue
        stored = session.get(DeviceConfig, (device.name, report.id))
        if stored is None or generation < stored.generation:
            continue
        before = session.get(ObjectStatus, (device.name, report.kind, report.id))
        if before is not None and before.state == "ok" and before.generation >= \
                stored.generation:
            continue
        at = stored.updated_at
        at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite: UTC, naive
        found.append((report.id, (now - at).total_seconds()))
    return found


def record_status(
    session: Session, device: Device, generation: int, reports: list[ObjectReport]
) -> None:
    """Upsert what the agent says of each object; a later report replaces an earlier one."""
    for report in reports:
        row = session.get(ObjectStatus, (device.name, report.kind, report.id))
        if row is None:
            row = ObjectStatus(device_name=device.name, object_kind=report.kind,
                               object_id=report.id)
            session.add(row)
        row.generation, row.state, row.reason = generation, report.state, report.reason


def statuses(session: Session, device: Device, state: str | None) -> list[ObjectStatus]:
    query = select(ObjectStatus).where(ObjectStatus.device_name == device.name)
    if state is not None:
        query = query.where(ObjectStatus.state == state)
    return list(session.scalars(query.order_by(ObjectStatus.object_kind, ObjectStatus.object_id)))
