"""The one module that runs conntrackd: connection-tracking state shared with the peer
SoftGate of a pair, one instance per routing domain.

Each routing domain's namespace has its own conntrack table, so each gets its own
conntrackd, in that namespace. The two SoftGates of a pair talk FTFW (acknowledged,
resent on loss) over UDP between their domain's sync addresses (a links domain's `sync`,
agent.links_state.Sync): one /32 per SoftGate on the domain's L3VNI bridge, announced
into the VRF, so the sync runs over the fabric like any routed traffic of the domain and
needs no link of its own.

`DisableExternalCache`: the peer's entries go straight into the kernel table, not into
a cache a failover script would have to commit. Routing moves traffic between the pair
without any script (docs/softgate-pair.md), so the standby must already hold the state
when the first packet arrives. `StartupResync`: an instance that (re)starts asks its
peer for the whole table.

`sync_specs` and `render_config` are pure. `Conntrackd.apply` writes each domain's
config, starts the instance if it is not running, restarts it if its config changed
(conntrackd has no reload) or its namespace was made anew (the old instance lives on in
the old one), and stops instances of domains no longer wanted. An instance is ours when its
pid file names it and /proc/PID/cmdline carries its config's path (agent.procs).
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from agent import procs
from agent.links_state import LinksState

CONFIG: Final = "conntrackd.conf"
PID: Final = "conntrackd.pid"
LOCK: Final = "conntrackd.lock"
SOCKET: Final = "conntrackd.ctl"
LOG: Final = "conntrackd.log"
START_TIMEOUT_S: Final = 5.0
SYNC_PORT: Final = 3780  # every domain's firewall takes it only from links_state.SYNC_NET


@dataclass(frozen=True)
class SyncSpec:
    """One domain's sync: conntrackd in `netns`, from `address` (on `interface`, the
    domain's L3VNI bridge) to `peer`."""

    netns: str
    address: ipaddress.IPv4Address
    peer: ipaddress.IPv4Address
    interface: str


def sync_specs(state: LinksState) -> tuple[SyncSpec, ...]:
    """The sync of every domain of the links state that has one."""
    return tuple(SyncSpec(domain.netns, domain.sync.address, domain.sync.peer,
                          domain.l3vni.bridge)
                 for domain in state.domains
                 if domain.sync is not None and domain.l3vni is not None)


def render_config(spec: SyncSpec, run_dir: Path) -> str:
    """conntrackd.conf for one domain; its lock, socket and log in `run_dir`."""
    return f"""\
# vxgate: conntrack sync of routing domain {spec.netns} with the peer SoftGate
Sync {{
\tMode FTFW {{
\t\tDisableExternalCache on
\t\tStartupResync on
\t}}
\tUDP {{
\t\tIPv4_address {spec.address}
\t\tIPv4_Destination_Address {spec.peer}
\t\tPort {SYNC_PORT}
\t\tInterface {spec.interface}
\t\tSndSocketBuffer 1249280
\t\tRcvSocketBuffer 1249280
\t\tChecksum on
\t}}
}}
General {{
\tSystemd off
\tHashSize 8192
\tHashLimit 131072
\tLogFile {run_dir / LOG}
\tSyslog off
\tLockFile {run_dir / LOCK}
\tUNIX {{
\t\tPath {run_dir / SOCKET}
\t}}
\tNetlinkBufferSize 2097152
\tNetlinkBufferSizeMaxGrowth 8388608
\t# The sync's own packets are not worth sharing.
\tFilter From Kernelspace {{
\t\tAddress Ignore {{
\t\t\tIPv4_address 127.0.0.1
\t\t\tIPv4_address {spec.address}
\t\t\tIPv4_address {spec.peer}
\t\t}}
\t}}
\t# No Scheduler section: the default time-sharing class, not conntrackd's suggested
\t# real-time one. A real-time conntrackd that spun (resending to a peer that has
\t# just become unreachable) would starve ksoftirqd, which forwards the SoftGate's
\t# packets, and FRR and BFD with it: the failover it is there for would stall.
}}
"""


class ConntrackdControl(Protocol):
    def apply(self, specs: Iterable[SyncSpec], fresh: Iterable[str] = ()
              ) -> dict[str, str]: ...

    def running(self) -> dict[str, int]: ...


