"""`vxgate status`: the report from the service's answers, and its table (no service)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from provider_service import status_cli
from provider_service.status_report import (
    applied_generation,
    build_report,
    render_table,
    report_json,
    shorten,
)

NOW = "2026-01-01T12:00:00+00:00"
LONG_REASON = ("RTNETLINK answers: File exists while adding vxv10000 to bridge vxb10000 in "
               "namespace vxr5000000, which another process holds")


def at(seconds_before: int) -> str:
    """A time `seconds_before` NOW, without a zone as SQLite answers it."""
    return f"2026-01-01T11:{59 - seconds_before // 60:02d}:{60 - seconds_before % 60:02d}" \
        if seconds_before % 60 else f"2026-01-01T11:{60 - seconds_before // 60:02d}:00"


def network(net_id: str, cidr: str, uri: str, vpc_id: str | None = None) -> dict[str, Any]:
    return {"id": net_id, "vpc_id": vpc_id, "mode": "natted", "cidr": cidr,
            "broadcast_uri": uri}


def device(name: str, role: str, artifacts: dict[str, int]) -> dict[str, Any]:
    return {"name": name, "role": role, "zone_id": "1", "created_at": at(600),
            "config_generation": max(artifacts.values(), default=0),
            "artifacts": [{"name": a, "generation": g, "rendered_at": at(300)}
                          for a, g in sorted(artifacts.items())]}


def row(kind: str, ident: str, generation: int, state: str = "ok", reason: str = "",
        ago: int = 5) -> dict[str, Any]:
    return {"kind": kind, "id": ident, "generation": generation, "state": state,
            "reason": reason, "updated_at": at(ago)}


def softgate_carrier(net: str, l3vni: int) -> dict[str, Any]:
    return {"device": "sg1", "artifacts": ["softgate.json", "frr.conf"],
            "objects": [{"kind": "frr", "id": "frr.conf"},
                        {"kind": "domain", "id": f"vxr{l3vni}"},
                        {"kind": "segment", "id": net}, {"kind": "network", "id": net}],
            "object_prefixes": [{"kind": "nic", "prefix": f"{net}/"}]}


def hypervisor_carrier(name: str) -> dict[str, Any]:
    return {"device": name, "artifacts": ["frr.conf"], "objects": [], "object_prefixes": []}


def answers() -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """Two networks (one a VPC tier, one on a VLAN): sg1 fails a segment, hv1 applied
    everything, hv2 is a generation behind, spine1 carries no network."""
    networks = [network("204", "10.100.0.0/24", "vxlan://10000"),
                network("205", "10.1.1.0/24", "vlan://3001", vpc_id="vpc1")]
    placement = {
        "generated_at": NOW,
        "devices": [device("hv1", "hypervisor", {"frr.conf": 3}),
                    device("hv2", "hypervisor", {"frr.conf": 3}),
                    device("sg1", "softgate", {"frr.conf": 4, "softgate.json": 6}),
                    device("spine1", "spine", {"frr.conf": 1})],
        "networks": [
            {"id": "204", "devices": [hypervisor_carrier("hv1"), hypervisor_carrier("hv2"),
                                      softgate_carrier("204", 5000000)]},
            {"id": "205", "devices": [softgate_carrier("205", 5000001)]},
        ],
    }
    statuses = {
        "hv1": {"objects": [row("artifact", "frr.conf", 3), row("frr", "frr.conf", 3)]},
        "hv2": {"objects": [row("artifact", "frr.conf", 2, ago=400)]},
        "sg1": {"objects": [
            row("artifact", "frr.conf", 6), row("artifact", "softgate.json", 6, "error",
                                                "2 object(s) failed"),
            row("segment", "204", 6, "error", LONG_REASON), row("network", "204", 6),
            row("nic", "204/02:00:00:00:00:01", 6, "error", "bad hostname"),
            row("segment", "205", 6), row("port_forward", "17", 6, "error",
                                          "nft: Could not process rule")]},
        "spine1": {"objects": [row("artifact", "frr.conf", 1, ago=30)]},
    }
    return networks, placement, statuses


TABLE = """\
NETWORK  VPC   MODE    CIDR           BROADCAST      DEVICE  ROLE        STATUS   DETAIL
204      -     natted  10.100.0.0/24  vxlan://10000  hv1     hypervisor  ok
                                                     hv2     hypervisor  PENDING  frr.conf: generation 3 not applied (device at 2), 5 min
                                                     sg1     softgate    ERROR    segment 204: RTNETLINK answers: File exists while adding vxv1… (+1 more)
205      vpc1  natted  10.1.1.0/24    vlan://3001    sg1     softgate    ok

