"""What CloudStack's NetworkExtensionElement sends to an extension, and how it runs it.

protocol.md §2.3's payload builders (N, V, NIC, DNS, EIP, PIP: the same keys and types,
ids and flags as strings, rule numbers as numbers, revoke/revoked/*_enabled as booleans,
optional keys absent when blank), one payload per command (§3), `gson()` (JSON as Gson
writes it, HTML-safe escapes), `run_entry_point()` (the payload file, the argv, the merged
output) and `Element`, which adds the ensure-network-device before each network command
and keeps the details CloudStack stores. The simulator's CloudStack stand-in and the
extension's tests both build their calls here, so both send exactly what NEE sends.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
ENTRY_POINT = REPO / "plugin" / "vxgate_extension.py"
TIMEOUT_ARG = "60"  # NEE's DEFAULT_SCRIPT_TIMEOUT_SECONDS
RUN_LIMIT_S = 30.0  # CloudStack waits forever; a simulation must not
ZONE = "1"
DNS_SERVERS = ("192.0.2.53", "192.0.2.54")
Json = dict[str, Any]

_GSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "=": "\\u003d",
                               "'": "\\u0027", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def gson(value: object) -> str:
    """JSON as Gson's toJson writes it: compact, UTF-8, HTML-safe escapes inside strings
    (outside strings JSON has none of these characters, so translating the text is safe)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_GSON_ESCAPES)


@dataclass(frozen=True)
class Vpc:
    id: str
    cidr: str
    zone_id: str = ZONE
    state: str = "enabled"


@dataclass(frozen=True)
class Net:
    """A guest network; `vlan` is "" until CloudStack stored our broadcast URI."""

    id: str
    cidr: str
    gateway: str
    vpc: Vpc | None = None
    zone_id: str = ZONE
    guest_type: str = "isolated"
    state: str = "implemented"
    vlan: str = ""
    ip6_gateway: str = ""
    ip6_cidr: str = ""


@dataclass(frozen=True)
class Nic:
    nic_id: str
    mac: str
    ip: str
    gateway: str
    netmask: str = "255.255.255.0"
    uuid: str = ""
    default: bool = True
    device_id: str | None = "0"
    ip6_address: str = ""


@dataclass(frozen=True)
class PublicIp:
    address: str
    prefix: int = 24
    gateway: str = "203.0.113.1"
    vlan: str = "vlan://101"


# --- the payload builders (protocol.md §2.3) -------------------------------------------


def _present(**values: str | None) -> dict[str, str]:
    return {key: value for key, value in values.items() if value}


def N(net: Net) -> Json:  # protocol.md's notation
    """addNetworkToPayload."""
    return {"network_id": net.id, "vlan": net.vlan, "zone_id": net.zone_id,
            **_present(guest_type=net.guest_type, network_state=net.state, gateway=net.gateway,
                       cidr=net.cidr, vpc_id=net.vpc.id if net.vpc else None,
                       network_ip6_gateway=net.ip6_gateway, network_ip6_cidr=net.ip6_cidr)}


def V(vpc: Vpc) -> Json:
    """addVpcToPayload."""
    return {"vpc_id": vpc.id, "zone_id": vpc.zone_id,
            **_present(vpc_state=vpc.state, vpc_cidr=vpc.cidr)}


def NIC(nic: Nic) -> Json:
    """addNicToPayload; its gateway overwrites N's (the same for guest NICs)."""
    payload: Json = {"nic_id": nic.nic_id, **_present(nic_uuid=nic.uuid), "mac": nic.mac,
                     "ip": nic.ip, **_present(gateway=nic.gateway, netmask=nic.netmask),
                     "default_nic": str(nic.default).lower()}
    if nic.device_id is not None:
        payload["device_id"] = nic.device_id
    return {**payload, **_present(ip6_address=nic.ip6_address)}


def DNS(domain: str = "", servers: Sequence[str] = DNS_SERVERS) -> Json:
    """addNetworkDnsToPayload: DNS1[,DNS2] and the network domain ("" when none)."""
    return {"dns": ",".join(servers), "domain": domain}


def EIP(net: Net) -> Json:
    """addExtensionIpToPayload: we provide SourceNat, so the extension IP is the gateway."""
    return _present(extension_ip=net.gateway)


def PIP(ip: PublicIp, source_nat: bool) -> Json:
    """addPublicIpToPayload."""
    return {"public_ip": ip.address, "public_vlan": ip.vlan, "public_gateway": ip.gateway,
            "public_cidr": f"{ip.address}/{ip.prefix}", "source_nat": str(source_nat).lower()}


