"""The one module that runs dnsmasq: one instance per guest network, in its namespace.

Layout under the state directory: `<state>/<network id>/` holds dnsmasq.conf, dhcp-hosts,
dns-hosts (see dnsmasq_render), the lease file and the pid file. The directory and files
are world-readable on purpose: dnsmasq drops to user nobody after start and re-reads the
hosts files on SIGHUP as that user. Nothing secret is in them (VM data and passwords are
the metadata server's, in its own directory).

Instances are started as daemons with `ip netns exec <ns> dnsmasq --conf-file=...
--pid-file=...`: dnsmasq's parent process exits only once the daemon has bound its
sockets, with a non-zero status and a message if it could not, so a start reports real
errors. Starts of many networks run in parallel. Stopping goes through procs.stop_owned:
by the pid in our pid file, and only if /proc/PID/cmdline carries that pid file's path.

Everything above this module is tested against FakeDnsmasq.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from agent import procs
from agent.dnsmasq_render import CONF, DHCP_HOSTS, LEASES, PID, DnsmasqFiles

START_TIMEOUT_S: Final = 10.0


class DnsmasqError(RuntimeError):
    pass


@dataclass(frozen=True)
class Instance:
    network_id: str
    netns: str


class DnsmasqControl(Protocol):
    """What dhcp_apply needs; the real one and the fake implement it."""

    def directory(self, network_id: str) -> Path: ...

    def write(self, network_id: str, files: DnsmasqFiles) -> set[str]: ...

    def running(self, network_id: str) -> int | None: ...

    def stale_leases(self, network_id: str) -> bool: ...

    def start(self, instances: Sequence[Instance]) -> dict[str, str]: ...

    def reload(self, network_ids: Iterable[str]) -> dict[str, str]: ...

    def stop(self, network_ids: Iterable[str]) -> None: ...

    def remove(self, network_ids: Iterable[str]) -> None: ...

    def known(self) -> set[str]: ...


class Dnsmasq:
    """The real thing: files under `state_dir`, processes in network namespaces."""

    def __init__(self, state_dir: Path, binary: str = "dnsmasq", ip: str = "ip") -> None:
        self.state_dir = state_dir
        self.binary = binary
        self.ip = ip

    def directory(self, network_id: str) -> Path:
        return self.state_dir / network_id

    def pid_file(self, network_id: str) -> Path:
        return self.directory(network_id) / PID

    def write(self, network_id: str, files: DnsmasqFiles) -> set[str]:
        """Write what differs, atomically; the names of the files that changed."""
        directory = self.directory(network_id)
        directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        directory.chmod(0o755)
        return {name for name, text in files.by_name().items()
                if procs.atomic_write(directory / name, text)}

    def running(self, network_id: str) -> int | None:
        return procs.owned_pid(self.pid_file(network_id))

    def stale_leases(self, network_id: str) -> bool:
        """A lease that no dhcp-hosts line backs (a VM gone, or its MAC or address changed).

        Leases are infinite, so such a lease would keep its address from the next VM that
        gets it, and SIGHUP does not drop it: the caller restarts, and start() prunes."""
        directory = self.directory(network_id)
        return bool(_unbacked(_read(directory / LEASES), _read(directory / DHCP_HOSTS)))

    def _prune_leases(self, network_id: str) -> None:
        """Only while stopped: dnsmasq rewrites the file from memory while it runs."""
        directory = self.directory(network_id)
        leases = _read(directory / LEASES)
        stale = _unbacked(leases, _read(directory / DHCP_HOSTS))
        if stale:
            kept = [line for line in leases.splitlines() if line not in stale]
            procs.atomic_write(directory / LEASES, "".join(f"{line}\n" for line in kept))

    def start(self, instances: Sequence[Instance]) -> dict[str, str]:
        """Start all, in parallel; {network id: error} for those that failed."""
        if shutil.which(self.binary) is None:
            return {i.network_id: f"{self.binary} is not installed" for i in instances}
        for instance in instances:
            self._prune_leases(instance.network_id)
        launched = [(i, self._spawn(i)) for i in instances]
        errors: dict[str, str] = {}
        for instance, process in launched:
            error = self._await_start(instance, process)
            if error:
                errors[instance.network_id] = error
        return errors

    def _spawn(self, instance: Instance) -> subprocess.Popen[bytes]:
        directory = self.directory(instance.network_id)
        argv = [self.ip, "netns", "exec", instance.netns, self.binary,
                f"--conf-file={directory / CONF}", f"--pid-file={directory / PID}"]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)

    def _await_start(self, instance: Instance, process: subprocess.Popen[bytes]) -> str:
        try:
            output, _ = process.communicate(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()  # our direct child (ip netns exec), by its Popen handle
            process.communicate()
            return f"dnsmasq did not start within {START_TIMEOUT_S:.0f} s"
        if process.returncode != 0:
            lines = output.decode(errors="replace").strip().splitlines() or ["no output"]
            return f"dnsmasq exited with {process.returncode}: {lines[-1]}"
        pid_file = self.pid_file(instance.network_id)
        if not procs.wait_for(lambda: procs.owned_pid(pid_file) is not None, 2.0):
            return "dnsmasq started but its pid file names no running dnsmasq"
        return ""

    def reload(self, network_ids: Iterable[str]) -> dict[str, str]:
        """SIGHUP: re-read dhcp-hosts and dns-hosts. {network id: error}."""
        return {network_id: "dnsmasq is not running"
                for network_id in network_ids
                if not procs.signal_owned(self.pid_file(network_id), signal.SIGHUP)}

    def stop(self, network_ids: Iterable[str]) -> None:
        """All at once: SIGTERM each, then wait for them together."""
        procs.stop_owned([self.pid_file(network_id) for network_id in network_ids])

    def remove(self, network_ids: Iterable[str]) -> None:
        ids = list(network_ids)
        self.stop(ids)
        for network_id in ids:
            shutil.rmtree(self.directory(network_id), ignore_errors=True)

    def known(self) -> set[str]:
        """Networks with a directory here: what garbage collection may remove."""
        if not self.state_dir.is_dir():
            return set()
        return {path.name for path in self.state_dir.iterdir() if path.is_dir()}


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _unbacked(leases: str, dhcp_hosts: str) -> set[str]:
    """IPv4 lease lines ("expiry mac address name client-id") whose MAC and address are
    not a dhcp-hosts pair. Other lines (the DHCPv6 duid) are never touched."""
    backed = set()
    for line in dhcp_hosts.splitlines():
        fields = [f for f in line.split(",") if not f.startswith("set:")]
        if len(fields) >= 2:
            backed.add((fields[0], fields[1]))
    stale = set()
    for line in leases.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2].count(".") == 3 and (fields[1], fields[2]) not in backed:
            stale.add(line)
    return stale


@dataclass
class FakeDnsmasq:
    """In memory: files, pids and a log of actions; `fail` makes starts of ids fail."""

    files: dict[str, dict[str, str]] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    actions: list[tuple[str, str]] = field(default_factory=list)
    fail: dict[str, str] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)  # networks holding an unbacked lease
    next_pid: int = 1000

    def directory(self, network_id: str) -> Path:
        return Path("/run/vxgate/dnsmasq") / network_id

    def write(self, network_id: str, files: DnsmasqFiles) -> set[str]:
        old = self.files.get(network_id, {})
        new = files.by_name()
        self.files[network_id] = new
        changed = {name for name, text in new.items() if old.get(name) != text}
        if changed:
            self.actions.append(("write", network_id))
        return changed

    def running(self, network_id: str) -> int | None:
        return self.pids.get(network_id)

    def stale_leases(self, network_id: str) -> bool:
        return network_id in self.stale

    def start(self, instances: Sequence[Instance]) -> dict[str, str]:
        errors: dict[str, str] = {}
        for instance in instances:
            self.stale.discard(instance.network_id)
            self.actions.append(("start", instance.network_id))
            if instance.network_id in self.fail:
                errors[instance.network_id] = self.fail[instance.network_id]
                continue
            self.next_pid += 1
            self.pids[instance.network_id] = self.next_pid
        return errors

    def reload(self, network_ids: Iterable[str]) -> dict[str, str]:
        errors: dict[str, str] = {}
        for network_id in network_ids:
            self.actions.append(("reload", network_id))
            if network_id not in self.pids:
                errors[network_id] = "dnsmasq is not running"
        return errors

    def stop(self, network_ids: Iterable[str]) -> None:
        for network_id in network_ids:
            if self.pids.pop(network_id, None) is not None:
                self.actions.append(("stop", network_id))

    def remove(self, network_ids: Iterable[str]) -> None:
        for network_id in network_ids:
            self.stop([network_id])
            if self.files.pop(network_id, None) is not None:
                self.actions.append(("remove", network_id))

    def known(self) -> set[str]:
        return set(self.files) | set(self.pids)

    def crash(self, network_id: str) -> None:
        """As if the process died behind our back."""
        self.pids.pop(network_id, None)
