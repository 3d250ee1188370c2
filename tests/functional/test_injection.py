"""Tenant-controlled strings cannot inject configuration into FRR, nftables, dnsmasq or the
metadata server.

Every field of CloudStack's payloads that flows towards a rendered artifact gets hostile
values (newline, CR, quotes, semicolon, braces, '#', NUL, 100 kB, non-ASCII) through the
extension entry-point (in-process, its HTTP request sent to the app). Each must be either
refused with one line and nothing stored, or stored and inert: the SoftGate's and the
hypervisor's frr.conf unchanged, the marker in no nft or dnsmasq file, nft and dnsmasq
still accepting what is rendered (where they are installed and we are root), user data
and metadata served byte-exact by the metadata server. Non-UTF-8 payload files are
refused by the entry-point itself.

One SQLite database per module, seeded once: this is about validation, not storage.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine

from agent.dhcp_state import DhcpState
from agent.dnsmasq_render import render as render_dnsmasq
from agent.metadata_process import render_config
from agent.metadata_server import metadata_answer, parse_config
from agent.netfilter_render import render_full
from agent.netfilter_state import RoutingDomain
from provider_service.app import create_app
from provider_service.config import Settings
from provider_service.models import Base
from tests import fuzzing
from tests.conftest import ADMIN_TOKEN

MARK = "vxINJ"
HOSTILE = {
    "newline": f"{MARK}\nserver=203.0.113.66",
    "cr": f"{MARK}\rdhcp-option=6,203.0.113.66",
    "dquote": f'{MARK}" accept',
    "squote": f"{MARK}' accept",
    "semicolon": f"{MARK}; flush ruleset",
    "braces": f"{MARK} }} table inet evil {{",
    "hash": f"{MARK} #",
    "nul": f"{MARK}\x00",
    "long": MARK + "a" * 100_000,
    "non-ascii": f"{MARK}\u00e9\u2028x",
    "tab": f"{MARK}\tx",
}
# Fields whose hostile text may legitimately be stored: it reaches no config file (LB
# names), or it is the tenant's own data, served back to its VM as it came.
SERVED = {"user data", "userdata", "metadata", "sshkey", "hypervisor hostname", "password"}
MAY_STORE = {"lb name", *SERVED}
# Fields the service does not read: anything goes, and nothing rendered changes. (vlan
# is our own broadcast URI coming back; the service answers it, never takes it.)
IGNORED = {"network vlan"}
# (name, command, path to the field inside the payload); the payload is build_events()'s.
FIELDS: list[tuple[str, str, tuple[Any, ...]]] = [
    *[(f"nic {key}", "prepare-nic", (key,)) for key in (
        "hostname", "mac", "ip", "nic_id", "nic_uuid", "device_id", "netmask", "gateway",
        "default_nic", "ip6_address")],
    ("dhcp hostname", "add-dhcp-entry", ("hostname",)),
    ("dhcp domain", "add-dhcp-entry", ("domain",)),
    ("dhcp dns", "add-dhcp-entry", ("dns",)),
    ("dns hostname", "add-dns-entry", ("hostname",)),
    ("dns subnet domain", "config-dns-subnet", ("domain",)),
    ("dns subnet dns", "config-dns-subnet", ("dns",)),
    *[(f"network {key}", "implement-network", (key,)) for key in (
        "network_id", "zone_id", "cidr", "gateway", "extension_ip", "guest_type", "vlan",
        "network_ip6_cidr")],
    *[(f"public ip {key}", "assign-ip", (key,)) for key in (
        "public_ip", "public_vlan", "public_gateway", "public_cidr", "source_nat")],
    *[(f"port forward {key}", "add-port-forward", (key,)) for key in (
        "protocol", "public_port", "private_port", "private_ip")],
    ("static nat private_ip", "add-static-nat", ("private_ip",)),
    *[(f"firewall {key}", "apply-fw-rules", ("fw_rules", "rules", 0, key)) for key in (
        "type", "protocol", "portStart", "portEnd", "publicIp")],
    ("firewall source cidr", "apply-fw-rules", ("fw_rules", "rules", 0, "sourceCidrs", 0)),
    ("firewall dest cidr", "apply-fw-rules", ("fw_rules", "rules", 1, "destCidrs", 0)),
    ("firewall icmpType", "apply-fw-rules", ("fw_rules", "rules", 1, "icmpType")),
    ("firewall cidr", "apply-fw-rules", ("fw_rules", "cidr")),
    *[(f"acl {key}", "apply-network-acl", ("acl_rules", 0, key)) for key in (
        "number", "action", "trafficType", "protocol", "portStart")],
    ("acl source cidr", "apply-network-acl", ("acl_rules", 0, "sourceCidrs", 0)),
    ("lb name", "apply-lb-rules", ("lb_rules", 0, "name")),
    *[(f"lb {key}", "apply-lb-rules", ("lb_rules", 0, key)) for key in (
        "algorithm", "protocol", "publicPort", "privatePort", "publicIp")],
    ("lb backend ip", "apply-lb-rules", ("lb_rules", 0, "backends", 0, "ip")),
    ("user data", "save-vm-data", ("vm_data", 0, "content")),
    ("metadata", "save-vm-data", ("vm_data", 3, "content")),  # local-hostname
    ("metadata file", "save-vm-data", ("vm_data", 3, "file")),
    ("metadata dir", "save-vm-data", ("vm_data", 3, "dir")),
    ("password", "save-password", ("password",)),
    ("userdata", "save-userdata", ("userdata",)),
    ("sshkey", "save-sshkey", ("sshkey",)),
    ("hypervisor hostname", "save-hypervisor-hostname", ("hypervisor_hostname",)),
    ("restore hostname", "restore-network", ("restore_data", "vms", 0, "hostname")),
    ("restore domain", "restore-network", ("domain",)),
    ("restore vm data", "restore-network", ("restore_data", "vms", 0, "vm_data", 3, "file")),
    ("vpc cidr", "implement-vpc", ("vpc_cidr",)),
    ("ensure zone_id", "ensure-network-device", ("zone_id",)),
    ("ensure network_id", "ensure-network-device", ("network_id",)),
    ("custom action", "custom-action", ("action",)),
]


@dataclass
class Rendered:
    """What the agents would write, from the service's artifacts of sg1 and hv1."""

    frr: dict[str, str]
    nft: list[str]
    dnsmasq: dict[str, str]  # file name → text
    dhcp: DhcpState
    softgate_json: str = ""
    texts: list[str] = field(default_factory=list)


