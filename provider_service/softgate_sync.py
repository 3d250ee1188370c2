"""Conntrack sync addresses of a SoftGate pair (agent/conntrackd.py runs the sync).

A zone's two SoftGates share connection-tracking state per routing domain over the
domain's own L3VNI: each has a /32 in every EVPN domain, on its L3VNI bridge, that its
VRF announces as a type-5 route (frr_intent). Addresses are link-local (SYNC_NET), which
no tenant network can hold, and follow the SoftGates' names: the first is .1, the second
.2, so both ends derive the same pair from the same inventory.

Only a zone with exactly two SoftGates has a pair. With one there is no one to share
with; with three or more, conntrackd's unicast sync has no single peer, so none syncs
(docs/softgate-pair.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service.models import Device

# The same range as the agent's (agent/links_state.py SYNC_NET): it refuses any other,
# and every domain's firewall takes the sync only from there.
SYNC_NET: Final = ipaddress.IPv4Network("169.254.252.0/24")


@dataclass(frozen=True)
class SyncPair:
    address: str  # this SoftGate's, in each EVPN routing domain
    peer: str  # the other SoftGate's

    @property
    def prefix(self) -> str:
        return f"{self.address}/32"


def sync_pair(session: Session, device: Device) -> SyncPair | None:
    """This SoftGate's sync address and its peer's; None without exactly one peer."""
    names = session.scalars(
        select(Device.name).where(Device.zone_id == device.zone_id,
                                  Device.role == "softgate").order_by(Device.name)
    ).all()
    if len(names) != 2 or device.name not in names:
        return None
    mine = names.index(device.name)
    return SyncPair(address=str(SYNC_NET[1 + mine]), peer=str(SYNC_NET[2 - mine]))
