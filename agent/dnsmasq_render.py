"""dnsmasq config for one guest network: pure functions of the desired state.

One dnsmasq per guest network, inside the routing domain's namespace, bound to the
network's bridge only (`interface=` + `bind-interfaces`; `except-interface=lo` so that
several instances in one namespace do not fight over 127.0.0.1:53). Each instance gets
three files in its own directory:

  dnsmasq.conf  network-wide settings; dnsmasq reads it at start only, so a change here
                (bridge, CIDR, gateway, domain, DNS servers, upstreams, IPv6, which of
                DHCP/DNS is on) needs a RESTART.
  dhcp-hosts    one static lease per NIC (dhcp-hostsfile), re-read on SIGHUP.
  dns-hosts     A/AAAA records of the VMs and `data-server` (addn-hosts), re-read on SIGHUP.

So adding or renaming a VM, or flipping its default-NIC flag, is a SIGHUP: the
non-default behaviour is a tag set in dhcp-hosts and the tagged options live in the
static config. Removing a VM that holds a lease (or changing its MAC or address) is the
exception, see dhcp_apply: its infinite lease survives a SIGHUP.

The values written here were validated by dhcp_state (host names and domains are RFC 1123
names, addresses are parsed), so no tenant string can add a line or a field. The output
is deterministic: NICs sorted by MAC, records by address.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Network
from pathlib import Path
from typing import Final

from agent.dhcp_state import Network

CONF: Final = "dnsmasq.conf"
DHCP_HOSTS: Final = "dhcp-hosts"
DNS_HOSTS: Final = "dns-hosts"
LEASES: Final = "leases"
PID: Final = "dnsmasq.pid"
NON_DEFAULT_TAG: Final = "nodefault"
# The name cloud-init's CloudStack data source resolves first to find the metadata and
# password servers (the virtual router registers it the same way).
DATA_SERVER: Final = "data-server"


@dataclass(frozen=True)
class DnsmasqFiles:
    """The three files of one instance; `conf` needs a restart, the others a SIGHUP."""

    conf: str
    dhcp_hosts: str
    dns_hosts: str

    def by_name(self) -> dict[str, str]:
        return {CONF: self.conf, DHCP_HOSTS: self.dhcp_hosts, DNS_HOSTS: self.dns_hosts}


def render(network: Network, directory: Path) -> DnsmasqFiles:
    return DnsmasqFiles(
        conf=render_conf(network, directory),
        dhcp_hosts=render_dhcp_hosts(network),
        dns_hosts=render_dns_hosts(network),
    )


def render_conf(network: Network, directory: Path) -> str:
    lines = [
        f"# vxgate: dnsmasq for guest network {network.id} on {network.bridge} in "
        f"{network.netns}.",
        "# Generated; a change to this file needs a restart. dhcp-hosts and dns-hosts are",
        "# re-read on SIGHUP.",
        *_listen(network),
        *_dns(network, directory),
    ]
    if network.dhcp:
        lines += _dhcp(network, directory)
    if network.ipv6_cidr is not None:
        lines += _ipv6(network.ipv6_cidr)
    return "\n".join(lines) + "\n"


def _listen(network: Network) -> list[str]:
    return [
        f"interface={network.bridge}",
        "bind-interfaces",
        # Otherwise every instance also binds 127.0.0.1:53 and the second one fails.
        "except-interface=lo",
        # Nothing of the SoftGate itself may leak to guests: not its /etc/hosts, not its
        # resolv.conf, not its /etc/ethers.
        "no-hosts",
        "no-resolv",
        "no-poll",
    ]


def _dns(network: Network, directory: Path) -> list[str]:
    if not network.dns:
        return ["port=0"]
    lines = [
        f"addn-hosts={directory / DNS_HOSTS}",
        # Names without a domain, and reverse lookups of private ranges, never go upstream.
        "domain-needed",
        "bogus-priv",
        "cache-size=1000",
    ]
    if network.domain:
        lines += [
            f"domain={network.domain}",
            # The network's own domain is answered here and never forwarded.
            f"local=/{network.domain}/",
            "expand-hosts",
        ]
    lines += [f"server={server}" for server in network.upstream_dns]
    return lines


def _dhcp(network: Network, directory: Path) -> list[str]:
    cidr = network.cidr
    lines = [
        f"dhcp-leasefile={directory / LEASES}",
        f"dhcp-hostsfile={directory / DHCP_HOSTS}",
        # Static leases only: a MAC without a dhcp-hosts line gets no address.
        f"dhcp-range=set:guest,{cidr.network_address},static,{cidr.netmask},infinite",
        # We are the only DHCP server on the segment: answer a stale lease at once.
        "dhcp-authoritative",
        f"dhcp-option=option:router,{network.gateway}",
    ]
    servers = _guest_dns_servers(network)
    lines.append("dhcp-option=option:dns-server" + "".join(f",{s}" for s in servers))
    if network.domain:
        lines.append(f"dhcp-option=option:domain-name,{network.domain}")
    # A VM's extra NICs must not take its default route, resolvers or search domain:
    # options without a value are not sent at all (as the virtual router does).
    lines += [
        f"dhcp-option=tag:{NON_DEFAULT_TAG},option:router",
        f"dhcp-option=tag:{NON_DEFAULT_TAG},option:dns-server",
        f"dhcp-option=tag:{NON_DEFAULT_TAG},option:domain-name",
    ]
    return lines


def _guest_dns_servers(network: Network) -> list[str]:
    """Our own address first when we serve DNS (VM names resolve), then CloudStack's."""
    servers = [str(network.gateway)] if network.dns else []
    return servers + [str(s) for s in network.dns_servers if str(s) not in servers]


def _ipv6(cidr: IPv6Network) -> list[str]:
    # CloudStack's guest IPv6 addresses are SLAAC: advertise the /64, no DHCPv6 leases.
    return [
        "enable-ra",
        f"dhcp-range=set:guest6,{cidr.network_address},ra-only,64,infinite",
    ]


def render_dhcp_hosts(network: Network) -> str:
    """One static lease per NIC: MAC, [tag,] address, [host name,] infinite lease."""
    if not network.dhcp:
        return ""
    lines = []
    for nic in network.nics:
        fields = [nic.mac]
        if not nic.default:
            fields.append(f"set:{NON_DEFAULT_TAG}")
        fields.append(str(nic.ipv4))
        if nic.hostname is not None:
            fields.append(nic.hostname)
        fields.append("infinite")
        lines.append(",".join(fields))
    return "".join(line + "\n" for line in lines)


def render_dns_hosts(network: Network) -> str:
    """hosts(5) lines; expand-hosts adds the network's domain to every name."""
    if not network.dns:
        return ""
    records = [(network.gateway.packed, str(network.gateway), DATA_SERVER)]
    if network.ipv6_gateway is not None:
        records.append((network.ipv6_gateway.packed, str(network.ipv6_gateway), DATA_SERVER))
    for nic in network.nics:
        if nic.hostname is None:
            continue
        records.append((nic.ipv4.packed, str(nic.ipv4), nic.hostname))
        if nic.ipv6 is not None:
            records.append((nic.ipv6.packed, str(nic.ipv6), nic.hostname))
    records.sort(key=lambda record: (len(record[0]), record[0]))
    return "".join(f"{address} {name}\n" for _, address, name in records)
