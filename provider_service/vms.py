"""Guest NICs, their DHCP leases and DNS names, VM data, and a network's DHCP/DNS service.

One function per CloudStack command, each idempotent: the same request twice changes
nothing the second time, and removing what is not there is a no-op. Every NIC-scoped
command carries the NIC (addNicToPayload), so each one upserts the NIC it names: the
orchestrator ignores a failed prepare-nic and goes on with add-dhcp-entry, which must
not then fail for want of a NIC.

A request's NIC fields that are left out keep their stored value (a new NIC gets the
defaults); "" clears an address or a host name. Specs are validated before they get here;
what needs the database (the network's CIDRs, other NICs) is checked here, before
anything is written.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field, replace
from typing import Literal

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from provider_service import validation as v
from provider_service.errors import BadRequest, Conflict, NotFound
from provider_service.models import Network
from provider_service.models.vms import (
    PASSWORD_CHECKSUM_FILE,
    PASSWORD_DIR,
    PASSWORD_FILE,
    NetworkServices,
    Nic,
    NicVmData,
)
from provider_service.tenancy import get_network

Service = Literal["dhcp", "dns"]


@dataclass(frozen=True)
class NetworkFacts:
    """Network values the NIC payload repeats (gateway, netmask, IPv6 gateway and CIDR).

    Accepted so the plugin can pass the NIC builder's output through; checked against the
    network, so a call routed to the wrong network is refused instead of half-applied.
    """

    gateway: str | None = None
    netmask: str | None = None
    ip6_gateway: str | None = None
    ip6_cidr: str | None = None


@dataclass(frozen=True)
class NicSpec:
    """What a request says about a NIC; None means "keep what is stored"."""

    network_id: str
    mac: str
    nic_id: str | None = None
    nic_uuid: str | None = None
    ip: str | None = None  # "" = no IPv4 address
    ip6_address: str | None = None  # "" = no IPv6 address
    hostname: str | None = None  # "" = no host name
    default_nic: bool | None = None
    device_id: str | None = None
    facts: NetworkFacts = NetworkFacts()


@dataclass(frozen=True)
class DnsInfo:
    """addNetworkDnsToPayload: the DNS servers (comma-joined) and domain; None = keep."""

    dns: str | None = None
    domain: str | None = None


@dataclass(frozen=True)
class VmDataItem:
    dir: str
    file: str
    content: str


@dataclass(frozen=True)
class RestoreNic:
    nic: NicSpec
    vm_data: tuple[VmDataItem, ...] = ()


@dataclass(frozen=True)
class RestoreSpec:
    """restore-network's restore_data: the network's whole DHCP/DNS/VM-data state."""

    network_id: str
    dhcp_enabled: bool
    dns_enabled: bool
    userdata_enabled: bool
    dns_info: DnsInfo = DnsInfo()
    nics: tuple[RestoreNic, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _NicState:
    """A NIC's values after a request: checked whole before any of it is written."""

    nic_id: str
    nic_uuid: str
    ip: str | None
    ip6_address: str | None
    hostname: str
    default_nic: bool
    device_id: str
    dhcp_entry: bool
    dns_entry: bool

    @property
    def dns_name(self) -> str | None:
        return self.hostname.lower() if self.dns_entry else None


# --- NICs (prepare-nic / release-nic) --------------------------------------------------


def apply_nic(session: Session, spec: NicSpec) -> Nic:
    return _upsert(session, spec)


def delete_nic(session: Session, network_id: str, mac: str) -> None:
    nic = session.get(Nic, (network_id, mac))
    if nic is not None:
        session.delete(nic)  # its VM data goes with it: ON DELETE CASCADE
        session.flush()


def get_nic(session: Session, network_id: str, mac: str, *, content: bool = False) -> Nic:
    get_network(session, network_id)
    query = _nics(content).where(Nic.network_id == network_id, Nic.mac == mac)
    nic = session.scalars(query).first()
    if nic is None:
        raise NotFound(f"unknown NIC {mac} on network {network_id}")
    return nic


def list_nics(session: Session, network_id: str, *, content: bool = False) -> list[Nic]:
    get_network(session, network_id)
    query = _nics(content).where(Nic.network_id == network_id).order_by(Nic.mac)
    return list(session.scalars(query))


# --- DHCP and DNS entries (add/remove-dhcp-entry, add/remove-dns-entry) ----------------


def apply_entry(session: Session, service: Service, spec: NicSpec, dns_info: DnsInfo) -> Nic:
    nic = _upsert(session, spec, dhcp=True if service == "dhcp" else None,
                  dns=True if service == "dns" else None)
    # The entry commands carry the network's DNS servers and domain too; without the
    # DhcpAccrossMultipleSubnets capability they are the only commands that do.
    if dns_info != DnsInfo():
        _update_dns_info(_services(session, spec.network_id), dns_info)
        session.flush()
    return nic