DEVICE  ROLE        GENERATION  APPLIED  LAST REPORT  ERRORS  PENDING
hv1     hypervisor  3           3        5 s ago      0       0
hv2     hypervisor  3           2        6 min ago    0       1 (1 overdue)
sg1     softgate    6           6        5 s ago      3       0
spine1  spine       1           1        30 s ago     0       0

Other errors:
  sg1  port_forward 17: nft: Could not process rule

PROBLEMS: 2 networks on 4 devices; 2/4 placements ok; 3 errors, 0 pending, 1 pending over 120 s
"""  # noqa: E501 - the table is as wide as an operator's terminal


def test_the_table_shows_networks_devices_states_and_reasons() -> None:
    report = build_report(*answers())
    assert render_table(report) == TABLE
    assert report.exit_status == 1


def test_errors_only_leaves_out_what_applied() -> None:
    text = render_table(build_report(*answers()), problems_only=True)
    assert "hv1" not in text and "spine1" not in text
    assert "hv2     hypervisor  PENDING" in text and "sg1     softgate    ERROR" in text


def test_a_reason_is_cut_to_one_line_and_the_others_counted() -> None:
    text = render_table(build_report(*answers()), problems_only=True)
    line = next(line for line in text.splitlines() if "sg1     softgate    ERROR" in line)
    detail = line.split("ERROR")[1].strip()
    assert detail == shorten(f"segment 204: {LONG_REASON}", 72 - len(" (+1 more)")) + \
        " (+1 more)"
    assert detail.startswith("segment 204: RTNETLINK answers: File exists") and "…" in detail


def test_an_artifact_error_of_its_own_is_on_every_network_it_carries() -> None:
    networks, placement, statuses = answers()
    statuses["sg1"] = {"objects": [row("artifact", "frr.conf", 6), row(
        "artifact", "softgate.json", 6, "error", "softgate.json is not JSON: line 1")]}
    report = build_report(networks, placement, statuses)
    assert [p.detail() for n in report.networks for p in n.placements if p.device == "sg1"] \
        == ["softgate.json: softgate.json is not JSON: line 1"] * 2
    assert report.unplaced_errors == ()


def test_pending_within_the_grace_period_is_no_problem() -> None:
    networks, placement, statuses = answers()
    statuses["sg1"] = {"objects": [row("artifact", "frr.conf", 4),
                                   row("artifact", "softgate.json", 6)]}
    assert build_report(networks, placement, statuses).exit_status == 1  # hv2: 300 s
    report = build_report(networks, placement, statuses, pending_grace_s=600)
    assert report.exit_status == 0
    assert "hv2     hypervisor  pending" in render_table(report)
    assert render_table(report).endswith("applying: 2 networks on 4 devices; 3/4 placements "
                                         "ok; 0 errors, 1 pending, 0 pending over 600 s\n")


def test_all_applied_exits_zero() -> None:
    networks, placement, statuses = answers()
    statuses["hv2"] = statuses["hv1"]
    statuses["sg1"] = {"objects": [row("artifact", "frr.conf", 4),
                                   row("artifact", "softgate.json", 6)]}
    report = build_report(networks, placement, statuses)
    assert report.exit_status == 0
    assert render_table(report, problems_only=True) == (
        "all applied: 2 networks on 4 devices; 4/4 placements ok; 0 errors, 0 pending, "
        "0 pending over 120 s\n")


def test_a_device_that_never_fetched_is_pending_since_it_exists() -> None:
    networks, placement, statuses = answers()
    placement["devices"][0]["artifacts"] = []
    report = build_report(networks, placement, statuses)
    hv1 = report.networks[0].placements[0]
    assert (hv1.state, hv1.detail()) == ("pending", "*: agent never fetched its configs, "
                                                    "10 min")


def test_json_has_every_reason_whole() -> None:
    data = report_json(build_report(*answers()), problems_only=True)
    assert data["exit_status"] == 1
    assert [n["id"] for n in data["networks"]] == ["204"]  # 205 applied
    sg1 = data["networks"][0]["devices"][1]
    assert sg1["device"] == "sg1" and sg1["state"] == "error"
    assert {"kind": "segment", "id": "204", "state": "error", "reason": LONG_REASON,
            "age_s": 5.0, "overdue": False} in sg1["problems"]
    assert [d["name"] for d in data["devices"]] == ["hv2", "sg1"]


def test_a_network_no_device_carries_says_so() -> None:
    networks, placement, statuses = answers()
    placement["networks"][1]["devices"] = []
    assert "205      vpc1  natted  10.1.1.0/24    vlan://3001    -       -           none" \
           "     no device carries it" in render_table(build_report(networks, placement,
                                                                     statuses))


def test_an_lb_members_error_is_on_the_row_of_its_rules_network() -> None:
    networks, placement, statuses = answers()
    sg1 = placement["networks"][0]["devices"][2]  # 204's: LB rule 1
    sg1["object_prefixes"].append({"kind": "lb_backend", "prefix": "1/"})
    statuses["sg1"] = {"objects": [
        row("artifact", "frr.conf", 4), row("artifact", "softgate.json", 6),
        row("lb_backend", "1/10.100.0.10:8080", 6, "error", "health check: no answer"),
        row("lb_backend", "12/10.1.1.10:80", 6, "error", "health check: no answer")]}
    report = build_report(networks, placement, statuses)
    placed = next(p for p in report.networks[0].placements if p.device == "sg1")
    assert (placed.state, placed.detail()) == (
        "error", "lb_backend 1/10.100.0.10:8080: health check: no answer")
    # Rule 12 is no network's here: "1/" does not claim it.
    assert [(d, p.id) for d, p in report.unplaced_errors] == [("sg1", "12/10.1.1.10:80")]


# --- applied generation -----------------------------------------------------------------


def test_an_unchanged_artifact_does_not_hold_the_applied_generation_back() -> None:
    wanted = {"frr.conf": 9, "softgate.json": 12}
    assert applied_generation(12, wanted, {"frr.conf": 10, "softgate.json": 12}) == 12
    assert applied_generation(12, wanted, {"frr.conf": 9, "softgate.json": 13}) == 12
    # softgate.json behind: applied only as of its report, below the config generation.
    assert applied_generation(12, wanted, {"frr.conf": 10, "softgate.json": 11}) == 11
    # frr.conf behind too: the lowest report of one behind, whatever the other says.
    assert applied_generation(12, wanted, {"frr.conf": 5, "softgate.json": 12}) == 5
    assert applied_generation(12, wanted, {"frr.conf": 8, "softgate.json": 7}) == 7


def test_no_applied_generation_until_every_artifact_is_reported() -> None:
    assert applied_generation(12, {"frr.conf": 9, "softgate.json": 12},
                              {"softgate.json": 12}) is None
    assert applied_generation(0, {}, {"frr.conf": 3}) is None
    # A report of an artifact the device no longer has counts for nothing.
    assert applied_generation(3, {"frr.conf": 3}, {"frr.conf": 3, "leaf.json": 1}) == 3


def test_the_table_shows_a_healthy_softgate_applied_up_to_its_generation() -> None:
    networks, placement, statuses = answers()  # sg1 wants frr.conf 4, softgate.json 6
    statuses["sg1"] = {"objects": [row("artifact", "frr.conf", 5),
                                   row("artifact", "softgate.json", 6)]}
    report = build_report(networks, placement, statuses)
    sg1 = next(d for d in report.devices if d.name == "sg1")
    assert (sg1.config_generation, sg1.applied_generation, sg1.problems) == (6, 6, ())
    assert "sg1     softgate    6           6 " in render_table(report)
    statuses["sg1"] = {"objects": [row("artifact", "frr.conf", 5),
                                   row("artifact", "softgate.json", 5)]}
    sg1 = next(d for d in build_report(networks, placement, statuses).devices
               if d.name == "sg1")
    assert sg1.applied_generation == 5 and [p.id for p in sg1.pending] == ["softgate.json"]


# --- the command, with a fake service --------------------------------------------------


def options(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    status_cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["status", *argv])


def fake_fetch(path: str) -> Any:
    networks, placement, statuses = answers()
    if path == "/v1/networks":
        return networks
    if path == "/v1/placement":
        return placement
    return statuses[path.split("/")[3]]


def test_the_command_prints_the_table_and_exits_one(capsys: pytest.CaptureFixture[str]) \
        -> None:
    assert status_cli.run(options(), fetch=fake_fetch) == 1
    assert capsys.readouterr().out == TABLE


def test_a_missing_token_file_is_one_line_and_exit_two(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = status_cli.run(options("--token-file", str(tmp_path / "nope")), environ={})
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("vxgate status: cannot read admin token file")


def test_a_short_token_and_a_bad_url_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert status_cli.run(options(), environ={"VXGATE_ADMIN_TOKEN": "short"}) == 2
    assert status_cli.run(options("--service-url", "ftp://x"),
                          environ={"VXGATE_ADMIN_TOKEN": "x" * 20}) == 2
    assert status_cli.run(options("--pending-grace", "-1"), fetch=fake_fetch) == 2
    assert capsys.readouterr().err.splitlines() == [
        "vxgate status: admin token must be at least 16 characters",
        "vxgate status: --service-url must look like http(s)://host[:port]",
        "vxgate status: --pending-grace must not be negative"]
