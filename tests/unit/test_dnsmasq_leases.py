"""dnsmasq leases: infinite leases that no dhcp-hosts line backs are pruned before start."""

from __future__ import annotations

from pathlib import Path

from agent.dnsmasq import Dnsmasq


def test_unbacked_leases_are_found_and_pruned_before_start(tmp_path: Path) -> None:
    dnsmasq = Dnsmasq(tmp_path, binary="true", ip="env")
    directory = dnsmasq.directory("9")
    directory.mkdir()
    (directory / "dhcp-hosts").write_text(
        "02:00:00:00:00:01,10.0.0.5,a,infinite\n02:00:00:00:00:02,set:nodefault,10.0.0.6,b,"
        "infinite\n")
    kept = ["0 02:00:00:00:00:01 10.0.0.5 a *", "0 02:00:00:00:00:02 10.0.0.6 b *",
            "duid 00:01:00:01:2c:00:00:00:02:00:00:00:00:09"]
    gone = ["0 02:00:00:00:00:03 10.0.0.7 c *", "0 02:00:00:00:00:04 10.0.0.5 a2 *"]
    (directory / "leases").write_text("".join(f"{line}\n" for line in kept + gone))
    assert dnsmasq.stale_leases("9")
    dnsmasq._prune_leases("9")
    assert (directory / "leases").read_text().splitlines() == kept
    assert not dnsmasq.stale_leases("9")
