"""What the CloudStack stand-in's database holds: plain records, no behaviour.

Every object has CloudStack's two ids: the numeric database id, which
NetworkExtensionElement puts in payloads (`String.valueOf(network.getId())`), and the
UUID the API shows. The records are mutated only by the command handlers, under the
API's lock.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeVar


def new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass
class Record:
    db_id: int
    uuid: str = field(default_factory=new_uuid)


@dataclass
class Zone(Record):
    name: str = "zone1"
    dns: tuple[str, ...] = ("192.0.2.53",)


@dataclass
class Host(Record):
    name: str = ""
    zone: int = 0


@dataclass
class PhysicalNetwork(Record):
    name: str = "guest"
    zone: int = 0
    isolation: str = "VXLAN"


@dataclass
class Registration:
    """An extension registered on a physical network, with its (hidden too) details."""

    physical_network: int
    details: dict[str, str]


@dataclass
class Extension(Record):
    name: str = ""
    type: str = "NetworkOrchestrator"
    path: str = ""
    state: str = "Enabled"
    description: str = ""
    details: dict[str, str] = field(default_factory=dict)
    registrations: list[Registration] = field(default_factory=list)


@dataclass
class Provider(Record):
    """A network service provider: one per extension registered on a physical network."""

    name: str = ""
    physical_network: int = 0
    state: str = "Enabled"


@dataclass
class Offering(Record):
    """A network offering (kind "network") or a VPC offering (kind "vpc")."""

    kind: str = "network"
    name: str = ""
    display_text: str = ""
    guest_type: str = "Isolated"
    services: dict[str, str] = field(default_factory=dict)  # service -> provider
    capabilities: list[dict[str, str]] = field(default_factory=list)
    for_vpc: bool = False
    mode: str = "NATTED"
    egress_default_allow: bool = True
    state: str = "Disabled"


@dataclass
class Vpc(Record):
    name: str = ""
    zone: int = 0
    offering: int = 0
    cidr: str = ""
    state: str = "Enabled"
    domain: str = ""
    source_nat_ip: int | None = None


@dataclass
class Network(Record):
    name: str = ""
    zone: int = 0
    physical_network: int = 0
    offering: int = 0
    cidr: str = ""
    gateway: str = ""
    vpc: int | None = None
    acl: int | None = None
    state: str = "Allocated"  # Allocated, Implemented, Shutdown, Destroy
    broadcast_uri: str = ""
    domain: str = ""
    next_host: int = 2  # the next guest address handed out (.1 is the gateway)


@dataclass
class Nic(Record):
    network: int = 0
    mac: str = ""
    ip: str = ""
    netmask: str = ""
    gateway: str = ""
    default: bool = True
    device_id: int = 0


@dataclass
class Vm(Record):
    name: str = ""
    zone: int = 0
    host: int | None = None
    state: str = "Stopped"  # Running, Stopped, Destroyed
    nics: list[Nic] = field(default_factory=list)
    user_data: str | None = None  # plain text, as NEE sends it
    password: str | None = None
    ssh_key: str = ""


@dataclass
class PublicIp(Record):
    address: str = ""
    zone: int = 0
    network: int | None = None
    vpc: int | None = None
    source_nat: bool = False
    static_nat_vm: int | None = None
    static_nat_ip: str = ""
    state: str = "Free"  # Free, Allocated


@dataclass
class FirewallRule(Record):
    network: int = 0
    traffic: str = "ingress"
    protocol: str = "tcp"
    ports: tuple[int, int] | None = None
    icmp: tuple[int, int] | None = None
    public_ip: int | None = None
    source_cidrs: list[str] = field(default_factory=list)
    dest_cidrs: list[str] = field(default_factory=list)


@dataclass
class PortForward(Record):
    network: int = 0
    public_ip: int = 0
    protocol: str = "tcp"
    public_ports: tuple[int, int] = (0, 0)
    private_ports: tuple[int, int] = (0, 0)
    vm: int = 0
    private_ip: str = ""


@dataclass
class LoadBalancer(Record):
    network: int = 0
    name: str = ""
    public_ip: int = 0
    public_port: int = 0
    private_port: int = 0
    algorithm: str = "roundrobin"
    protocol: str = "tcp"
    members: list[int] = field(default_factory=list)  # VM db ids


@dataclass
class AclList(Record):
    name: str = ""
    description: str = ""
    vpc: int | None = None  # None: the two system lists, default_allow and default_deny


@dataclass
class AclItem(Record):
    acl: int = 0
    number: int = 0
    action: str = "allow"
    traffic: str = "ingress"
    protocol: str = "all"
    ports: tuple[int, int] | None = None
    icmp: tuple[int, int] | None = None
    source_cidrs: list[str] = field(default_factory=list)


T = TypeVar("T", bound=Record)


class Table(dict[int, T]):
    """One table: records by database id, each new one numbered after the last."""

    def __init__(self, first_id: int = 1) -> None:
        super().__init__()
        self._ids = itertools.count(first_id)

    def next_id(self) -> int:
        return next(self._ids)

    def add(self, record: T) -> T:
        self[record.db_id] = record
        return record

    def by_uuid(self, value: str) -> T | None:
        return next((r for r in self.values() if r.uuid == value), None)

    def sorted(self) -> Iterator[T]:
        return iter(sorted(self.values(), key=lambda r: r.db_id))


@dataclass
class Database:
    zones: Table[Zone] = field(default_factory=Table)
    hosts: Table[Host] = field(default_factory=Table)
    physical_networks: Table[PhysicalNetwork] = field(default_factory=lambda: Table(200))
    extensions: Table[Extension] = field(default_factory=Table)
    providers: Table[Provider] = field(default_factory=Table)
    offerings: Table[Offering] = field(default_factory=Table)
    vpcs: Table[Vpc] = field(default_factory=Table)
    networks: Table[Network] = field(default_factory=lambda: Table(204))
    vms: Table[Vm] = field(default_factory=Table)
    nics: Table[Nic] = field(default_factory=Table)
    public_ips: Table[PublicIp] = field(default_factory=Table)
    firewall_rules: Table[FirewallRule] = field(default_factory=Table)
    port_forwards: Table[PortForward] = field(default_factory=Table)
    load_balancers: Table[LoadBalancer] = field(default_factory=Table)
    acl_lists: Table[AclList] = field(default_factory=Table)
    acl_items: Table[AclItem] = field(default_factory=Table)
