"""SQLAlchemy models of the desired state. Importing this registers every table."""

from provider_service.models import rules, tokens, vms  # noqa: F401  (register their tables)
from provider_service.models.base import Base
from provider_service.models.device_state import DeviceConfig, ObjectStatus, StateVersion
from provider_service.models.fabric import (
    Allocation,
    Device,
    DeviceUplink,
    NumberPool,
    PhysicalNetwork,
    ReleasedNumber,
    UpstreamPeer,
    Zone,
)
from provider_service.models.tenancy import (
    DirectConnectPort,
    Network,
    PublicIp,
    RoutingDomain,
    Vpc,
)

__all__ = [
    "Allocation",
    "Base",
    "Device",
    "DeviceConfig",
    "DeviceUplink",
    "DirectConnectPort",
    "Network",
    "NumberPool",
    "ObjectStatus",
    "PhysicalNetwork",
    "PublicIp",
    "ReleasedNumber",
    "RoutingDomain",
    "StateVersion",
    "UpstreamPeer",
    "Vpc",
    "Zone",
]
