"""The gauges of /metrics that the database knows, read at scrape time.

Pool usage and device state are facts of the database, the same whichever worker (or
whichever of several services) is scraped, so they are read from it on every scrape,
in one short read transaction of a handful of grouped queries, not counted in memory.

A device's applied generation is `vxgate status`'s (status_report.applied_generation):
its config generation once every artifact is reported at or past the generation it is
wanted at, else the lowest report of an artifact behind; 0 until every artifact has a
report. No label names a tenant's network: devices, zones, physical networks and
pools only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provider_service.models import (
    Allocation,
    Device,
    DeviceConfig,
    NumberPool,
    ObjectStatus,
    PublicIp,
)
from provider_service.status_report import _SUMMARY, ARTIFACT_KIND, applied_generation

ZONE_SCOPE_LABEL = "zone"  # NumberPool.scope "" (zone-wide pools: ASNs)


@dataclass(frozen=True)
class PoolUsage:
    zone: str
    scope: str  # the physical network id, or "zone"
    purpose: str  # l2vni, l3vni, vlan, asn
    size: int
    used: int


@dataclass
class DeviceGauges:
    name: str
    role: str
    config_generation: int
    applied_generation: int = 0
    objects_in_error: int = 0
    last_report: datetime | None = None
    artifacts: dict[str, int] = field(default_factory=dict)  # name -> wanted generation
    reported: dict[str, int] = field(default_factory=dict)  # name -> reported generation


@dataclass(frozen=True)
class Snapshot:
    pools: list[PoolUsage]
    devices: list[DeviceGauges]
    public_ips: dict[str, int]  # zone -> addresses acquired


def read_snapshot(session: Session) -> Snapshot:
    return Snapshot(pool_usage(session), device_gauges(session), public_ips(session))


def pool_usage(session: Session) -> list[PoolUsage]:
    used = dict(session.execute(
        select(Allocation.pool_id, func.count()).group_by(Allocation.pool_id)).all())
    return [PoolUsage(pool.zone_id, pool.scope or ZONE_SCOPE_LABEL, pool.purpose,
                      pool.last_number - pool.first_number + 1, used.get(pool.id, 0))
            for pool in session.scalars(select(NumberPool).order_by(NumberPool.id))]


def device_gauges(session: Session) -> list[DeviceGauges]:
    devices = {name: DeviceGauges(name, role, generation) for name, role, generation in
               session.execute(select(Device.name, Device.role, Device.config_generation)
                               .order_by(Device.name))}
    for name, artifact, wanted in session.execute(select(
            DeviceConfig.device_name, DeviceConfig.artifact, DeviceConfig.generation)):
        devices[name].artifacts[artifact] = wanted
    rows = session.execute(select(ObjectStatus.device_name, ObjectStatus.object_kind,
                                  ObjectStatus.object_id, ObjectStatus.generation,
                                  ObjectStatus.state, ObjectStatus.reason,
                                  ObjectStatus.updated_at))
    for name, kind, object_id, generation, state, reason, updated in rows:
        device = devices[name]
        if kind == ARTIFACT_KIND:
            device.reported[object_id] = generation
        # An artifact "N object(s) failed" only sums up its objects' errors.
        if state == "error" and not (kind == ARTIFACT_KIND and _SUMMARY.fullmatch(reason)):
            device.objects_in_error += 1
        moment = updated if updated.tzinfo else updated.replace(tzinfo=UTC)
        device.last_report = max(filter(None, (device.last_report, moment)))
    for device in devices.values():
        device.applied_generation = applied_generation(
            device.config_generation, device.artifacts, device.reported) or 0
    return list(devices.values())


def public_ips(session: Session) -> dict[str, int]:
    return dict(session.execute(select(PublicIp.zone_id, func.count())
                                .group_by(PublicIp.zone_id)).all())


def families(snapshot: Snapshot) -> list[Metric]:
    pool_labels = ("zone", "scope", "purpose")
    size = GaugeMetricFamily("vxgate_pool_size", "Numbers in an allocation pool (VNIs, "
                             "VLANs, ASNs); scope: the physical network, or zone",
                             labels=pool_labels)
    used = GaugeMetricFamily("vxgate_pool_used", "Numbers of an allocation pool in use",
                             labels=pool_labels)
    for pool in snapshot.pools:
        labels = [pool.zone, pool.scope, pool.purpose]
        size.add_metric(labels, pool.size)
        used.add_metric(labels, pool.used)
    ips = GaugeMetricFamily("vxgate_public_ips", "Public addresses acquired (assign-ip) "
                            "for networks and VPCs", labels=("zone",))
    for zone, count in sorted(snapshot.public_ips.items()):
        ips.add_metric([zone], count)
    return [size, used, ips, *_device_families(snapshot.devices)]


def _device_families(devices: list[DeviceGauges]) -> Iterator[Metric]:
    labels = ("device", "role")
    generation = GaugeMetricFamily("vxgate_device_config_generation", "The device's "
                                   "config generation: goes up with every artifact change",
                                   labels=labels)
    applied = GaugeMetricFamily("vxgate_device_applied_generation", "The config generation "
                                "the agent has applied: all of it once every artifact is "
                                "current (0 until it reported them all)", labels=labels)
    errors = GaugeMetricFamily("vxgate_device_objects_in_error", "Objects the agent "
                               "reported in error", labels=labels)
    last = GaugeMetricFamily("vxgate_device_last_report_timestamp_seconds", "When the "
                             "agent last reported (Unix time); absent: never",
                             labels=labels)
    for device in devices:
        key = [device.name, device.role]
        generation.add_metric(key, device.config_generation)
        applied.add_metric(key, device.applied_generation)
        errors.add_metric(key, device.objects_in_error)
        if device.last_report is not None:
            last.add_metric(key, device.last_report.timestamp())
    yield from (generation, applied, errors, last)


class SnapshotCollector:
    """A prometheus_client collector of one snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from families(self.snapshot)
