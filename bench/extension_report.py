"""Rendering bench/extension.py's report: per series latencies, CPU, the split of p50."""

from __future__ import annotations

from bench.extension import (
    COMMANDS,
    ENTRY_POINT,
    FLOOR_RUNS,
    FORWARD,
    GOAL_P50_MS,
    GOAL_P99_MS,
    MAX_FAILURES_KEPT,
    NOISY_SHARE,
    OUTPUT_LINES_SHOWN,
    TIMEOUT_ARG,
    ExtensionReport,
    Phase,
    Series,
)
from bench.service import REPO

# --- report ----------------------------------------------------------------------------


def render(report: ExtensionReport) -> list[str]:
    seq, direct = report.sequential, report.direct
    floors = "; ".join(f"{floor.label} {floor.median_ms:.2f}" for floor in report.floors)
    late = ", ".join(f"{name} {micros / 1000:.1f} ms" for name, micros in
                     report.late_imports.items()) or "none"
    lines = [
        f"== extension: {ENTRY_POINT.relative_to(REPO)} (sha256 {report.entry_point_sha256}) "
        f"spawned as CloudStack does (payload file 0600, `<command> <file> {TIMEOUT_ARG}`, "
        f"output read to EOF, file deleted); service on {report.service}; "
        f"{report.invocations} events per command",
        "   set-up through the entry-point: "
        + ", ".join(f"{command} {run.latency_ns / 1e6:.1f} ms" for command, run in report.setup),
        f"   start floors, median of {FLOOR_RUNS} spawns, ms: {floors}",
        f"{'':>9}(`{' '.join(report.floors[0].argv)}`; its imports: "
        f"{', '.join(report.imports) or 'none'}; imported only while handling an event "
        f"(-X importtime): {late})",
    ]
    for phase in (seq, report.concurrent, direct):
        lines += _render_phase(phase, report)
    lines += _split(report)
    lines += [f"check {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in report.checks]
    if report.log_tail:
        lines += ["service log, last lines:", *(f"  | {line}" for line in
                                                report.log_tail.splitlines())]
    for series in seq.series.values():
        for name, value, goal in (("p50", series.p50_ms, GOAL_P50_MS),
                                  ("p99", series.p99_ms, GOAL_P99_MS)):
            lines.append(f"goal {'met   ' if value <= goal else 'MISSED'} {series.command} "
                         f"{name} <= {goal:g} ms ({seq.name}): {value:.2f} ms")
    return lines


def _render_phase(phase: Phase, report: ExtensionReport) -> list[str]:
    direct = phase is report.direct
    count = sum(len(series.runs) for series in phase.series.values())
    rows = [*phase.series.values(), report.direct_replay if direct else phase.per_rule]
    cpu, share = phase.cpu, phase.others_share
    lines = [f"   {phase.name}: {count} {'requests' if direct else 'spawns'} in "
             f"{phase.wall_s:.2f} s wall = {count / phase.wall_s:,.0f}/s"]
    lines += [_row(series, _label(series, report)) for series in rows]
    spawned = "" if direct else (f"entry-points {cpu.spawned_s:.2f} "
                                 f"({_per_ms(cpu.spawned_s, count)} ms each), ")
    noisy = " -- NOISY: other processes ran meanwhile" if share > NOISY_SHARE else ""
    lines.append(f"{'':>5}cpu s: {spawned}service {cpu.service_s:.2f} "
                 f"({_per_ms(cpu.service_s, count)} ms per event), bench {cpu.bench_s:.2f}, "
                 f"everything else {cpu.others_s:.2f} ({100 * share:.0f}% of the machine)"
                 f"{noisy}")
    lines += [f"{'':>9}error: exit/status {run.code}: "
              + " | ".join(run.output.splitlines()[:OUTPUT_LINES_SHOWN] or ["(no output)"])
              for series in rows if series.command in COMMANDS
              for run in series.errors[:MAX_FAILURES_KEPT]]
    return lines


def _per_ms(cpu_s: float, count: int) -> str:
    return f"{1000 * cpu_s / count:.2f}" if count else "-"


def _label(series: Series, report: ExtensionReport) -> str:
    if series is report.direct_replay:
        return "add-port-forward, replay"
    if series is report.direct.series[FORWARD]:
        return "add-port-forward, new rules"
    return "per rule: ensure + forward" if series.command not in COMMANDS else series.command


def _row(series: Series, label: str) -> str:
    return (f"{'':>5}{label:<27} latency ms: p50 {series.p50_ms:6.2f}  p90 {series.p90_ms:6.2f}"
            f"  p99 {series.p99_ms:6.2f}  max {series.max_ms:6.2f}   errors "
            f"{len(series.errors)}")


def _split(report: ExtensionReport) -> list[str]:
    """The one-spawner p50 as the sum of its parts (medians and p50s, so approximate)."""
    start, imports, bare = (floor.median_ms for floor in report.floors)
    lines = [f"   split of the {report.sequential.name} p50, ms = interpreter start + imports + "
             f"compiling and running the entry-point + HTTP and service (direct p50) + the "
             f"rest (payload file, reading it, late imports, JSON, the socket):"]
    for command in COMMANDS:
        total = report.sequential.series[command].p50_ms
        service = report.direct.series[command].p50_ms
        rest = total - bare - service
        lines.append(f"{'':>5}{command:<27} {total:6.2f} = {start:.2f} + {imports - start:.2f} + "
                     f"{bare - imports:.2f} + {service:.2f} + {rest:.2f}")
    return lines
