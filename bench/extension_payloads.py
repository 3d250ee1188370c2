"""CloudStack's payload-file envelopes for the extension benchmark (protocol.md §2-§3).

One isolated network with one public IP, as NetworkExtensionElement describes them: the
network fields (addNetworkToPayload, "N") and the public-IP fields (addPublicIpToPayload,
"PIP") are strings; the registration details carry the service's URL and token plus the
physical network's name. `Network` plays CloudStack's `network_details` row: the text the
last ensure-network-device printed is handed back on every later call, parsed as
network-extension-details and verbatim as payload.current_details.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ZONE_ID = "1"
PHYSNET_ID = "200"
PHYSNET_NAME = "guest"
PHYSNET = {"zone_id": ZONE_ID, "name": PHYSNET_NAME}
NETWORK_ID = "204"
CIDR = "10.1.1.0/24"
GATEWAY = "10.1.1.1"
PRIVATE_IP = "10.1.1.10"
PUBLIC_IP = "203.0.113.5"
PUBLIC_CIDR = "203.0.113.5/24"  # NetUtils.ipAndNetMaskToCidr(public IP, range netmask)
PUBLIC_GATEWAY = "203.0.113.1"
PUBLIC_VLAN = "vlan://101"
PROTOCOL = "tcp"
FIRST_PORT = 1000
MAX_PORT = 65535

Envelope = dict[str, Any]


@dataclass
class Network:
    """What CloudStack knows of the network between two calls."""

    vlan: str = ""  # BroadcastDomainType.getValue(broadcast URI): "" until implemented
    state: str = "allocated"
    stored_details: str = ""  # network_details `extension.details`; "" when absent

    def remember(self, ensure_output: str) -> None:
        """NEE: exit 0 with non-empty output replaces the stored details verbatim."""
        if ensure_output.strip():
            self.stored_details = ensure_output.strip()

    def implemented(self, implement_output: str) -> None:
        """The broadcast write-back of protocol.md §4.2 (if any), then state Implemented."""
        try:
            answer = json.loads(implement_output)
        except ValueError:
            answer = None
        uri = answer.get("network.broadcast_uri") if isinstance(answer, dict) else None
        if isinstance(uri, str) and uri:
            self.vlan = uri.partition("://")[2] or uri
        self.state = "implemented"


def registration(url: str, token: str) -> dict[str, str]:
    return {"vxgate.url": url, "vxgate.token": token, "physicalnetworkname": PHYSNET_NAME}


def envelope(details: dict[str, str], network: Network, payload: dict[str, Any]) -> Envelope:
    stored = json.loads(network.stored_details) if network.stored_details else {}
    return {"physical-network-extension-details": details,
            "network-extension-details": stored if isinstance(stored, dict) else {},
            "payload": payload}


def network_fields(network: Network) -> dict[str, str]:
    """N: addNetworkToPayload."""
    return {"network_id": NETWORK_ID, "vlan": network.vlan, "zone_id": ZONE_ID,
            "guest_type": "isolated", "network_state": network.state,
            "gateway": GATEWAY, "cidr": CIDR}


def public_ip_fields() -> dict[str, str]:
    """PIP(false): addPublicIpToPayload for a non-source-NAT address."""
    return {"public_ip": PUBLIC_IP, "public_vlan": PUBLIC_VLAN,
            "public_gateway": PUBLIC_GATEWAY, "public_cidr": PUBLIC_CIDR,
            "source_nat": "false"}


def ensure(details: dict[str, str], network: Network) -> Envelope:
    payload = {**network_fields(network), "current_details": network.stored_details or "{}"}
    return envelope(details, network, payload)


def implement(details: dict[str, str], network: Network) -> Envelope:
    # The provider offers SourceNat, so extension_ip is the gateway (protocol.md §6).
    return envelope(details, network, {**network_fields(network), "extension_ip": GATEWAY})


def assign_ip(details: dict[str, str], network: Network) -> Envelope:
    return envelope(details, network, {**network_fields(network), **public_ip_fields()})


def port(index: int) -> int:
    return FIRST_PORT + index


def add_port_forward(details: dict[str, str], network: Network, index: int) -> Envelope:
    """Port forward `index`: public port 1000+index to the same port of PRIVATE_IP."""
    number = str(port(index))
    return envelope(details, network, {
        **network_fields(network), **public_ip_fields(),
        "public_port": number, "private_ip": PRIVATE_IP, "private_port": number,
        "protocol": PROTOCOL,
    })


def expected_forward(index: int) -> dict[str, str]:
    """How GET .../port-forwards lists port forward `index`."""
    number = str(port(index))
    return {"public_ip": PUBLIC_IP, "protocol": PROTOCOL, "public_ports": number,
            "network_id": NETWORK_ID, "private_ip": PRIVATE_IP, "private_ports": number}