def delete_entry(session: Session, service: Service, network_id: str, mac: str) -> None:
    nic = session.get(Nic, (network_id, mac))
    if nic is None:
        return
    if service == "dhcp":
        nic.dhcp_entry = False
    else:
        nic.dns_name = None
    session.flush()


# --- a network's DHCP/DNS service (config-/remove-dhcp-subnet, -dns-subnet) ------------


def apply_service(
    session: Session, network_id: str, service: Service, dns_info: DnsInfo
) -> NetworkServices:
    get_network(session, network_id)
    services = _services(session, network_id)
    if service == "dhcp":
        services.dhcp_enabled = True
    else:
        services.dns_enabled = True
    _update_dns_info(services, dns_info)
    session.flush()
    return services


def delete_service(session: Session, network_id: str, service: Service) -> None:
    services = session.get(NetworkServices, network_id)
    if services is None:
        return
    if service == "dhcp":
        services.dhcp_enabled = False
    else:
        services.dns_enabled = False
    session.flush()


def get_services(session: Session, network_id: str) -> NetworkServices:
    """The network's service state; a network never configured gets the defaults."""
    get_network(session, network_id)
    return session.get(NetworkServices, network_id) or _new_services(network_id)


# --- VM data (save-vm-data, save-password, save-userdata, save-sshkey, ...) ------------


def apply_vm_data(session: Session, spec: NicSpec, items: tuple[VmDataItem, ...]) -> Nic:
    """save-vm-data: the NIC's whole VM data. The password is kept unless the new set
    has one: CloudStack sends it only when it generated a new one."""
    _load_with_content(session, spec)
    nic = _upsert(session, spec)
    _replace_vm_data(nic, items)
    session.flush()
    return nic


def apply_vm_data_item(session: Session, spec: NicSpec, item: VmDataItem) -> Nic:
    """save-password, save-userdata, save-sshkey, save-hypervisor-hostname: one file."""
    _load_with_content(session, spec)
    nic = _upsert(session, spec)
    wanted = {(x.dir, x.file): x.content for x in nic.vm_data}
    wanted[(item.dir, item.file)] = item.content
    checksum = (PASSWORD_DIR, PASSWORD_CHECKSUM_FILE)
    if (item.dir, item.file) == (PASSWORD_DIR, PASSWORD_FILE) and checksum in wanted:
        # Only Windows VMs get a checksum; a stale one would no longer match.
        wanted[checksum] = password_checksum(item.content)
    _set_vm_data(nic, wanted)
    session.flush()
    return nic


def password_checksum(password: str) -> str:
    """As CloudStack computes it: hex MD5 without leading zeros (BigInteger.toString(16))."""
    digest = hashlib.md5(password.encode("utf-8"), usedforsecurity=False).digest()
    return format(int.from_bytes(digest, "big"), "x")


# --- restore-network -------------------------------------------------------------------


def restore_network(session: Session, spec: RestoreSpec) -> tuple[NetworkServices, list[Nic]]:
    """The network's whole DHCP/DNS/VM-data state in one transaction.

    The listed NICs become the network's only ones: CloudStack lists every user-VM NIC
    with an address, and the reference rebuilds its files from the list alone. So the
    final set is checked for shared addresses and names as a whole, and NICs may trade
    them (NICs applied one by one would collide half-way). Passwords are never re-sent:
    kept.
    """
    network = get_network(session, spec.network_id, lock=True)  # see _upsert
    stored = {nic.mac: nic for nic in list_nics(session, spec.network_id, content=True)}
    # Each NIC gets the entries it can have (a lease needs an IPv4 address, a DNS entry a
    # host name): one odd VM must not fail the restart of the whole network.
    states = [
        (item, _checked_state(network, stored.get(item.nic.mac), item.nic, spec.dhcp_enabled,
                              spec.dns_enabled, entries_if_possible=True))
        for item in spec.nics
    ]
    _check_unique_among(spec.network_id, [(item.nic.mac, state) for item, state in states])
    _clear_for_restore(session, stored, {item.nic.mac: state for item, state in states})
    nics = []
    for item, state in states:
        nic = _store(session, item.nic, stored.get(item.nic.mac), state)
        if spec.userdata_enabled:
            _replace_vm_data(nic, item.vm_data)
        else:
            nic.vm_data = []  # not our service (any more): serve nothing, keep no secrets
        nics.append(nic)
    services = _services(session, spec.network_id)
    services.dhcp_enabled, services.dns_enabled = spec.dhcp_enabled, spec.dns_enabled
    _update_dns_info(services, spec.dns_info)
    session.flush()
    return services, sorted(nics, key=lambda nic: nic.mac)