# --- one payload per command (protocol.md §3) ------------------------------------------


def ensure_network(net: Net, current: str = "{}") -> Json:
    return {**N(net), "current_details": current}


def ensure_vpc(vpc: Vpc, current: str = "{}") -> Json:
    return {**V(vpc), "current_details": current}


def implement_network(net: Net) -> Json:
    return {**N(net), **EIP(net)}


def public_ip(net: Net, ip: PublicIp, source_nat: bool) -> Json:
    """assign-ip / release-ip."""
    return {**N(net), **PIP(ip, source_nat)}


def static_nat(net: Net, ip: PublicIp, private_ip: str) -> Json:
    return {**N(net), **PIP(ip, False), "private_ip": private_ip}


def port_forward(net: Net, ip: PublicIp, protocol: str, public_port: str, private_ip: str,
                 private_port: str) -> Json:
    return {**N(net), **PIP(ip, False), "public_port": public_port, "private_ip": private_ip,
            "private_port": private_port, "protocol": protocol}


def _ports(ports: tuple[int, int] | None, icmp: tuple[int, int] | None) -> Json:
    """Rule numbers, as JSON numbers, only when the rule has them."""
    return {**({"portStart": ports[0], "portEnd": ports[1]} if ports else {}),
            **({"icmpType": icmp[0], "icmpCode": icmp[1]} if icmp else {})}


def fw_rule(rule_id: int, kind: str, protocol: str, *, ports: tuple[int, int] | None = None,
            icmp: tuple[int, int] | None = None, public_ip: str | None = None,
            source: Sequence[str] = (), dest: Sequence[str] = ()) -> Json:
    return {"id": rule_id, "type": kind, "protocol": protocol, **_ports(ports, icmp),
            # NEE's getIpAddress: "" for a rule on no public IP (a ROUTED network's).
            **({"publicIp": public_ip or ""} if kind == "ingress" else {}),
            "sourceCidrs": list(source), "destCidrs": list(dest)}


def fw_rules(net: Net, rules: Sequence[Json], default_egress_allow: bool = True) -> Json:
    return {**N(net), "fw_rules": {"default_egress_allow": default_egress_allow,
                                   "cidr": net.cidr, "rules": list(rules)}}


def acl_item(number: int, action: str, traffic: str, protocol: str, *,
             ports: tuple[int, int] | None = None, icmp: tuple[int, int] | None = None,
             source: Sequence[str] = ()) -> Json:
    return {"number": number, "action": action, "trafficType": traffic, "protocol": protocol,
            **_ports(ports, icmp), "sourceCidrs": list(source)}


def acl(net: Net, items: Sequence[Json]) -> Json:
    return {**N(net), "acl_rules": sorted(items, key=lambda item: int(item["number"]))}


def lb_rule(rule_id: int, name: str, ip: PublicIp, port: int, private_port: int,
            backends: Sequence[tuple[str, int, bool]], *, algorithm: str = "roundrobin",
            revoke: bool = False) -> Json:
    return {"id": rule_id, "name": name, "publicIp": ip.address, "publicPort": port,
            "privatePort": private_port, "protocol": "tcp", "algorithm": algorithm,
            "revoke": revoke, "backends": [{"ip": address, "port": member_port,
                                            "revoked": revoked}
                                           for address, member_port, revoked in backends]}


def lb(net: Net, rules: Sequence[Json]) -> Json:
    return {**N(net), "lb_rules": list(rules)}


def prepare_nic(net: Net, nic: Nic, hostname: str) -> Json:
    return {**N(net), **NIC(nic), "hostname": hostname, **EIP(net)}


def nic_only(net: Net, nic: Nic) -> Json:
    """release-nic, remove-dhcp-entry."""
    return {**N(net), **NIC(nic), **EIP(net)}


def dhcp_entry(net: Net, nic: Nic, hostname: str, domain: str = "") -> Json:
    return {**N(net), **NIC(nic), "hostname": hostname, **DNS(domain), **EIP(net)}


def dns_entry(net: Net, nic: Nic, hostname: str, domain: str = "") -> Json:
    return {**N(net), **DNS(domain), **NIC(nic), "hostname": hostname, **EIP(net)}


def remove_dns_entry(net: Net, nic: Nic, domain: str = "") -> Json:
    return {**N(net), **DNS(domain), **NIC(nic), **EIP(net)}


def config_subnet(net: Net, nic: Nic, domain: str = "") -> Json:
    """config-dhcp-subnet, config-dns-subnet."""
    return {**N(net), **DNS(domain), **EIP(net), **NIC(nic)}


