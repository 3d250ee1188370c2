"""FRR, the only module that runs frr-reload.py: a whole frr.conf applied as a delta.

frr-reload.py compares the candidate with the running config and sends vtysh only the
lines that differ, so a re-apply of the same text touches nothing and a BGP session
survives every change that does not concern it. After a reload the same comparison runs
again (`--test`): a line FRR refused shows up there, and only an empty delta is success.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

FRR_DIR = Path("/usr/lib/frr")
NETNS_DIR = Path("/run/netns")
RELOAD_TIMEOUT_S = 120.0
# zebra's netns backend adopts a namespace about a second after it appears (it polls);
# it learns a new link within milliseconds.
ADOPT_TIMEOUT_S = 10.0
ADOPT_POLL_S = 0.05
_NETNS_VRF_RE = re.compile(r"^ netns /run/netns/(\S+)$", re.MULTILINE)
_ACTIVE_VRF_RE = re.compile(r"^vrf (\S+) id \d+", re.MULTILINE)


class FrrError(RuntimeError):
    """frr-reload.py failed or FRR did not take the whole config; one line."""


class FrrControl(Protocol):
    def apply(self, text: str) -> None: ...


def reload_delta(output: str) -> list[str]:
    """The lines under frr-reload.py's "Lines To Delete" and "Lines To Add" headings."""
    delta, collecting = [], False
    for line in output.splitlines():
        if line.startswith("Lines To Delete") or line.startswith("Lines To Add"):
            collecting = True
        elif collecting and line.strip() and not line.startswith("="):
            delta.append(line.strip())
    return delta


