"""The CloudStack stand-in's state: its database, its extension elements, its KVM agents.

`CloudStackSim` is what every command handler works on. The zone, its hosts and its
guest physical network exist from the start, as after CloudStack's zone wizard; the
operator (or the demo) adds the extension, its registration and the offerings through
the API, as on a real management server.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from simulator.cloudstack.api import ApiError, ErrorCode
from simulator.cloudstack.element import Element, ElementError, Spawn
from simulator.cloudstack.model import (
    Database,
    Extension,
    Host,
    Network,
    PhysicalNetwork,
    PublicIp,
    Vpc,
    Zone,
)
from simulator.cloudstack.orchestrator import Hypervisors, Orchestrator

ZONE_ID = 1


@dataclass(frozen=True)
class Site:
    """The zone as the operator built it: hosts, guest network, public range, DNS."""

    hosts: Sequence[str] = ("hv1", "hv2")
    zone_name: str = "zone1"
    physical_network_name: str = "guest"
    isolation: str = "VXLAN"
    public_range: str = "203.0.113.0/24"  # RFC 5737
    public_gateway: str = "203.0.113.1"
    public_first: int = 10  # the first address CloudStack hands out
    dns: tuple[str, ...] = ("192.0.2.53",)  # RFC 5737, "on the internet"


class NoKvm:
    """Hypervisors that build nothing: for the API-only tests."""

    def plug(self, vm: object, host: str, networks: object) -> None:
        pass

    def unplug(self, vm: object, host: str) -> None:
        pass


@dataclass
class CloudStackSim:
    site: Site = field(default_factory=Site)
    kvm: Hypervisors = field(default_factory=NoKvm)
    # Where extensions' entry-points live (/usr/share/cloudstack-management/extensions).
    extensions_dir: Path = Path("/usr/share/cloudstack-management/extensions")
    db: Database = field(default_factory=Database)
    elements: dict[tuple[int, int], Element] = field(default_factory=dict)
    custom_actions: dict[str, str] = field(default_factory=dict)  # UUID -> action name
    custom_action_extensions: dict[str, str] = field(default_factory=dict)  # -> extension
    _macs: itertools.count[int] = field(default_factory=lambda: itertools.count(0x10))

    def __post_init__(self) -> None:
        db, site = self.db, self.site
        db.zones.add(Zone(ZONE_ID, name=site.zone_name, dns=site.dns))
        for name in site.hosts:
            db.hosts.add(Host(db.hosts.next_id(), name=name, zone=ZONE_ID))
        db.physical_networks.add(PhysicalNetwork(
            db.physical_networks.next_id(), name=site.physical_network_name, zone=ZONE_ID,
            isolation=site.isolation))
        for address in self._public_addresses():
            db.public_ips.add(PublicIp(db.public_ips.next_id(), address=address, zone=ZONE_ID))
        self.orchestrator = Orchestrator(db, self.element_of, site.public_gateway)

    def _public_addresses(self) -> list[str]:
        network = ipaddress.ip_network(self.site.public_range)
        hosts = list(network.hosts())[self.site.public_first - 1:]
        return [str(address) for address in hosts if str(address) != self.site.public_gateway]

    # --- the extension that serves a network ----------------------------------------

    def extension_on(self, physical_network: int, providers: set[str]
                     ) -> tuple[Extension, dict[str, str]]:
        """The extension that is one of the offering's providers, with its registration
        on the physical network: NEE runs as the provider the offering names."""
        for extension in self.db.extensions.sorted():
            for registration in extension.registrations:
                if registration.physical_network == physical_network and \
                        extension.name in providers:
                    return extension, registration.details
        raise ElementError(f"no NetworkOrchestrator extension of {', '.join(sorted(providers))}"
                           f" is registered on physical network {physical_network}")

    def element_of(self, on: Network | Vpc) -> Element:
        """NEE's element for the network's (or the VPC's) physical network; its details
        re-read for every call, as ExtensionHelper does."""
        physical_network = on.physical_network if isinstance(on, Network) \
            else self.vpc_physical_network()
        providers = set(self.db.offerings[on.offering].services.values())
        extension, details = self.extension_on(physical_network, providers)
        if extension.state != "Enabled":
            raise ElementError(f"extension {extension.name} is not enabled")
        path = self.extensions_dir / extension.path
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ElementError(f"No executable script found for extension {extension.name}"
                               f" at {path}")
        key = (extension.db_id, physical_network)
        name = self.db.physical_networks[physical_network].name
        element = self.elements.setdefault(key, Element({}, path))
        element.physical_network_details = {**details, "physicalnetworkname": name}
        return element

    def vpc_physical_network(self) -> int:
        # resolveExtensionForVpc: the zone's guest physical network when tiers have none.
        return next(iter(self.db.physical_networks.sorted())).db_id

    def spawns(self) -> list[Spawn]:
        """Every run of the entry-point so far, in order per extension element."""
        return [spawn for element in self.elements.values() for spawn in element.spawns]

    # --- allocation -----------------------------------------------------------------

    def new_mac(self) -> str:
        value = next(self._macs)
        return f"1e:00:{(value >> 24) & 0xff:02x}:{(value >> 16) & 0xff:02x}:" \
               f"{(value >> 8) & 0xff:02x}:{value & 0xff:02x}"

    def guest_ip(self, network: Network) -> str:
        """The next free guest address; CloudStack picks at random, we count up so
        runs are reproducible."""
        subnet = ipaddress.ip_network(network.cidr)
        taken = {nic.ip for nic in self.db.nics.values() if nic.network == network.db_id}
        for address in itertools.islice(subnet.hosts(), network.next_host - 1, None):
            text = str(address)
            if text != network.gateway and text not in taken:
                network.next_host = int(address) - int(subnet.network_address) + 1
                return text
        raise ApiError(ErrorCode.INSUFFICIENT_CAPACITY_ERROR,
                       f"network {network.name} has no free address left")

    def free_public_ip(self) -> PublicIp:
        return self.orchestrator.free_public_ip()