def _clear_for_restore(
    session: Session, stored: dict[str, Nic], final: dict[str, _NicState]
) -> None:
    """Delete the unlisted NICs and free the addresses and names that move, in one flush
    before any NIC takes its new ones. Unchanged NICs are not touched (no UPDATE)."""
    for mac, nic in stored.items():
        state = final.get(mac)
        if state is None:
            session.delete(nic)
        elif (nic.ip, nic.ip6_address, nic.dns_name) != (state.ip, state.ip6_address,
                                                         state.dns_name):
            nic.ip = nic.ip6_address = nic.dns_name = None
    session.flush()


# --- internals -------------------------------------------------------------------------

_NEW_NIC = _NicState(nic_id="", nic_uuid="", ip=None, ip6_address=None, hostname="",
                     default_nic=True, device_id="", dhcp_entry=False, dns_entry=False)


def _upsert(
    session: Session, spec: NicSpec, *, dhcp: bool | None = None, dns: bool | None = None
) -> Nic:
    """Create or update the NIC; `dhcp`/`dns` set its entries (None: leave them)."""
    # Locked: the NIC is checked against the network's addresses, which must not change
    # before this transaction ends (tenancy.apply_network refuses once NICs exist).
    network = get_network(session, spec.network_id, lock=True)
    nic = session.get(Nic, (spec.network_id, spec.mac))
    state = _checked_state(network, nic, spec, dhcp, dns)
    _check_unique(session, spec, state)
    return _store(session, spec, nic, state)


def _checked_state(
    network: Network,
    nic: Nic | None,
    spec: NicSpec,
    dhcp: bool | None,
    dns: bool | None,
    *,
    entries_if_possible: bool = False,
) -> _NicState:
    state = _merge(_state_of(nic) if nic is not None else _NEW_NIC, spec, dhcp, dns)
    if entries_if_possible:
        state = replace(state, dhcp_entry=state.dhcp_entry and state.ip is not None,
                        dns_entry=state.dns_entry and bool(state.hostname))
    _check_entries(state)
    _check_against_network(network, spec.facts, state)
    return state


def _store(session: Session, spec: NicSpec, nic: Nic | None, state: _NicState) -> Nic:
    if nic is None:
        nic = Nic(network_id=spec.network_id, mac=spec.mac)
        session.add(nic)
    _assign(nic, state)
    session.flush()
    return nic


def _state_of(nic: Nic) -> _NicState:
    return _NicState(nic_id=nic.nic_id, nic_uuid=nic.nic_uuid, ip=nic.ip,
                     ip6_address=nic.ip6_address, hostname=nic.hostname,
                     default_nic=nic.default_nic, device_id=nic.device_id,
                     dhcp_entry=nic.dhcp_entry, dns_entry=nic.dns_name is not None)


def _merge(old: _NicState, spec: NicSpec, dhcp: bool | None, dns: bool | None) -> _NicState:
    def pick(new: str | None, stored: str | None) -> str | None:
        return stored if new is None else (new or None)

    return _NicState(
        nic_id=spec.nic_id if spec.nic_id is not None else old.nic_id,
        nic_uuid=spec.nic_uuid if spec.nic_uuid is not None else old.nic_uuid,
        ip=pick(spec.ip, old.ip),
        ip6_address=pick(spec.ip6_address, old.ip6_address),
        hostname=spec.hostname if spec.hostname is not None else old.hostname,
        default_nic=spec.default_nic if spec.default_nic is not None else old.default_nic,
        device_id=spec.device_id if spec.device_id is not None else old.device_id,
        dhcp_entry=dhcp if dhcp is not None else old.dhcp_entry,
        dns_entry=dns if dns is not None else old.dns_entry,
    )


def _check_entries(state: _NicState) -> None:
    if state.dhcp_entry and state.ip is None:
        raise BadRequest("ip: a DHCP entry needs the NIC's IPv4 address")
    if state.dns_entry and not state.hostname:
        raise BadRequest("hostname: a DNS entry needs a host name")
    if state.dns_entry and state.ip is None and state.ip6_address is None:
        raise BadRequest("ip: a DNS entry needs an IPv4 or IPv6 address")


def _check_against_network(network: Network, facts: NetworkFacts, state: _NicState) -> None:
    cidr = ipaddress.ip_network(network.cidr)
    if facts.gateway is not None and facts.gateway != network.gateway:
        raise BadRequest(f"gateway: {facts.gateway} is not network {network.id}'s "
                         f"gateway {network.gateway}")
    if facts.netmask is not None and facts.netmask != str(cidr.netmask):
        raise BadRequest(f"netmask: {facts.netmask} does not match network {network.id}'s "
                         f"{network.cidr}")
    for name, given, own in (("ip6_gateway", facts.ip6_gateway, network.ip6_gateway),
                             ("ip6_cidr", facts.ip6_cidr, network.ip6_cidr)):
        if given is not None and given != own:
            raise BadRequest(f"{name}: {given} is not network {network.id}'s "
                             f"{own or 'IPv6 (it has none)'}")
    if state.ip is not None:
        _check_address(network, "ip", state.ip, network.cidr,
                       (network.gateway, network.extension_ip))
    if state.ip6_address is not None:
        if not network.ip6_cidr:
            raise BadRequest(f"ip6_address: network {network.id} has no IPv6 network")
        _check_address(network, "ip6_address", state.ip6_address, network.ip6_cidr,
                       (network.ip6_gateway,))


