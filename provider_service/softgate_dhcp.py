"""The `dhcp` section of softgate.json: DHCP, DNS, user data and passwords per network.

The output is what agent/dhcp_state.parse_state accepts without a problem. Whether a
network has each service is read from what CloudStack sent:

- DHCP: config-dhcp-subnet (NetworkServices.dhcp_enabled), or any add-dhcp-entry. Without
  the DhcpAccrossMultipleSubnets capability CloudStack never sends config-dhcp-subnet,
  and the entries are then the only sign that we serve DHCP.
- DNS: likewise config-dns-subnet or any add-dns-entry.
- User data: any NIC with VM data. save-vm-data is sent only when we provide UserData,
  and restore-network without it clears every NIC's VM data (vms.restore_network).

A NIC is served when it has an IPv4 address (the agent keys everything on it) and a DHCP
entry, a DNS entry or VM data. Values the API accepted but the agent would refuse are
left out one by one, never the whole network (see _metadata, _password, _dns_servers).

Everything is read per zone in three queries, VM data contents included: no query per
network or NIC (a SoftGate of 2,000 VMs compiles in tens of milliseconds).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from provider_service import tenancy
from provider_service.models import Network
from provider_service.models.vms import (
    METADATA_DIR,
    PASSWORD_DIR,
    PASSWORD_FILE,
    USERDATA_DIR,
    USERDATA_FILE,
    NetworkServices,
    Nic,
    NicVmData,
)
from provider_service.softgate_domains import Domain, agent_id, bridge_name

Json = dict[str, Any]

# The agent's limits (agent/dhcp_state.py) where the API's are wider.
MAX_DNS_SERVERS: Final = 4
MAX_METADATA_BYTES: Final = 64 * 1024
MAX_PASSWORD_CHARS: Final = 256
MAX_DHCP_PREFIXLEN: Final = 30  # a /31 or /32 has no room for a gateway and a VM
SLAAC_PREFIXLEN: Final = 64  # router advertisements hand out /64 prefixes only
# The metadata server answers /latest/user-data itself: a metadata file of that name would
# shadow it (the agent refuses one).
_RESERVED_METADATA: Final = "user-data"


@dataclass(frozen=True)
class _Services:
    dhcp: bool
    dns: bool
    dns_servers: list[str]
    domain: str


@dataclass(frozen=True)
class _NicRow:
    mac: str
    ip: str | None
    ip6: str | None
    hostname: str
    default: bool
    dhcp_entry: bool
    dns_entry: bool


@dataclass(frozen=True)
class _ZoneDhcp:
    services: dict[str, _Services]  # by network id
    nics: dict[str, list[_NicRow]]  # by network id, sorted by MAC
    vm_data: dict[tuple[str, str], dict[tuple[str, str], str]]  # (network, mac) -> files


def compile_dhcp(session: Session, zone_id: str, domains: list[Domain]) -> Json:
    zone = _load(session, zone_id)
    networks = [
        network_json
        for domain in domains
        for network in domain.networks
        if (network_json := _network(domain, network, zone)) is not None
    ]
    return {"networks": sorted(networks, key=lambda network: str(network["id"]))}


def _network(domain: Domain, network: tenancy.NetworkView, zone: _ZoneDhcp) -> Json | None:
    cidr = ipaddress.IPv4Network(network.cidr)
    if cidr.prefixlen > MAX_DHCP_PREFIXLEN:
        return None
    services = zone.services.get(network.id, _Services(False, False, [], ""))
    rows = zone.nics.get(network.id, [])
    files = {row.mac: zone.vm_data.get((network.id, row.mac), {}) for row in rows}
    dhcp = services.dhcp or any(row.dhcp_entry for row in rows)
    dns = services.dns or any(row.dns_entry for row in rows)
    userdata = any(files.values())
    if not (dhcp or dns or userdata):
        return None
    ipv6 = bool(network.ip6_cidr) and \
        ipaddress.IPv6Network(network.ip6_cidr).prefixlen == SLAAC_PREFIXLEN
    served = [row for row in rows
              if row.ip is not None and (row.dhcp_entry or row.dns_entry or files[row.mac])]
    return {
        "id": agent_id(network.id),
        "netns": domain.netns,
        "bridge": bridge_name(network),
        "cidr": network.cidr,
        "gateway": network.gateway,
        "domain": services.domain,
        # CloudStack's DNS servers (addNetworkDnsToPayload) are where our dnsmasq forwards,
        # and guests get them after our own address, as CloudStack's Network-Namespace
        # extension hands them out: name resolution outlives a stopped dnsmasq.
        "dns_servers": services.dns_servers,
        "upstream_dns": services.dns_servers,
        "ipv6_cidr": network.ip6_cidr if ipv6 else None,
        "ipv6_gateway": network.ip6_gateway if ipv6 else None,
        "dhcp": dhcp,
        "dns": dns,
        "userdata": userdata,
        "nics": [_nic(row, files[row.mac], ipv6, name)
                 for row, name in zip(served, _hostnames(served), strict=True)],
    }


def _hostnames(rows: list[_NicRow]) -> list[str | None]:
    """Each NIC's host name, unique ignoring case as the agent wants: a NIC with a DNS
    entry holds its name (the database keeps those unique); a NIC with only a DHCP entry
    gets its name for DHCP unless another NIC has it already; others get none."""
    taken = {row.hostname.lower() for row in rows if row.dns_entry}
    names: list[str | None] = []
    for row in rows:
        name: str | None = None
        if row.dns_entry:
            name = row.hostname
        elif row.dhcp_entry and row.hostname and row.hostname.lower() not in taken:
            name = row.hostname
            taken.add(name.lower())
        names.append(name)
    return names


def _nic(row: _NicRow, files: dict[tuple[str, str], str], ipv6: bool,
         hostname: str | None) -> Json:
    out: Json = {"mac": row.mac, "ip": row.ip, "default": row.default}
    if ipv6 and row.ip6 is not None:
        out["ip6"] = row.ip6
    if hostname is not None:
        out["hostname"] = hostname
    user_data = files.get((USERDATA_DIR, USERDATA_FILE), "")
    if user_data:
        out["user_data"] = user_data
    metadata = _metadata(files)
    if metadata:
        out["metadata"] = metadata
    password = _password(files)
    if password is not None:
        out["password"] = password
    return out


def _metadata(files: dict[tuple[str, str], str]) -> dict[str, str]:
    """The metadata files the agent serves: names are unique ignoring case there (the
    first in sort order wins), 'user-data' is its own, and a value is at most 64 KiB."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for (directory, name), content in sorted(files.items()):
        folded = name.lower()
        if directory != METADATA_DIR or folded in seen or folded == _RESERVED_METADATA:
            continue
        if len(content.encode("utf-8")) > MAX_METADATA_BYTES:
            continue
        seen.add(folded)
        out[name] = content
    return out