class FrrReload:
    """frr-reload.py against the local FRR. `vty_dir` is for an FRR whose sockets, config
    and pid files live in one directory (the simulator's nodes); None: FRR's defaults."""

    def __init__(self, work_dir: Path, vty_dir: Path | None = None,
                 frr_dir: Path = FRR_DIR) -> None:
        self.work_dir = work_dir
        self.vty_dir = vty_dir
        self.frr_dir = frr_dir

    def apply(self, text: str) -> None:
        candidate = self.work_dir / "frr.conf"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        temporary = candidate.with_suffix(".tmp")
        temporary.write_text(text)
        os.replace(temporary, candidate)
        self._await_netns_vrfs(text)
        self._run("--reload", candidate)
        remaining = reload_delta(self._run("--test", candidate))
        if remaining:
            raise FrrError(f"FRR did not take {len(remaining)} line(s) of frr.conf, "
                           f"first: {remaining[0]!r}")

    def _await_netns_vrfs(self, text: str) -> None:
        """Wait until zebra has adopted every namespace this config names as a VRF. A
        `vrf X / netns` line that arrives before zebra has taken the namespace itself
        fails ("Can not associate NS") and leaves the VRF inactive for good."""
        self._await_adopted({name for name in _NETNS_VRF_RE.findall(text)
                             if (NETNS_DIR / name).exists()})

    def await_adopted(self, namespaces: Iterable[str]) -> None:
        """Wait until zebra has adopted the namespaces the agent has just made, before any
        VXLAN device goes into them. zebra adopts a namespace by dumping its links, and on
        meeting a VXLAN device with a bridge it reads that VNI's FDB on the same netlink
        socket, in the middle of the dump: the rest of the dump is lost ("data remnant"
        in zebra's log), and the links it held stay unknown to zebra for good, their
        VNIs never advertised. Links made after adoption arrive as events, which are
        safe. When FRR is not running there is nothing to wait for: zebra's dump at start
        comes before EVPN is enabled, and reads no FDB."""
        wanted, started = set(namespaces), time.monotonic()
        try:
            wanted -= self._adopted()
        except FrrError as exc:
            log.warning("not waiting for zebra to adopt %s: %s", ", ".join(sorted(wanted)), exc)
            return
        self._await_adopted(set(wanted))
        if wanted:
            log.info("zebra adopted %s in %.2f s", ", ".join(sorted(wanted)),
                     time.monotonic() - started)

    def await_links(self, vrf: str, names: Iterable[str]) -> None:
        """Wait until zebra knows these new links of a VRF (its namespace), before any
        address goes onto them. zebra 8.4 reads links on its main thread and addresses
        on its dataplane thread, from two netlink sockets: an address added right after
        its link is made can reach zebra first, is dropped ("can't find ifp" in its
        log), and its connected route, hence the network's type-5 route, never comes.
        Nothing to wait for when FRR is not running (its start reads everything)."""
        wanted = set(names)
        try:
            wanted -= self._links(vrf)
        except FrrError as exc:
            log.warning("not waiting for zebra to know %s: %s", ", ".join(sorted(wanted)), exc)
            return
        self._await(wanted, lambda: self._links(vrf), f"zebra does not know link(s) of {vrf}")

    def _await_adopted(self, wanted: set[str]) -> None:
        self._await(wanted, self._adopted, "zebra has not adopted namespace(s)")

    def _await(self, wanted: set[str], seen: Callable[[], set[str]], failure: str) -> None:
        deadline = time.monotonic() + ADOPT_TIMEOUT_S
        while wanted:
            wanted -= seen()
            if wanted and time.monotonic() > deadline:
                raise FrrError(f"{failure} {', '.join(sorted(wanted))} within "
                               f"{ADOPT_TIMEOUT_S:.0f} s")
            if wanted:
                time.sleep(ADOPT_POLL_S)

    def _adopted(self) -> set[str]:
        return set(_ACTIVE_VRF_RE.findall(self._vtysh("show vrf")))

    def _links(self, vrf: str) -> set[str]:
        """The links zebra lists for a VRF: the first word of each row of the table."""
        rows = self._vtysh(f"show interface vrf {vrf} brief").splitlines()
        return {row.split()[0] for row in rows[2:] if row.strip()}

    def _vtysh(self, command: str) -> str:
        argv = ["vtysh"]
        if self.vty_dir is not None:
            argv += ["--vty_socket", str(self.vty_dir)]
        try:
            done = subprocess.run([*argv, "-c", command], capture_output=True, text=True,
                                  timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FrrError(f"vtysh {command!r}: {exc}") from exc
        if done.returncode != 0:
            raise FrrError(f"vtysh {command!r} failed: {_last_error(done)}")
        return done.stdout

    def _run(self, mode: str, candidate: Path) -> str:
        argv = [str(self.frr_dir / "frr-reload.py"), mode, "--stdout",
                "--bindir", "/usr/bin"]
        if self.vty_dir is not None:
            directory = str(self.vty_dir)
            argv += ["--vty_socket", directory, "--confdir", directory, "--rundir", directory]
        try:
            done = subprocess.run([*argv, str(candidate)], capture_output=True, text=True,
                                  timeout=RELOAD_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FrrError(f"frr-reload.py {mode}: {exc}") from exc
        if done.returncode != 0:
            raise FrrError(f"frr-reload.py {mode} failed: {_last_error(done)}")
        return done.stdout


def _last_error(done: subprocess.CompletedProcess[str]) -> str:
    """frr-reload.py's complaint, one line: from its first error line on, joined."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", done.stderr + done.stdout)  # its log colours
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = next((i for i, line in enumerate(lines)
                  if "error" in line.lower() or "fail" in line.lower()), None)
    picked = lines[first:first + 6] if first is not None else lines[-1:]
    return " ".join(" ".join(picked).split())[:400] or f"exit {done.returncode}"


class FakeFrr:
    """Records what was applied; `refuse` makes the next applies fail with that reason."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.refuse: str | None = None

    @property
    def running(self) -> str | None:
        return self.applied[-1] if self.applied else None

    def apply(self, text: str) -> None:
        if self.refuse is not None:
            raise FrrError(self.refuse)
        self.applied.append(text)
