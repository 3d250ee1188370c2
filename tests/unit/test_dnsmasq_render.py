"""dnsmasq rendering: golden files, checked by real dnsmasq, and the SIGHUP/restart split.

Goldens are rewritten only with VXGATE_REGEN_GOLDENS=1; review the diff before committing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.dhcp_state import DhcpState, Network
from agent.dnsmasq_render import CONF, DHCP_HOSTS, DNS_HOSTS, render
from tests.unit.dhcp_samples import ipv4_network, ipv6_network, non_default_network, state_json

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "dnsmasq"
REGEN = os.environ.get("VXGATE_REGEN_GOLDENS") == "1"
RUN_DIR = Path("/run/vxgate/dnsmasq")
CASES = {"ipv4": ipv4_network, "non-default-nic": non_default_network, "ipv6": ipv6_network}


def network(case: str) -> Network:
    return DhcpState.from_json(state_json(CASES[case]())).networks[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    net = network(case)
    files = render(net, RUN_DIR / net.id).by_name()
    directory = GOLDEN / case
    if REGEN:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (directory / name).write_text(text)
    for name, text in files.items():
        assert (directory / name).read_text() == text, f"{case}/{name} differs from golden"


def test_rendering_is_deterministic() -> None:
    data = state_json(ipv4_network())
    data["networks"][0]["nics"].reverse()
    reordered = DhcpState.from_json(data).networks[0]
    assert render(reordered, RUN_DIR) == render(network("ipv4"), RUN_DIR)


def test_non_default_nic_gets_no_router_dns_or_domain() -> None:
    files = render(network("non-default-nic"), RUN_DIR)
    assert "02:00:0a:0a:02:02,set:nodefault,10.10.2.12,vm2,infinite\n" in files.dhcp_hosts
    assert "02:00:0a:0a:02:01,10.10.2.11,vm1,infinite\n" in files.dhcp_hosts
    for option in ("router", "dns-server", "domain-name"):
        assert f"dhcp-option=tag:nodefault,option:{option}\n" in files.conf


def test_no_upstream_unless_configured() -> None:
    assert "server=" not in render(network("ipv4"), RUN_DIR).conf
    assert "server=192.0.2.53\n" in render(network("ipv6"), RUN_DIR).conf
    conf = render(network("ipv4"), RUN_DIR).conf
    for line in ("no-resolv", "no-hosts", "local=/cs201.internal/", "domain-needed"):
        assert line + "\n" in conf


def test_adding_a_vm_changes_only_the_sighup_files() -> None:
    before = render(network("ipv4"), RUN_DIR)
    data = ipv4_network()
    data["nics"].append({"mac": "02:00:0a:0a:01:99", "ip": "10.10.1.99", "hostname": "late"})
    after = render(DhcpState.from_json(state_json(data)).networks[0], RUN_DIR)
    assert after.conf == before.conf
    assert "02:00:0a:0a:01:99,10.10.1.99,late,infinite\n" in after.dhcp_hosts
    assert "10.10.1.99 late\n" in after.dns_hosts


def test_dns_off_and_dhcp_off() -> None:
    data = ipv4_network()
    data["dns"] = False
    files = render(DhcpState.from_json(state_json(data)).networks[0], RUN_DIR)
    assert "port=0\n" in files.conf and files.dns_hosts == ""
    assert "dhcp-option=option:dns-server,192.0.2.53,198.51.100.53\n" in files.conf
    data = ipv4_network()
    data["dhcp"] = False
    files = render(DhcpState.from_json(state_json(data)).networks[0], RUN_DIR)
    assert "dhcp-range" not in files.conf and files.dhcp_hosts == ""


def dnsmasq_test(conf: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("dnsmasq") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have dnsmasq to check the goldens")
        pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base)")
    return subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True,
                          text=True, check=False, timeout=10)


@pytest.mark.parametrize("case", sorted(CASES))
def test_real_dnsmasq_accepts_golden(case: str, tmp_path: Path) -> None:
    result = dnsmasq_test(GOLDEN / case / CONF)
    assert result.returncode == 0, result.stderr
    # dnsmasq --test does not open the hosts files; their lines, as dhcp-host= options,
    # must pass the same parser that reads them on SIGHUP.
    lines = (GOLDEN / case / DHCP_HOSTS).read_text().splitlines()
    hosts_conf = tmp_path / "hosts.conf"
    hosts_conf.write_text("".join(f"dhcp-host={line}\n" for line in lines))
    result = dnsmasq_test(hosts_conf)
    assert result.returncode == 0, result.stderr
    for line in (GOLDEN / case / DNS_HOSTS).read_text().splitlines():
        address, name = line.split(" ")
        assert name.isascii() and " " not in name and address


def test_real_dnsmasq_rejects_an_invalid_file(tmp_path: Path) -> None:
    conf = tmp_path / CONF
    conf.write_text((GOLDEN / "ipv4" / CONF).read_text() + "dhcp-range=not-an-address\n")
    result = dnsmasq_test(conf)
    assert result.returncode != 0 and "line" in result.stderr
