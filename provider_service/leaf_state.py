"""leaf.json: the kernel side of a VTEP leaf's direct connects, for its agent.

For each VNI with a direct connect on the leaf: a bridge and a VXLAN device (local: the
leaf's VTEP address); for each (port, VLAN): the port's VLAN member in that VNI's
bridge. FRR's `advertise-all-vni` (frr.conf) then announces the VNI and the MACs the
bridge learns from the port. Rendered from the same FrrIntent as frr.conf, so the two
never disagree on which VLAN carries which VNI.
"""

from __future__ import annotations

import json

from provider_service.frr_intent import FrrIntent
from provider_service.models import Device

ARTIFACT = "leaf.json"
FORMAT = 1


def render_leaf_state(device: Device, intent: FrrIntent) -> str:
    """Sorted and compact: the same state gives the same text, hence the same generation."""
    return json.dumps({
        "format": FORMAT,
        "vtep_address": device.vtep_address,
        "ports": [{"interface": c.interface, "vlan": c.vlan, "vni": c.vni}
                  for c in intent.direct_connects],
    }, sort_keys=True, separators=(",", ":"))