@dataclass
class World:
    app: Flask
    engine: Engine
    directory: Path
    dirty: bool = False  # a hostile value was stored: replay the valid events first

    def send(self, command: str, payload: dict[str, Any]) -> tuple[int, str, list[int]]:
        event = fuzzing.event_file(command, ADMIN_TOKEN, payload)
        with fuzzing.payload_file(self.directory, json.dumps(event).encode()) as path:
            return fuzzing.run_entry_point(self.app.test_client(), [command, path, "60"])

    def render(self) -> Rendered:
        artifacts = fuzzing.rendered_artifacts(self.app.test_client(), ADMIN_TOKEN)
        state = json.loads(artifacts["sg1"]["softgate.json"])
        nft = [render_full(RoutingDomain.from_json(item))
               for item in state["netfilter"]["domains"]]
        dhcp = DhcpState.from_json(state["dhcp"])  # strict: the agent must take it all
        dnsmasq = {}
        for network in dhcp.networks:
            files = render_dnsmasq(network, self.directory / network.id)
            dnsmasq.update({f"{network.id}/{name}": text
                            for name, text in files.by_name().items()})
        return Rendered({d: a["frr.conf"] for d, a in artifacts.items()}, nft, dnsmasq, dhcp,
                        artifacts["sg1"]["softgate.json"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("injection")
    url = f"sqlite:///{directory / 'vxgate.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    app = create_app(Settings(database_url=url, admin_token=ADMIN_TOKEN))
    fuzzing.seed(app.test_client(), ADMIN_TOKEN)
    yield World(app, engine, directory)
    app.extensions["vxgate.db"].dispose()
    engine.dispose()


def _payload(command: str) -> dict[str, Any]:
    return copy.deepcopy(next(p for c, p in fuzzing.build_events() if c == command))


def _set(payload: Any, path: tuple[Any, ...], value: object) -> None:
    for key in path[:-1]:
        payload = payload[key]
    payload[path[-1]] = value


def _one_line(output: str) -> str:
    lines = output.strip("\n").split("\n")
    assert len(lines) == 1 and "Traceback" not in output, output[:300]
    return lines[0]


@pytest.mark.parametrize(("name", "command", "path"), FIELDS, ids=[f[0] for f in FIELDS])
def test_hostile_values_are_refused_or_inert(world: World, name: str, command: str,
                                             path: tuple[Any, ...]) -> None:
    if world.dirty:
        fuzzing.replay(world.app.test_client(), ADMIN_TOKEN, fuzzing.build_events())
        world.dirty = False
    baseline = world.render()
    for kind, value in HOSTILE.items():
        payload = _payload(command)
        _set(payload, path, value)
        before = fuzzing.dump_tables(world.engine)
        code, output, statuses = world.send(command, payload)
        assert 500 not in statuses, (kind, output)
        if code != 0:
            line = _one_line(output)
            assert line.startswith(f"vxgate: {command}: "), (kind, line)
            assert fuzzing.dump_tables(world.engine) == before, (kind, line)
            continue
        if name in IGNORED:
            rendered = world.render()
            assert (rendered.frr, rendered.nft, rendered.dnsmasq) == (
                baseline.frr, baseline.nft, baseline.dnsmasq), kind
            continue
        assert name in MAY_STORE, f"{name}: {kind} value was accepted: {output[:200]}"
        world.dirty = True
        _check_inert(world, baseline, value if name in SERVED else None, kind)


def _check_inert(world: World, baseline: Rendered, served: str | None, kind: str) -> None:
    """Nothing rendered carries the value; `served`: the metadata or password server
    hands it out exactly as it came."""
    rendered = world.render()
    assert rendered.frr == baseline.frr, f"{kind}: frr.conf changed"
    for text in [*rendered.nft, *rendered.dnsmasq.values()]:
        assert MARK not in text, f"{kind}: the value reached a config file"
    if served is not None:
        assert served in _served(rendered.dhcp), f"{kind}: stored, but not served byte-exact"
    _real_tools_accept(rendered, world.directory)


def _served(state: DhcpState) -> list[str]:
    """Everything the metadata server answers, for every VM, item by item."""
    config = parse_config(render_config(state, own_netns=True).text)
    answers = []
    for site in config.sites:
        for vm in site.vms.values():
            paths = ["/latest/user-data", *(f"/latest/meta-data/{key}" for key in vm.listing)]
            answers += [text for status, text in (metadata_answer(vm, p) for p in paths)
                        if status == 200]
            answers += [vm.password] if vm.password else []
    return answers


def _real_tools_accept(rendered: Rendered, directory: Path) -> None:
    if os.geteuid() == 0 and shutil.which("nft") and shutil.which("unshare"):
        for text in rendered.nft:
            done = subprocess.run(["unshare", "--net", "nft", "-c", "-f", "-"], input=text,
                                  capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr
    elif os.environ.get("CI"):
        pytest.fail("CI must check the rendered rulesets with nft -c (root, nft, unshare)")
    if shutil.which("dnsmasq"):
        for name, text in rendered.dnsmasq.items():
            if not name.endswith("/dnsmasq.conf"):
                continue
            conf = directory / "check.conf"
            hosts = rendered.dnsmasq[name.replace("dnsmasq.conf", "dhcp-hosts")]
            conf.write_text(text + "".join(f"dhcp-host={line}\n" for line in
                                           hosts.splitlines()))
            done = subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"],
                                  capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr
    elif os.environ.get("CI"):
        pytest.fail("CI must check the rendered dnsmasq configs with dnsmasq --test")


@pytest.mark.parametrize("command", sorted({command for command, _ in fuzzing.build_events()}))
def test_non_utf8_payload_files_are_refused(world: World, command: str,
                                            tmp_path: Path) -> None:
    """Bytes that are not UTF-8 inside a string of the payload file: one line, no call."""
    payload = _payload(command)
    text = json.dumps(fuzzing.event_file(command, ADMIN_TOKEN, {**payload, "x": "@@"}))
    content = text.encode().replace(b"@@", MARK.encode() + b"\xff\xfe\xc3(")
    before = fuzzing.dump_tables(world.engine)
    with fuzzing.payload_file(tmp_path, content) as path:
        code, output, statuses = fuzzing.run_entry_point(world.app.test_client(),
                                                         [command, path, "60"])
    assert (code, statuses) == (1, [])
    assert "payload file is not JSON" in _one_line(output)
    assert fuzzing.dump_tables(world.engine) == before


def test_the_valid_world_renders_and_real_tools_accept_it(world: World) -> None:
    """The baseline the hostile cases compare with is itself complete and accepted."""
    rendered = world.render()
    assert len(rendered.nft) == 2 and len(rendered.dhcp.networks) == 2
    assert fuzzing.USER_DATA in _served(rendered.dhcp)
    _real_tools_accept(rendered, world.directory)
