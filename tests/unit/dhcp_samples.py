"""Sample DHCP/DNS/VM-data states shared by the unit, golden and functional tests."""

from __future__ import annotations

import copy
from typing import Any

USER_DATA = "#cloud-config\nruncmd:\n  - echo 'hello, world' > /tmp/hi\n"


def vm_metadata(name: str, vm_id: str) -> dict[str, str]:
    """The items CloudStack's generateVmData sends, as the VR serves them."""
    return {
        "instance-id": f"i-2-{vm_id}-VM",
        "vm-id": vm_id,
        "local-hostname": name,
        "public-hostname": name,
        "availability-zone": "zone1",
        "service-offering": "Small Instance",
        "cloud-identifier": "CloudStack-{deadbeef}",
        "public-keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0 user@example\n",
    }


def nic(index: int, prefix: str = "10.10.1", **extra: Any) -> dict[str, Any]:
    name = f"vm{index}"
    data: dict[str, Any] = {
        "mac": f"02:00:0a:0a:01:{index:02x}",
        "ip": f"{prefix}.{10 + index}",
        "hostname": name,
        "user_data": USER_DATA,
        "metadata": vm_metadata(name, str(100 + index)),
    }
    data.update(extra)
    return data


def ipv4_network() -> dict[str, Any]:
    return {
        "id": "201", "netns": "vxr-1001", "bridge": "vxb-5001",
        "cidr": "10.10.1.0/24", "gateway": "10.10.1.1", "domain": "cs201.internal",
        "dns_servers": "192.0.2.53,198.51.100.53",
        "nics": [nic(1, password="Ch4ngeMe-1"), nic(2), nic(3)],
    }


def non_default_network() -> dict[str, Any]:
    return {
        "id": "202", "netns": "vxr-1001", "bridge": "vxb-5002",
        "cidr": "10.10.2.0/24", "gateway": "10.10.2.1", "domain": "cs202.internal",
        "nics": [nic(1, prefix="10.10.2", mac="02:00:0a:0a:02:01"),
                 nic(2, prefix="10.10.2", mac="02:00:0a:0a:02:02", default=False)],
    }


def ipv6_network() -> dict[str, Any]:
    return {
        "id": "203", "netns": "vxr-1003", "bridge": "vxb-5003",
        "cidr": "10.10.3.0/24", "gateway": "10.10.3.1", "domain": "cs203.internal",
        "ipv6_cidr": "fd00:10:3::/64", "ipv6_gateway": "fd00:10:3::1",
        "upstream_dns": ["192.0.2.53"],
        "nics": [nic(1, prefix="10.10.3", mac="02:00:0a:0a:03:01", ip6="fd00:10:3::11"),
                 nic(2, prefix="10.10.3", mac="02:00:0a:0a:03:02")],
    }


def state_json(*networks: dict[str, Any]) -> dict[str, Any]:
    chosen = networks or (ipv4_network(), non_default_network(), ipv6_network())
    return {"networks": copy.deepcopy(list(chosen))}