def _password(files: dict[tuple[str, str], str]) -> str | None:
    """The VM's password, if the agent can serve it. The MD5 checksum file (Windows
    templates) is not sent: the password server does not use it."""
    password = files.get((PASSWORD_DIR, PASSWORD_FILE))
    if password is None or not 0 < len(password) <= MAX_PASSWORD_CHARS:
        return None
    return password


def _dns_servers(stored: str) -> list[str]:
    """CloudStack's DNS servers as the agent takes them: IPv4, each once, at most four."""
    servers: list[str] = []
    for text in stored.split(","):
        if text and isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address) \
                and text not in servers:
            servers.append(text)
    return servers[:MAX_DNS_SERVERS]


# --- loading -------------------------------------------------------------------------


def _load(session: Session, zone_id: str) -> _ZoneDhcp:
    in_zone = Network.zone_id == zone_id
    services = {
        network_id: _Services(dhcp, dns, _dns_servers(servers), domain)
        for network_id, dhcp, dns, servers, domain in session.execute(
            select(NetworkServices.network_id, NetworkServices.dhcp_enabled,
                   NetworkServices.dns_enabled, NetworkServices.dns, NetworkServices.domain)
            .join(Network, Network.id == NetworkServices.network_id).where(in_zone))
    }
    nics: dict[str, list[_NicRow]] = defaultdict(list)
    for network_id, mac, ip, ip6, hostname, default, dhcp_entry, dns_name in session.execute(
            select(Nic.network_id, Nic.mac, Nic.ip, Nic.ip6_address, Nic.hostname,
                   Nic.default_nic, Nic.dhcp_entry, Nic.dns_name)
            .join(Network, Network.id == Nic.network_id).where(in_zone)):
        nics[network_id].append(
            _NicRow(mac, ip, ip6, hostname, default, dhcp_entry, dns_name is not None))
    # Naming the columns loads the deferred contents in this one query.
    files: dict[tuple[str, str], dict[tuple[str, str], str]] = defaultdict(dict)
    for network_id, mac, directory, name, content in session.execute(
            select(NicVmData.network_id, NicVmData.mac, NicVmData.dir, NicVmData.file,
                   NicVmData.content)
            .join(Network, Network.id == NicVmData.network_id).where(in_zone)):
        files[(network_id, mac)][(directory, name)] = content
    # Sorted here, not by the database: collations differ between SQLite and PostgreSQL.
    return _ZoneDhcp(services, {network_id: sorted(rows, key=lambda row: row.mac)
                                for network_id, rows in nics.items()}, dict(files))
