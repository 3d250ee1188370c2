"""`vxgate status` as data and as text: pure functions from the service's answers.

Inputs are the JSON of GET /v1/networks, GET /v1/placement and each device's
GET /v1/devices/{name}/status. A network's status on a device is

- error: an object of the network on that device (its segment, its nftables, its DHCP,
  its routing domain, one of its NICs) or an artifact that carries it there (frr.conf,
  softgate.json) was reported in error;
- pending: an artifact that carries it there has a generation the agent has not yet
  reported applied, or an object was reported pending;
- ok otherwise.

Pending is normal for a few seconds after every change; it becomes a problem (exit 1)
once it lasts longer than the grace period (`--pending-grace`, DEFAULT_PENDING_GRACE_S).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# An agent long-polls (it hears of a change at once) and applies in seconds; one that
# retries a failed apply waits at most a minute (agent/daemon.BACKOFF_MAX_S). Two minutes
# of pending means the agent is not running, cannot reach the service, or is stuck.
DEFAULT_PENDING_GRACE_S = 120.0
ARTIFACT_KIND = "artifact"  # agent/status.ARTIFACT: the report on a whole artifact
# What the agent says of an artifact whose objects failed (agent/daemon.AgentLoop._apply):
# not a cause of its own, so not pinned on every network the artifact carries.
_SUMMARY = re.compile(r"\d+ object\(s\) failed")
DETAIL_CHARS = 72  # a reason in the table; --json has it whole
EXIT_OK, EXIT_PROBLEM = 0, 1
Json = dict[str, Any]


@dataclass(frozen=True)
class Problem:
    """One object reported in error, or an artifact generation not applied yet."""

    kind: str
    id: str
    state: str  # "error" or "pending"
    reason: str
    age_s: float = 0.0  # pending: for how long

    def describe(self) -> str:
        """'segment 204: reason'; an artifact is named by itself ('frr.conf: ...'), and a
        pending problem says for how long."""
        name = self.id if self.kind == ARTIFACT_KIND else f"{self.kind} {self.id}"
        text = f"{name}: {self.reason}" if self.reason else name
        return f"{text}, {age_text(self.age_s)}" if self.state == "pending" else text


@dataclass(frozen=True)
class Placement:
    """A network on one device: what the device said of it."""

    device: str
    role: str
    problems: tuple[Problem, ...]

    @property
    def state(self) -> str:
        states = {problem.state for problem in self.problems}
        return "error" if "error" in states else "pending" if states else "ok"

    def detail(self) -> str:
        """One line: the first problem, and how many more."""
        shown = [p for p in self.problems if p.state == self.state]
        if not shown:
            return ""
        more = f" (+{len(shown) - 1} more)" if len(shown) > 1 else ""
        return shorten(shown[0].describe(), DETAIL_CHARS - len(more)) + more


@dataclass(frozen=True)
class NetworkStatus:
    id: str
    vpc_id: str
    mode: str
    cidr: str
    broadcast_uri: str
    placements: tuple[Placement, ...]


@dataclass(frozen=True)
class DeviceStatus:
    name: str
    role: str
    config_generation: int
    applied_generation: int | None  # None: an artifact not reported yet
    last_report_age_s: float | None  # None: never reported
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.state == "error")

    @property
    def pending(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.state == "pending")


@dataclass(frozen=True)
class Report:
    networks: tuple[NetworkStatus, ...]
    devices: tuple[DeviceStatus, ...]
    pending_grace_s: float
    # Errors the network rows do not show: a port forward's, a spine's frr.conf, ...
    unplaced_errors: tuple[tuple[str, Problem], ...] = field(default=())

    def overdue(self, problem: Problem) -> bool:
        return problem.state == "pending" and problem.age_s > self.pending_grace_s

    @property
    def exit_status(self) -> int:
        problems = [p for device in self.devices for p in device.problems]
        failing = any(p.state == "error" or self.overdue(p) for p in problems)
        return EXIT_PROBLEM if failing else EXIT_OK


# --- from the service's answers ---------------------------------------------------------


def build_report(networks: list[Json], placement: Json, statuses: Mapping[str, Json],
                 pending_grace_s: float = DEFAULT_PENDING_GRACE_S) -> Report:
    """The report; `statuses` maps a device name to its GET .../status answer."""
    now = parse_time(placement["generated_at"])
    devices = {d["name"]: _device(d, statuses.get(d["name"], {}), now)
               for d in placement["devices"]}
    carriers = {n["id"]: n["devices"] for n in placement["networks"]}
    placed: set[tuple[str, str, str]] = set()
    rows = []
    for network in networks:
        if network["id"] not in carriers:
            continue  # destroyed between the two calls
        found = []
        for carrier in carriers[network["id"]]:
            device = devices.get(carrier["device"])
            if device is None:
                continue
            problems = _network_problems(carrier, device)
            placed.update((device.name, p.kind, p.id) for p in problems)
            found.append(Placement(device.name, device.role, problems))
        rows.append(NetworkStatus(
            id=network["id"], vpc_id=network.get("vpc_id") or "", mode=network["mode"],
            cidr=network["cidr"], broadcast_uri=network["broadcast_uri"],
            placements=tuple(found)))
    unplaced = tuple((device.name, p) for device in devices.values() for p in device.errors
                     if (device.name, p.kind, p.id) not in placed)
    return Report(tuple(rows), tuple(devices.values()), pending_grace_s, unplaced)


def _device(device: Json, status: Json, now: datetime) -> DeviceStatus:
    rows = status.get("objects", [])
    reported = {row["id"]: row for row in rows if row["kind"] == ARTIFACT_KIND}
    problems = [_problem(row, now) for row in rows
                if row["state"] != "ok" and row["kind"] != ARTIFACT_KIND]
    object_errors = any(p.state == "error" for p in problems)
    for artifact in device["artifacts"]:
        row = reported.get(artifact["name"])
        if row is not None and object_errors and _SUMMARY.fullmatch(row["reason"]):
            row = {**row, "state": "ok"}  # its objects' errors say it better
        problems += _artifact_problems(artifact, row, now)
    # An agent that never polled has nothing rendered: pending since the device exists.
    if not device["artifacts"]:
        age = (now - parse_time(device["created_at"])).total_seconds()
        problems.append(Problem(ARTIFACT_KIND, "*", "pending", "agent never fetched its "
                                "configs", age))
    updates = [parse_time(row["updated_at"]) for row in rows]
    return DeviceStatus(
        name=device["name"], role=device["role"],
        config_generation=device["config_generation"],
        applied_generation=applied_generation(
            device["config_generation"],
            {a["name"]: a["generation"] for a in device["artifacts"]},
            {name: row["generation"] for name, row in reported.items()}),
        last_report_age_s=(now - max(updates)).total_seconds() if updates else None,
        problems=tuple(problems))


def applied_generation(config_generation: int, wanted: Mapping[str, int],
                       reported: Mapping[str, int]) -> int | None:
    """The device generation its agent has applied, from each artifact's wanted (last
    rendered) generation and the generation the agent reported applying it at; None until
    every artifact has a report. `vxgate status` and /metrics both count so.

    An artifact's report carries the device generation at which the agent applied it, and
    an unchanged artifact is not applied again: it keeps an older generation than the
    device's (frr.conf wanted 9, reported 10, while softgate.json is at 12). So the lowest
    report is no measure: an artifact reported at or past its wanted generation holds the
    device back nowhere, and when every artifact is so the device is applied up to its
    config generation. One behind (reported < wanted) is known applied only as of its
    report: the service keeps no history, so a version between the two may exist that the
    agent never applied; the device is applied up to the lowest such report. (Not "the
    highest G where every artifact wanted at or below G is current": that would say G =
    wanted - 1 of a stale artifact, past versions of it the agent may never have applied.)
    """
    if not wanted or not wanted.keys() <= reported.keys():
        return None
    behind = [reported[name] for name, generation in wanted.items()
              if reported[name] < generation]
    return min(behind, default=config_generation)


def _artifact_problems(artifact: Json, row: Json | None, now: datetime) -> list[Problem]:
    name, wanted = artifact["name"], artifact["generation"]
    if row is not None and row["state"] == "error":
        return [_problem(row, now)]
    if row is None or row["generation"] < wanted or row["state"] == "pending":
        at = "none" if row is None else row["generation"]
        age = (now - parse_time(artifact["rendered_at"])).total_seconds()
        return [Problem(ARTIFACT_KIND, name, "pending",
                        f"generation {wanted} not applied (device at {at})", age)]
    return []


def _problem(row: Json, now: datetime) -> Problem:
    age = (now - parse_time(row["updated_at"])).total_seconds()
    return Problem(row["kind"], row["id"], row["state"], row.get("reason", ""), age)


def _network_problems(carrier: Json, device: DeviceStatus) -> tuple[Problem, ...]:
    """The device's problems that concern the network: the artifacts that carry it,
    its own objects, its NICs."""
    exact = {(ARTIFACT_KIND, name) for name in carrier["artifacts"]}
    exact |= {(o["kind"], o["id"]) for o in carrier["objects"]}
    prefixes = [(p["kind"], p["prefix"]) for p in carrier["object_prefixes"]]
    return tuple(p for p in device.problems
                 if (p.kind, p.id) in exact
                 or any(p.kind == kind and p.id.startswith(prefix) for kind, prefix in prefixes)
                 or (p.kind, p.id) == (ARTIFACT_KIND, "*"))


def parse_time(text: str) -> datetime:
    """An ISO time from the service; SQLite hands back times without a zone: UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- as text --------------------------------------------------------------------------