def remove_dhcp_subnet(net: Net) -> Json:
    return {**N(net), **EIP(net)}


def remove_dns_subnet(net: Net, domain: str = "") -> Json:
    return {**N(net), **DNS(domain), **EIP(net)}


def save_vm_data(net: Net, nic: Nic, items: Sequence[Json]) -> Json:
    return {**N(net), **NIC(nic), "ip": nic.ip, **EIP(net), "vm_data": list(items)}


def save_item(net: Net, nic: Nic, key: str, value: str) -> Json:
    """save-password (password), save-userdata (userdata), save-sshkey (sshkey),
    save-hypervisor-hostname (hypervisor_hostname)."""
    return {**N(net), **NIC(nic), key: value, **EIP(net)}


def vm_data(nic: Nic, hostname: str, vm_id: int, *, userdata: str | None = None,
            public_key: str = "", password: str | None = None,
            hypervisor_host: str = "kvm-1", zone: str = "zone1") -> list[Json]:
    """generateVmData's files, as NEE sends them: user data base64-decoded, null → ""."""
    files: list[tuple[str, str, str]] = []
    if userdata is not None:
        files.append(("userdata", "user_data", userdata))
    files += [("metadata", name, content) for name, content in (
        ("service-offering", "Small Instance"), ("availability-zone", zone),
        ("local-hostname", hostname), ("local-ipv4", nic.ip), ("public-hostname", nic.ip),
        ("public-ipv4", nic.ip), ("instance-id", f"i-2-{vm_id}-VM"), ("vm-id", str(vm_id)),
        ("public-keys", public_key),
        ("cloud-identifier", "CloudStack-{7d3f6f0e-0f43-4f0c-9a6b-2f0a6c1b9e21}"))]
    if password:
        files.append(("password", "vm_password", password))
    files.append(("metadata", "hypervisor-host-name", hypervisor_host))
    return [{"dir": d, "file": f, "content": content} for d, f, content in files]


def restore_vm(nic: Nic, hostname: str, items: Sequence[Json], domain: str = "") -> Json:
    """One VM of restore_data.vms: device_id a string, default_nic a boolean."""
    return {**DNS(domain), "ip": nic.ip, "ip6_address": nic.ip6_address, "mac": nic.mac,
            "nic_uuid": nic.uuid, "hostname": hostname, "device_id": str(nic.device_id),
            "default_nic": nic.default, "vm_data": list(items)}


def restore_network(net: Net, vms: Sequence[Json], domain: str = "") -> Json:
    return {**N(net), **EIP(net), **DNS(domain), "restore_data": {
        "dhcp_enabled": True, "dns_enabled": True, "userdata_enabled": True, "vms": list(vms)}}


# --- envelopes and running the entry-point ---------------------------------------------


def envelope(physical_network_details: Mapping[str, str], details: Json, payload: Json) -> Json:
    return {"physical-network-extension-details": dict(physical_network_details),
            "network-extension-details": details, "payload": payload}


def custom_action(fields: Json, action: str, params: Mapping[str, str]) -> Json:
    """runCustomAction's fields: N or V, the action and its parameters (all strings)."""
    return {**fields, "action": action, "action-params": dict(params)}


def event_of(command: str, physical_network_details: Mapping[str, str], details: Json,
             payload: Json) -> Json:
    """The file's content: custom-action is flat (no `payload` wrapper), all else wrapped."""
    if command == "custom-action":
        return {**payload, "physical-network-extension-details": dict(physical_network_details),
                "network-extension-details": details}
    return envelope(physical_network_details, details, payload)


def _spawn(argv: Sequence[str], entry_point: Path = ENTRY_POINT) -> tuple[int, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VXGATE_")}
    done = subprocess.run([str(entry_point), *argv], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                          timeout=RUN_LIMIT_S, check=False)
    return done.returncode, done.stdout.decode("utf-8", "replace").strip()


@contextmanager
def payload_file(command: str, content: str | bytes) -> Iterator[str]:
    """A cs-extnet-<command>-*.payload temp file, mode 0600, deleted afterwards."""
    fd, path = tempfile.mkstemp(prefix=f"cs-extnet-{command}-", suffix=".payload")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode("utf-8") if isinstance(content, str) else content)
        yield path
    finally:
        os.unlink(path)


def run_entry_point(command: str, event: Json | str, timeout: str = TIMEOUT_ARG, *,
                    entry_point: Path = ENTRY_POINT) -> tuple[int, str]:
    """(exit code, trimmed output) of one call; `event` as an object, or raw file text."""
    with payload_file(command, event if isinstance(event, str) else gson(event)) as path:
        return _spawn([command, path, timeout], entry_point)