class Conntrackd:
    """The real instances, each in its directory `state_dir/<netns>` (mode 0700)."""

    def __init__(self, state_dir: Path, binary: str = "conntrackd", ip: str = "ip") -> None:
        self.state_dir = state_dir
        self.binary = binary
        self.ip = ip

    def running(self) -> dict[str, int]:
        """netns -> pid of every instance of ours that runs."""
        if not self.state_dir.is_dir():
            return {}
        return {path.name: pid for path in sorted(self.state_dir.iterdir())
                if (pid := self._owned(path)) is not None}

    def apply(self, specs: Iterable[SyncSpec], fresh: Iterable[str] = ()) -> dict[str, str]:
        """{netns: error or ""} for every spec; instances of other domains stopped, and
        those of `fresh` namespaces (made anew) restarted."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        wanted = {spec.netns: spec for spec in specs}
        for netns in set(self.running()) - set(wanted):
            self._stop(self.state_dir / netns)
        renewed = set(fresh)
        return {netns: self._apply_one(spec, netns in renewed)
                for netns, spec in wanted.items()}

    def _apply_one(self, spec: SyncSpec, fresh: bool) -> str:
        run_dir = self.state_dir / spec.netns
        run_dir.mkdir(exist_ok=True, mode=0o700)
        changed = procs.atomic_write(run_dir / CONFIG, render_config(spec, run_dir), 0o600)
        if self._owned(run_dir) is not None:
            if not changed and not fresh:
                return ""
            self._stop(run_dir)  # no reload in conntrackd: a new config is a restart
        return self._start(spec.netns, run_dir)

    def _owned(self, run_dir: Path) -> int | None:
        return procs.owned_pid(run_dir / PID, marker=str(run_dir / CONFIG))

    def _stop(self, run_dir: Path) -> None:
        procs.stop_owned([run_dir / PID], marker=lambda _: str(run_dir / CONFIG))

    def _answers(self, netns: str, run_dir: Path) -> bool:
        """Whether the running instance answers a statistics request on its socket."""
        try:
            return subprocess.run(
                [self.ip, "netns", "exec", netns, self.binary, "-C", str(run_dir / CONFIG),
                 "-s"], stdin=subprocess.DEVNULL, capture_output=True,
                timeout=START_TIMEOUT_S, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _start(self, netns: str, run_dir: Path) -> str:
        # Not running, so a lock or socket left there is a killed instance's: it would
        # make conntrackd refuse to start.
        for leftover in (LOCK, SOCKET):
            (run_dir / leftover).unlink(missing_ok=True)
        argv = [self.ip, "netns", "exec", netns, self.binary, "-C", str(run_dir / CONFIG)]
        try:
            # Its own session: the agent's terminal signals are not conntrackd's. `ip netns
            # exec` execs conntrackd, so the child's pid is conntrackd's. Its stdout
            # repeats its log; its errors go there too.
            with (run_dir / LOG).open("ab") as log:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=log,
                                           start_new_session=True)
        except OSError as exc:
            return f"conntrackd: cannot run {self.binary}: {exc.strerror}"
        procs.atomic_write(run_dir / PID, f"{process.pid}\n")
        ready = procs.wait_for(lambda: (run_dir / SOCKET).exists()
                               or process.poll() is not None, START_TIMEOUT_S)
        # The control socket comes before the sync channel: only an answer on it says
        # the instance got through its whole start (a channel that cannot bind ends it
        # just after the socket appeared).
        if ready and process.poll() is None and self._answers(netns, run_dir):
            return ""
        if process.poll() is None:
            process.kill()  # our own child, by its Popen handle
        process.wait(timeout=START_TIMEOUT_S)
        (run_dir / PID).unlink(missing_ok=True)
        return f"conntrackd in {netns} did not start: {_last_line(run_dir / LOG)}"


def _last_line(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "no message"
    return lines[-1].strip() if lines else "no message"


@dataclass
class FakeConntrackd:
    """In memory: the config each domain's instance runs, a log of actions, errors to
    inject by netns."""

    configs: dict[str, str] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def running(self) -> dict[str, int]:
        return {netns: 5000 + index for index, netns in enumerate(sorted(self.configs))}

    def apply(self, specs: Iterable[SyncSpec], fresh: Iterable[str] = ()) -> dict[str, str]:
        wanted = {spec.netns: render_config(spec, Path("/run/fake") / spec.netns)
                  for spec in specs}
        renewed = set(fresh)
        for netns in sorted(set(self.configs) - set(wanted)):
            del self.configs[netns]
            self.actions.append(f"stop {netns}")
        answers = {}
        for netns, text in wanted.items():
            if netns in self.errors:
                self.configs.pop(netns, None)
                answers[netns] = self.errors[netns]
                continue
            if self.configs.get(netns) != text or netns in renewed:
                verb = "restart" if netns in self.configs else "start"
                self.actions.append(f"{verb} {netns}")
                self.configs[netns] = text
            answers[netns] = ""
        return answers