def shorten(text: str, limit: int) -> str:
    """One line of at most `limit` characters; a cut ends in '…'."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def render_table(report: Report, *, problems_only: bool = False) -> str:
    """Networks → broadcast URI → devices → status, then one line per device."""
    lines: list[str] = []
    rows = _network_rows(report, problems_only)
    if rows:
        lines += _columns(["NETWORK", "VPC", "MODE", "CIDR", "BROADCAST", "DEVICE", "ROLE",
                           "STATUS", "DETAIL"], rows)
        lines.append("")
    devices = [d for d in report.devices if not problems_only or d.problems]
    if devices:
        lines += _columns(["DEVICE", "ROLE", "GENERATION", "APPLIED", "LAST REPORT",
                           "ERRORS", "PENDING"], [_device_row(report, d) for d in devices])
        lines.append("")
    if report.unplaced_errors:
        lines.append("Other errors:")
        lines += [f"  {device}  {shorten(problem.describe(), DETAIL_CHARS)}"
                  for device, problem in report.unplaced_errors]
        lines.append("")
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"


def summary_line(report: Report) -> str:
    placements = [p for n in report.networks for p in n.placements]
    problems = [p for d in report.devices for p in d.problems]
    errors = sum(1 for p in problems if p.state == "error")
    overdue = sum(1 for p in problems if report.overdue(p))
    pending = sum(1 for p in problems if p.state == "pending") - overdue
    ok = sum(1 for p in placements if p.state == "ok")
    verdict = "all applied" if not problems else "PROBLEMS" if report.exit_status else \
        "applying"
    return (f"{verdict}: {_count(len(report.networks), 'network')} on "
            f"{_count(len(report.devices), 'device')}; {ok}/{len(placements)} placements ok; "
            f"{_count(errors, 'error')}, {pending} pending, {overdue} pending over "
            f"{report.pending_grace_s:g} s")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _network_rows(report: Report, problems_only: bool) -> list[list[str]]:
    rows = []
    for network in report.networks:
        placements = [p for p in network.placements if not problems_only or p.problems]
        if problems_only and not placements:
            continue
        head = [network.id, network.vpc_id or "-", network.mode, network.cidr,
                network.broadcast_uri]
        if not placements:
            rows.append([*head, "-", "-", "none", "no device carries it"])
        for index, placement in enumerate(placements):
            cells = head if index == 0 else [""] * len(head)
            rows.append([*cells, placement.device, placement.role,
                         _state_label(report, placement), placement.detail()])
    return rows


def _state_label(report: Report, placement: Placement) -> str:
    if placement.state == "pending" and any(report.overdue(p) for p in placement.problems):
        return "PENDING"  # over the grace period: a problem
    return placement.state.upper() if placement.state == "error" else placement.state


def _device_row(report: Report, device: DeviceStatus) -> list[str]:
    overdue = sum(1 for p in device.pending if report.overdue(p))
    pending = str(len(device.pending)) + (f" ({overdue} overdue)" if overdue else "")
    return [device.name, device.role, str(device.config_generation),
            "-" if device.applied_generation is None else str(device.applied_generation),
            "never" if device.last_report_age_s is None else
            f"{age_text(device.last_report_age_s)} ago",
            str(len(device.errors)), pending]


def age_text(seconds: float) -> str:
    whole = max(0, int(seconds))
    if whole < 120:
        return f"{whole} s"
    if whole < 7200:
        return f"{whole // 60} min"
    return f"{whole // 3600} h"


def _columns(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in table]


# --- as JSON ---------------------------------------------------------------------------


def report_json(report: Report, *, problems_only: bool = False) -> Json:
    def problem(p: Problem) -> Json:
        return {"kind": p.kind, "id": p.id, "state": p.state, "reason": p.reason,
                "age_s": round(p.age_s, 1), "overdue": report.overdue(p)}

    networks = []
    for network in report.networks:
        placements = [p for p in network.placements if not problems_only or p.problems]
        if problems_only and not placements:
            continue
        networks.append({
            "id": network.id, "vpc_id": network.vpc_id or None, "mode": network.mode,
            "cidr": network.cidr, "broadcast_uri": network.broadcast_uri,
            "devices": [{"device": p.device, "role": p.role, "state": p.state,
                         "problems": [problem(q) for q in p.problems]} for p in placements]})
    devices = [{
        "name": d.name, "role": d.role, "config_generation": d.config_generation,
        "applied_generation": d.applied_generation,
        "last_report_age_s": None if d.last_report_age_s is None else
        round(d.last_report_age_s, 1),
        "problems": [problem(p) for p in d.problems],
    } for d in report.devices if not problems_only or d.problems]
    return {"pending_grace_s": report.pending_grace_s, "exit_status": report.exit_status,
            "summary": summary_line(report), "networks": networks, "devices": devices}
