"""agent.conntrackd against real conntrackd: two namespaces, each with its instance,
share a connection's state; an instance restarts only when its config
changes and stops when its domain is no longer wanted.

The two namespaces stand for one routing domain on each SoftGate of a pair, joined by a
veth between their L3VNI bridges (in the product the L3VNI carries the sync, routed by
FRR: tests/scenarios/test_cloud_softgate_pair.py, where the shared state carries real
source NAT, and a connection only the shared state can save survives a failover).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.conntrackd import Conntrackd, SyncSpec
from tests.functional.netns_lab import Lab, require_root, run, wait_for

ADDRESSES = (ipaddress.IPv4Address("169.254.252.1"), ipaddress.IPv4Address("169.254.252.2"))
# A connection: guest 10.9.0.2 to 192.0.2.1:7000, replies to 203.0.113.5.
ENTRY = ("-p", "tcp", "-s", "10.9.0.2", "-d", "192.0.2.1", "--sport", "40000",
          "--dport", "7000", "-r", "192.0.2.1", "-q", "203.0.113.5", "--reply-port-src",
          "7000", "--reply-port-dst", "40000", "--state", "ESTABLISHED", "-t", "600",
          "-u", "ASSURED")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Lab, list[SyncSpec], list[Conntrackd]]]:
    require_root()
    if not shutil.which("conntrackd"):
        reason = "conntrackd is not installed (scripts/setup.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the conntrackd tests: {reason}")
        pytest.skip(reason)
    lab = Lab(f"vxt{os.getpid()}")
    daemons = [Conntrackd(tmp_path / "a"), Conntrackd(tmp_path / "b")]
    try:
        spaces = [lab.add_ns("ca"), lab.add_ns("cb")]
        specs = [SyncSpec(spaces[0], *ADDRESSES, "vxb1"),
                 SyncSpec(spaces[1], *reversed(ADDRESSES), "vxb2")]
        lab.veth(spaces[0], "pa", spaces[1], "pb")
        for spec, port in zip(specs, ("pa", "pb"), strict=True):
            bridge = spec.interface
            lab.ip(spec.netns, "link", "add", bridge, "type", "bridge")
            lab.ip(spec.netns, "link", "set", port, "master", bridge)
            lab.ip(spec.netns, "link", "set", bridge, "up")
            lab.ip(spec.netns, "address", "add", f"{spec.address}/32", "dev", bridge)
            lab.ip(spec.netns, "route", "add", f"{spec.peer}/32", "dev", bridge)
        yield lab, specs, daemons
    finally:
        for daemon in daemons:
            daemon.apply([])  # stops every instance it started, by its pid file
        lab.cleanup()


def conntrack(netns: str, *args: str) -> str:
    return run("ip", "netns", "exec", netns, "conntrack", *args, check=False).stdout


def test_a_connection_tracked_on_one_side_is_tracked_on_the_other(
        pair: tuple[Lab, list[SyncSpec], list[Conntrackd]]) -> None:
    _, specs, daemons = pair
    for spec, daemon in zip(specs, daemons, strict=True):
        assert daemon.apply([spec]) == {spec.netns: ""}
    conntrack(specs[0].netns, "-I", *ENTRY)
    wait_for(lambda: "sport=40000 dport=7000" in conntrack(specs[1].netns, "-L"),
             timeout=10, what="the entry in the peer's table")


def test_an_instance_restarts_only_for_a_new_config_or_namespace_and_stops_when_unwanted(
        pair: tuple[Lab, list[SyncSpec], list[Conntrackd]]) -> None:
    _, specs, daemons = pair
    daemon, spec = daemons[0], specs[0]
    assert daemon.apply([spec]) == {spec.netns: ""}
    pid = daemon.running()[spec.netns]
    assert daemon.apply([spec]) == {spec.netns: ""} and daemon.running()[spec.netns] == pid
    moved = SyncSpec(spec.netns, spec.address, ipaddress.IPv4Address("169.254.252.3"),
                     spec.interface)
    assert daemon.apply([moved]) == {spec.netns: ""}
    restarted = daemon.running()[spec.netns]
    assert restarted not in (pid, None)
    assert daemon.apply([moved], fresh={spec.netns}) == {spec.netns: ""}
    assert daemon.running()[spec.netns] not in (restarted, None)
    assert daemon.apply([]) == {} and daemon.running() == {}


def test_an_instance_that_cannot_start_is_one_line(
        pair: tuple[Lab, list[SyncSpec], list[Conntrackd]]) -> None:
    _, specs, daemons = pair
    # An address the namespace does not hold: conntrackd cannot bind its channel.
    elsewhere = SyncSpec(specs[0].netns, ipaddress.IPv4Address("169.254.252.9"),
                         specs[0].peer, specs[0].interface)
    error = daemons[0].apply([elsewhere])[elsewhere.netns]
    assert error.startswith(f"conntrackd in {elsewhere.netns} did not start: ")
    assert "\n" not in error and daemons[0].running() == {}