def run_legacy(command: str, flags: Sequence[tuple[str, str]],
               physical_network_details: Mapping[str, str],
               details: Json, file: tuple[str, object] | None = None) -> tuple[int, str]:
    """The pre-merge flag form (protocol.md §9): the two JSON blobs appended last; a rule or
    VM-data file flag names a temp file holding base64(JSON)."""
    argv = [part for flag, value in flags for part in (flag, value)]
    blobs = ["--physical-network-extension-details", gson(dict(physical_network_details)),
             "--network-extension-details", gson(details)]
    if file is None:
        return _spawn([command, *argv, *blobs])
    with payload_file(command, base64.b64encode(gson(file[1]).encode())) as path:
        return _spawn([command, *argv, file[0], path, *blobs])


def base64_contents(items: Sequence[Json]) -> list[Json]:
    """The legacy vm-data file's list: every `content` base64-encoded."""
    return [{**item, "content": base64.b64encode(item["content"].encode()).decode()}
            for item in items]


@dataclass(frozen=True)
class Spawn:
    """One run of the entry-point, as CloudStack's log would show it."""

    command: str
    scope: str
    code: int
    output: str
    seconds: float


class Element:
    """What NetworkExtensionElement keeps between calls and does around each one.

    Every network command is preceded by ensure-network-device (VPC tiers: at VPC
    level), whose trimmed output is stored verbatim and handed back as
    network-extension-details and, as a string, as the next ensure's current_details.
    `physical_network_details` are the registration's details (hidden ones included)
    with `physicalnetworkname`, as ExtensionHelper reads them for every call.
    """

    def __init__(self, physical_network_details: Mapping[str, str],
                 entry_point: Path = ENTRY_POINT) -> None:
        self.physical_network_details = dict(physical_network_details)
        self.entry_point = entry_point
        self.stored: dict[str, str] = {}
        self.spawns: list[Spawn] = []

    def details(self, scope: str) -> Json:
        try:
            parsed = json.loads(self.stored.get(scope, "{}"))
        except ValueError:
            # NEE throws here, and every later command of the network fails with it.
            raise ElementError(f"stored extension.details of {scope} are not JSON") from None
        return parsed if isinstance(parsed, dict) else {}

    def ensure(self, on: Net | Vpc) -> str:
        vpc, scope = on if isinstance(on, Vpc) else on.vpc, _scope(on)
        current = self.stored.get(scope, "{}")
        payload = ensure_vpc(vpc, current) if vpc else ensure_network(on, current) \
            if isinstance(on, Net) else {}
        spawn = self.run("ensure-network-device", payload, on, ensure=False)
        # Failures keep the old details (NEE swallows them with a warning).
        if spawn.code == 0 and spawn.output:
            self.stored[scope] = spawn.output
        return spawn.output

    def run(self, command: str, payload: Json, on: Net | Vpc, *, ensure: bool | None = None
            ) -> Spawn:
        """One command; `ensure` None: as NEE does (network commands only, not the VPC
        ones, custom-action or ensure itself; implement-vpc's explicit one is the
        caller's)."""
        if ensure is None:
            ensure = isinstance(on, Net) and command not in _NO_ENSURE
        if ensure:
            self.ensure(on)
        scope = _scope(on)
        started = time.monotonic()
        code, output = run_entry_point(command, event_of(
            command, self.physical_network_details, self.details(scope), payload),
            entry_point=self.entry_point)
        if code == 0 and _failed_status(output):
            code = -1  # NEE: exit 0 with a JSON status other than success is a failure
        if code == 0 and command in ("shutdown-network", "destroy-network", "shutdown-vpc") \
                and (isinstance(on, Vpc) or on.vpc is None):
            self.stored.pop(scope, None)
        spawn = Spawn(command, scope, code, output, time.monotonic() - started)
        self.spawns.append(spawn)
        return spawn


class ElementError(RuntimeError):
    """What NEE would throw as a CloudRuntimeException."""


_NO_ENSURE = ("ensure-network-device", "custom-action")


def _scope(on: Net | Vpc) -> str:
    vpc = on if isinstance(on, Vpc) else on.vpc
    return f"vpc:{vpc.id}" if vpc else f"network:{on.id}"


def _failed_status(output: str) -> bool:
    try:
        answer = json.loads(output)
    except ValueError:
        return False
    status = answer.get("status") if isinstance(answer, dict) else None
    return isinstance(status, str) and bool(status.strip()) and status.lower() != "success"
