"""The links applier on the real kernel, with real traffic (needs root; about 3 s).

The scenario runs in tests/functional/links_driver.py, inside simulator.sandbox: a
throw-away SoftGate namespace `vxt<pid>-sg` with a private /run/netns, so no `vxr*`
namespace ever reaches the host's. This test starts it, judges its JSON report check by
check, and makes sure the host's namespace list is back to what it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from simulator.sandbox import host_namespaces, run_module

TOOLS = ("ip", "bridge", "unshare", "ping", "sysctl")


def require_root_and_tools() -> None:
    reason = ""
    if os.geteuid() != 0:
        reason = "needs root to create network and mount namespaces"
    elif missing := [tool for tool in TOOLS if not shutil.which(tool)]:
        reason = f"missing tools: {', '.join(missing)}"
    elif subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        reason = "`ip netns` is not available"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SoftGate links test: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    require_root_and_tools()
    before = host_namespaces()
    run = run_module("tests.functional.links_driver", "run", timeout=60)
    assert run.returncode == 0 and run.stdout.strip(), run.stderr[-3000:]
    assert not run.leftovers, f"namespaces left on the host: {run.leftovers}"
    assert not any(name.startswith("vxr") for name in host_namespaces() - before)
    answer: dict[str, Any] = json.loads(run.stdout)
    return answer


def check(report: dict[str, Any], name: str) -> None:
    found = [c for c in report["checks"] if c["name"] == name]
    assert found, f"the driver did not run the check {name!r}"
    assert found[0]["ok"], f"{name}: {found[0]['detail']}"


def test_every_check_of_the_scenario_passed(report: dict[str, Any]) -> None:
    failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    assert not failed, "\n".join(failed)
    assert len(report["checks"]) >= 30


@pytest.mark.parametrize("name", [
    "vm1 pings its gateway 10.0.1.1",
    "vm1 pings its gateway 2001:db8:1::1",
    "vm2 behind a remote VTEP pings its gateway 10.1.1.1 over VXLAN",
    "vxv5000012's UDP socket is in the SoftGate namespace (link-netnsid 0)",
    "vxr5000010 pings the SoftGate end 169.254.253.0",
    "vxr5000020 pings fe80::1%vxpub",
    "the SoftGate reaches 198.18.2.1 routed into vxr5000020",
    "the SoftGate reaches 2001:db8:1::1 routed into vxr5000010",
    "our routes in the SoftGate carry proto 250",
    "the L3VNI bridge vxb5000010 has the router MAC 02:00:0a:ff:02:01",
    "a changed router MAC is set back in place",
])
def test_traffic_and_routes(report: dict[str, Any], name: str) -> None:
    check(report, name)


@pytest.mark.parametrize("name", [
    "re-apply in the same process changes nothing",
    "a new process re-applies with zero changes",
    "with two sockets open at most, re-applies change nothing",
    "adding two domains leaves vxr5000010 alone",
    "a namespace remade behind our back is built again",
    "and then left alone",
])
def test_reapply_changes_nothing(report: dict[str, Any], name: str) -> None:
    check(report, name)


@pytest.mark.parametrize("name", [
    "vxr5000020 namespace gone",
    "vxp5000020 veth gone",
    "routes via vxp5000020 gone",
    "foreign link, routes and namespace untouched",
    "foreign objects untouched at the end",
])
def test_removal_takes_ours_only(report: dict[str, Any], name: str) -> None:
    check(report, name)


def test_ipr_keeps_its_contract_on_the_real_kernel(report: dict[str, Any]) -> None:
    """The same contract FakeIpr is held to in tests/unit/test_links_apply.py."""
    checks = [c for c in report["checks"] if c["name"].startswith("ipr: ")]
    assert len(checks) > 20
    assert all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]


def test_it_is_fast(report: dict[str, Any]) -> None:
    timings = report["timings"]
    assert timings["first apply"] < 1000, timings  # ms, three domains
    assert timings["re-apply in process"] < 500, timings
