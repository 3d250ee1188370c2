"""Machine facts and CPU accounting from /proc (Linux), for reading a benchmark right.

The machine has few cores shared by the service, the database and the load generator,
so a figure means little without knowing who ate the CPU while it was measured.
"""

from __future__ import annotations

import os
import platform
import sqlite3
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    service_s: float  # the service's process group: gunicorn master and workers
    postgres_s: float  # the PostgreSQL backends serving one database (not other users')
    machine_busy_s: float  # all cores, all processes: non-idle time from /proc/stat


@dataclass(frozen=True)
class CpuUse:
    service_s: float
    postgres_s: float
    machine_busy_s: float

    @classmethod
    def between(cls, before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
        return cls(after.service_s - before.service_s, after.postgres_s - before.postgres_s,
                   after.machine_busy_s - before.machine_busy_s)


def snapshot(service_group: int, database: str = "") -> CpuSnapshot:
    """CPU used so far by the service and by the PostgreSQL backends of `database` (whose
    process titles read "postgres: <cluster>: <user> <database> <client> <state>")."""
    service = postgres = 0.0
    for stat in _process_stats():
        if stat.group == service_group:
            service += stat.cpu_s
        elif database and stat.command == "postgres" and _serves(stat.pid, database):
            postgres += stat.cpu_s
    return CpuSnapshot(service, postgres, _machine_busy_s())


def _serves(pid: int, database: str) -> bool:
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return False
    return f" {database} " in title


@dataclass(frozen=True)
class _ProcStat:
    pid: int
    command: str
    group: int
    cpu_s: float


def _process_stats() -> list[_ProcStat]:
    stats = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        stats.append(_parse_stat(int(entry.name), text))
    return stats


def _parse_stat(pid: int, text: str) -> _ProcStat:
    # pid (comm) state ppid pgrp ... utime(14) stime(15): comm may hold spaces and ')'.
    command = text[text.index("(") + 1:text.rindex(")")]
    rest = text[text.rindex(")") + 2:].split()
    return _ProcStat(pid, command, int(rest[2]), (int(rest[11]) + int(rest[12])) / _TICKS)


def connections_per_process(port: int, group: int) -> list[int]:
    """How many established TCP connections to `port` each process of `group` holds
    (gunicorn workers keep a keep-alive connection for its whole life), busiest first."""
    inodes = _established_inodes(port)
    counts = [_sockets_held(stat.pid, inodes) for stat in _process_stats()
              if stat.group == group]
    return sorted((count for count in counts if count), reverse=True)


def _established_inodes(port: int) -> set[str]:
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
            inodes.add(fields[9])
    return inodes


def _sockets_held(pid: int, inodes: set[str]) -> int:
    held = 0
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with suppress(OSError):
                held += os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes
    except OSError:
        return 0  # exited meanwhile
    return held


def _machine_busy_s() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / _TICKS


def cores() -> int:
    return len(os.sched_getaffinity(0))


def facts(extra: dict[str, str] | None = None) -> dict[str, str]:
    """One line each: what the figures were measured on."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    found = {
        "cores (nproc)": str(cores()),
        "cpu": _cpu_model(),
        "load average before": load,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "packages": ", ".join(f"{name} {_version(name)}" for name in
                              ("gunicorn", "Flask", "SQLAlchemy", "psycopg")),
    }
    found.update(extra or {})
    return found


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _cpu_model() -> str:
    return _first(lambda line: line.startswith("model name"),
                  Path("/proc/cpuinfo").read_text().splitlines()) or platform.machine()


def _first(test: Callable[[str], bool], lines: list[str]) -> str:
    line = next((line for line in lines if test(line)), "")
    return line.split(":", 1)[1].strip() if line else ""