def _check_address(
    network: Network, field: str, address: str, cidr: str, taken: tuple[str, ...]
) -> None:
    v.gateway_in_cidr(ipaddress.ip_address(address), ipaddress.ip_network(cidr), field)
    if address in taken:
        raise Conflict(f"{field}: {address} is network {network.id}'s own address")


def _check_unique(session: Session, spec: NicSpec, state: _NicState) -> None:
    """Against the network's other NICs as stored (the constraints' clear-worded twin)."""
    others = select(Nic).where(Nic.network_id == spec.network_id, Nic.mac != spec.mac)
    for name, column, value in (("ip", Nic.ip, state.ip),
                                ("ip6_address", Nic.ip6_address, state.ip6_address),
                                ("hostname", Nic.dns_name, state.dns_name)):
        if value is not None:
            other = session.scalars(others.where(column == value).limit(1)).first()
            if other is not None:
                raise _taken(name, state, value, other.mac, spec.network_id)


def _check_unique_among(network_id: str, states: list[tuple[str, _NicState]]) -> None:
    """Within one set of NICs, as restore-network lists them."""
    holders: dict[tuple[str, str], str] = {}
    for mac, state in states:
        for name, value in (("ip", state.ip), ("ip6_address", state.ip6_address),
                            ("hostname", state.dns_name)):
            if value is not None:
                holder = holders.setdefault((name, value), mac)
                if holder != mac:
                    raise _taken(name, state, value, holder, network_id)


def _taken(name: str, state: _NicState, value: str, holder: str, network_id: str) -> Conflict:
    shown = state.hostname if name == "hostname" else value
    return Conflict(f"{name}: {shown} is already used by NIC {holder} on network {network_id}")


def _assign(nic: Nic, state: _NicState) -> None:
    # Same values assigned again make no UPDATE (SQLAlchemy compares), so a replay leaves
    # updated_at alone.
    nic.nic_id, nic.nic_uuid = state.nic_id, state.nic_uuid
    nic.ip, nic.ip6_address = state.ip, state.ip6_address
    nic.hostname, nic.default_nic, nic.device_id = (state.hostname, state.default_nic,
                                                     state.device_id)
    nic.dhcp_entry, nic.dns_name = state.dhcp_entry, state.dns_name


def _nics(content: bool) -> Select[Nic]:
    if not content:
        return select(Nic)
    # Comparing VM data needs the deferred contents: one query instead of one per file.
    return select(Nic).options(selectinload(Nic.vm_data).undefer(NicVmData.content))


def _load_with_content(session: Session, spec: NicSpec) -> None:
    """Puts the NIC, contents loaded, in the session for _upsert's session.get to find."""
    query = _nics(True).where(Nic.network_id == spec.network_id, Nic.mac == spec.mac)
    session.scalars(query).first()


def _services(session: Session, network_id: str) -> NetworkServices:
    services = session.get(NetworkServices, network_id)
    if services is None:
        services = _new_services(network_id)
        session.add(services)
    return services


def _new_services(network_id: str) -> NetworkServices:
    # Column defaults apply only on INSERT; a new object is read before that.
    return NetworkServices(network_id=network_id, dhcp_enabled=False, dns_enabled=False,
                           dns="", domain="")


def _update_dns_info(services: NetworkServices, info: DnsInfo) -> None:
    if info.dns is not None:
        services.dns = info.dns
    if info.domain is not None:
        services.domain = info.domain


def _replace_vm_data(nic: Nic, items: tuple[VmDataItem, ...]) -> None:
    wanted = {(item.dir, item.file): item.content for item in items}
    if not any(directory == PASSWORD_DIR for directory, _ in wanted):
        wanted |= {(x.dir, x.file): x.content for x in nic.vm_data if x.dir == PASSWORD_DIR}
    _set_vm_data(nic, wanted)


def _set_vm_data(nic: Nic, wanted: dict[tuple[str, str], str]) -> None:
    nic.vm_data = [item for item in nic.vm_data if (item.dir, item.file) in wanted]
    have = {(item.dir, item.file): item for item in nic.vm_data}
    for (directory, name), content in wanted.items():
        item = have.get((directory, name))
        if item is None:
            nic.vm_data.append(NicVmData(dir=directory, file=name, content=content))
        elif item.content != content:
            item.content = content
