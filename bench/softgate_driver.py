"""The inside of bench.softgate: softgate.json applied by the agent's SoftGateArtifact.

`python -m bench.softgate_driver STATE_DIR NAME=FILE...`, started by bench.softgate
through simulator.sandbox (a throw-away SoftGate namespace with a private /run/netns; it
refuses to run anywhere else). Each FILE is one softgate.json as the service rendered
it; they are applied in order:

- the first by a new SoftGateArtifact.real(STATE_DIR) on an empty SoftGate (the full
  rebuild), then checked (not timed): every namespace and dnsmasq there, the metadata
  server running, a static NAT in nftables, and from a VM's address on a guest bridge
  its DNS name resolves and its metadata is served;
- the second by another new one (an agent restart), the rest by that one.

The artifact is the agent's own, built by `real()`; its links applier, nft runner and
DHCP applier are swapped for subclasses of the same classes, built the same way, that
add up the time spent in each (bench.dhcp's timed dnsmasq and metadata boundaries). At
the end every dnsmasq and the metadata server are stopped by their pid files
(DhcpApplier.stop_all), also after a failure; the namespaces die with the sandbox.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agent.dhcp_apply import ApplyResult as DhcpResult
from agent.dhcp_apply import DhcpApplier
from agent.dhcp_state import DhcpState
from agent.links_apply import ApplyResult as LinksResult
from agent.links_apply import LinksApplier
from agent.nft import Nft
from agent.softgate import SoftGateArtifact
from bench.dhcp import Stopwatch, TimedDnsmasq, TimedMetadata, probe
from simulator.sandbox import require_sandbox


class TimedLinks(LinksApplier):
    def __init__(self, base: LinksApplier, watch: Stopwatch, seen: Counter[str]) -> None:
        super().__init__(base.ipr, vlan_trunk=base.vlan_trunk)
        self.watch, self.seen = watch, seen

    def apply_json(self, data: object) -> LinksResult:
        started = time.perf_counter()
        try:
            result = super().apply_json(data)
        finally:
            self.watch.add("links", started)
        self.seen["link changes"] += len(result.changes)
        return result


class TimedNft(Nft):
    def __init__(self, watch: Stopwatch, seen: Counter[str]) -> None:
        super().__init__()
        self.watch, self.seen = watch, seen

    def apply(self, netns: str | None, text: str, *, check: bool = False) -> None:
        started = time.perf_counter()
        try:
            super().apply(netns, text, check=check)
        finally:
            self.watch.add("nft processes", started)
            self.seen["nft -c" if check else "nft transactions"] += 1

    def list_ruleset(self, netns: str | None) -> str:
        started = time.perf_counter()
        try:
            return super().list_ruleset(netns)
        finally:
            self.watch.add("nft processes", started)


class TimedDhcp(DhcpApplier):
    def __init__(self, state_dir: Path, watch: Stopwatch, seen: Counter[str]) -> None:
        super().__init__(TimedDnsmasq(state_dir / "dnsmasq", watch),
                         TimedMetadata(state_dir / "metadata", watch))
        self.watch, self.seen = watch, seen

    def apply_json(self, old: DhcpState | None, data: object
                   ) -> tuple[DhcpState, DhcpResult]:
        started = time.perf_counter()
        try:
            new, result = super().apply_json(old, data)
        finally:
            self.watch.add("dhcp", started)
        self.seen.update(f"dnsmasq {action}" for action in result.actions.values())
        return new, result


def timed_artifact(state_dir: Path, watch: Stopwatch, seen: Counter[str]) -> SoftGateArtifact:
    """SoftGateArtifact.real(state_dir), its parts timed."""
    artifact = SoftGateArtifact.real(state_dir, None)  # no FRR in the sandbox
    artifact.links = TimedLinks(artifact.links, watch, seen)
    artifact.nft = TimedNft(watch, seen)
    artifact.dhcp = TimedDhcp(state_dir, watch, seen)
    return artifact


def apply_step(artifact: SoftGateArtifact, name: str, content: str, watch: Stopwatch,
               seen: Counter[str]) -> dict[str, Any]:
    watch.spent.clear()
    seen.clear()
    started = time.perf_counter()
    reports = artifact.apply(content)
    total = time.perf_counter() - started
    parse_started = time.perf_counter()
    json.loads(content)  # what apply's own parse costs, measured again beside it
    parse = time.perf_counter() - parse_started
    spent = dict(watch.spent)
    links, dhcp = spent.pop("links", 0.0), spent.pop("dhcp", 0.0)
    nft = spent.pop("nft processes", 0.0)
    netfilter = max(0.0, total - links - dhcp - parse)
    dhcp_parts = sorted(spent.items(), key=lambda item: -item[1])
    dhcp_parts.append(("rest (parse, render, plan)", max(0.0, dhcp - sum(spent.values()))))
    parts = [("json parse", parse, []), ("links", links, []),
             ("netfilter", netfilter, [("nft processes", nft),
                                       ("Python", max(0.0, netfilter - nft))]),
             ("dhcp", dhcp, dhcp_parts)]
    errors = [f"{r.kind} {r.id}: {r.reason}" for r in reports if r.state == "error"]
    return {"step": name, "seconds": total, "parts": parts, "counts": dict(seen),
            "objects": len(reports), "errors": len(errors), "first_errors": errors[:5]}


def check_running(artifact: SoftGateArtifact, content: str) -> list[str]:
    """What a full rebuild must leave: every namespace, every dnsmasq, the metadata
    server, and nftables rules in each domain (one domain's ruleset is read)."""
    data = json.loads(content)
    problems = []
    namespaces = {d["netns"] for d in data["links"]["domains"]}
    missing = namespaces - set(os.listdir("/run/netns"))
    if missing:
        problems.append(f"{len(missing)} namespaces missing, e.g. {sorted(missing)[0]}")
    dnsmasq = artifact.dhcp.dnsmasq
    networks = [n["id"] for n in data["dhcp"]["networks"]]
    down = [n for n in networks if dnsmasq.running(n) is None]
    if down:
        problems.append(f"{len(down)} of {len(networks)} dnsmasq not running")
    if networks and artifact.dhcp.metadata.running() is None:
        problems.append("the metadata server is not running")
    for domain in data["netfilter"]["domains"][:1]:
        ruleset = artifact.nft.list_ruleset(domain["id"])
        for nat in domain.get("static_nats", [])[:1]:
            if nat["public_ip"] not in ruleset:
                problems.append(f"{domain['id']}: static NAT {nat['public_ip']} not in nft")
    if data["dhcp"]["networks"]:
        problems += ask_as_a_vm(data["dhcp"]["networks"][-1])
    return problems


def ask_as_a_vm(network: dict[str, Any]) -> list[str]:
    """From a VM's address on the network's bridge: its name resolves (dnsmasq) and its
    metadata is served (the metadata server). The VM namespace is ours (private
    /run/netns) and deleted right after, its veth with it."""
    nic = network["nics"][-1]
    vm, prefix = "vmprobe", network["cidr"].split("/")[1]
    commands = [["ip", "netns", "add", vm],
                ["ip", "link", "add", "probe0", "netns", network["netns"], "type", "veth",
                 "peer", "name", "eth0", "netns", vm],
                ["ip", "-n", network["netns"], "link", "set", "probe0", "master",
                 network["bridge"], "up"],
                ["ip", "-n", vm, "addr", "add", f"{nic['ip']}/{prefix}", "dev", "eth0"],
                ["ip", "-n", vm, "link", "set", "eth0", "up"]]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True, timeout=10)
        probe(vm, network["gateway"], nic["hostname"], nic["ip"])
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return [f"probe from {nic['hostname']}: {exc}"]
    except SystemExit as exc:  # bench.dhcp.probe's verdict
        return [f"probe from {nic['hostname']}: {exc}"]
    finally:
        subprocess.run(["ip", "netns", "del", vm], capture_output=True, check=False)
    return []


def run(state_dir: Path, steps: list[tuple[str, str]]) -> dict[str, Any]:
    require_sandbox()
    watch, seen = Stopwatch(), Counter[str]()
    rows: list[dict[str, Any]] = []
    checks: list[str] = []
    artifacts: list[SoftGateArtifact] = []
    try:
        for index, (name, path) in enumerate(steps):
            content = Path(path).read_text()
            if index < 2:
                if artifacts:
                    artifacts[-1].links.ipr.close()  # the old agent's netlink handles
                artifacts.append(timed_artifact(state_dir, watch, seen))
            rows.append(apply_step(artifacts[-1], name, content, watch, seen))
            if index == 0:
                checks = check_running(artifacts[-1], content)
    finally:
        for artifact in reversed(artifacts):
            artifact.dhcp.stop_all()  # by pid file; the second call finds nothing left
        for artifact in artifacts:
            artifact.links.ipr.close()
    return {"rows": rows, "checks": checks}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not all("=" in arg for arg in argv[1:]):
        print(__doc__, file=sys.stderr)
        return 2
    steps = [(arg.split("=", 1)[0], arg.split("=", 1)[1]) for arg in argv[1:]]
    print(json.dumps(run(Path(argv[0]), steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
