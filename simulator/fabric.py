"""A fabric of network namespaces with real FRR per node, built the way ../shared/lab does.

Safe beside anything else: every namespace carries a per-run prefix, no veth has an end in
the root namespace, and a run records each namespace and daemon it creates under its
state directory. `down()` removes exactly those, also for a crashed run (`reap_stale`):
daemons are killed by the PID in their own pid file, and only after /proc confirms the
process was started with that pid file; namespaces are deleted by recorded name.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.frr import reload_delta

STATE_ROOT = Path("/run/vxgate-sim")
FRR_DIR = Path("/usr/lib/frr")
FRR_RELOAD = FRR_DIR / "frr-reload.py"
DAEMONS = ("zebra", "bgpd", "bfdd")
# Each new namespace starts from kernel defaults, not the root's (lab FINDINGS, gotcha 1):
# no DAD (slow link-locals delay unnumbered BGP), bridged frames kept out of netfilter.
NAMESPACE_SYSCTLS = (
    "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
    "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0",
    "net.bridge.bridge-nf-call-arptables=0",
)
ROUTER_SYSCTLS = (
    "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
    "net.ipv6.conf.default.forwarding=1",
)
_runs = itertools.count(1)


class FabricError(RuntimeError):
    pass


def missing_prerequisites() -> str:
    """Why a fabric cannot run here, or "" if it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, mounts)"
    for tool in (FRR_DIR / "zebra", FRR_DIR / "bgpd", FRR_DIR / "bfdd", FRR_RELOAD):
        if not tool.exists():
            return f"{tool} is missing (Debian packages frr, frr-pythontools)"
    for command in ("ip", "vtysh", "nsenter", "unshare", "mount"):
        if shutil.which(command) is None:
            return f"{command} is not installed"
    return ""


def run(argv: Sequence[str], *, input: str | None = None, check: bool = True,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise FabricError(f"{' '.join(argv)}: exit {result.returncode}: "
                          f"{(result.stderr or result.stdout).strip()}")
    return result


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 30,
               interval: float = 0.1) -> float:
    """Poll until `condition()` holds; returns the seconds it took."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise FabricError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Fabric:
    """Namespaces, veths and FRR instances of one run."""

    def __init__(self, state_root: Path = STATE_ROOT) -> None:
        reap_stale(state_root)
        self.prefix = f"vxs{os.getpid()}n{next(_runs)}-"
        self.dir = state_root / self.prefix.rstrip("-")
        self.dir.mkdir(parents=True)
        (self.dir / "owner").write_text(f"{os.getpid()}\n")
        self._namespaces: list[str] = []
        self._agents: dict[str, subprocess.Popen[bytes]] = {}

    # --- namespaces and links ----------------------------------------------------------

    def ns(self, node: str) -> str:
        """The global name of a node's namespace."""
        return self.prefix + node

    def add_node(self, node: str, *, router: bool = True) -> str:
        name = self.ns(node)
        run(["ip", "netns", "add", name])
        self._namespaces.append(name)
        with (self.dir / "netns.list").open("a") as listing:
            listing.write(name + "\n")
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        sysctls = NAMESPACE_SYSCTLS + (ROUTER_SYSCTLS if router else ())
        self.exec(node, "sysctl", "-qw", *sysctls)
        return name

    def exec(self, node: str, *argv: str, check: bool = True,
             input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.ns(node), *argv], check=check, input=input,
                   timeout=timeout)

    def ip(self, node: str, *args: str) -> str:
        return run(["ip", "-n", self.ns(node), *args]).stdout

    def ip_batch(self, node: str, commands: Sequence[str]) -> None:
        if commands:
            run(["ip", "-n", self.ns(node), "-batch", "-"], input="\n".join(commands) + "\n")

    def veth(self, node_a: str, if_a: str, node_b: str, if_b: str, mtu: int = 9000) -> None:
        # Both ends are created in their namespaces: nothing touches the root namespace.
        run(["ip", "link", "add", if_a, "netns", self.ns(node_a), "mtu", str(mtu), "type",
             "veth", "peer", "name", if_b, "netns", self.ns(node_b), "mtu", str(mtu)])
        self.ip(node_a, "link", "set", if_a, "up")
        self.ip(node_b, "link", "set", if_b, "up")

    # --- FRR ---------------------------------------------------------------------------

    def node_dir(self, node: str) -> Path:
        return self.dir / node

    def start_zebra(self, node: str, vrfs: Mapping[str, str] | None = None, *,
                    netns_vrfs: bool = False) -> None:
        """Start zebra in the node's namespace and its own UTS namespace (FRR reports
        the uname hostname). `vrfs` maps VRF names to namespaces: zebra then runs with
        the netns VRF backend over a private /run/netns holding only those, under the
        VRF names (lab FINDINGS §5). `netns_vrfs`: the netns backend over an empty
        private /run/netns, where the node's agent makes the VRF namespaces."""
        directory = self.node_dir(node)
        (directory / "netns").mkdir(parents=True, exist_ok=True)
        (directory / "vtysh.conf").write_text("service integrated-vtysh-config\n")
        binds = ""
        for vrf, namespace in sorted((vrfs or {}).items()):
            (directory / "netns" / vrf).touch()
            binds += f"mount --bind /run/netns/{self.ns(namespace)} {directory}/netns/{vrf}; "
        run(["chown", "-R", "frr:frr", str(directory)])
        netns_backend = "-n " if vrfs or netns_vrfs else ""
        # --rbind keeps the nsfs mounts under the private directory; --bind would not.
        script = (f"hostname {node}; {binds}mount --rbind {directory}/netns /run/netns; "
                  f"exec {FRR_DIR}/zebra {netns_backend}{self._daemon_options(node, 'zebra')}")
        self.exec(node, "unshare", "--uts", "sh", "-c", script)

    def start_daemon(self, node: str, daemon: str) -> None:
        """bgpd and bfdd join zebra's mount, network and UTS namespaces."""
        argv = ["nsenter", "-t", str(self.pid(node, "zebra")), "-m", "-n", "-u",
                str(FRR_DIR / daemon), *self._daemon_options(node, daemon).split()]
        run(argv)

    def _daemon_options(self, node: str, daemon: str) -> str:
        directory = self.node_dir(node)
        return (f"-d -F datacenter -P 0 -f /dev/null --vty_socket {directory} "
                f"-z {directory}/zserv.api -i {directory}/{daemon}.pid")

    def start_agent(self, node: str, service_url: str, token: str, *,
                    softgate: bool = False, vtep_leaf: bool = False) -> None:
        """The vxgate agent of the node, in zebra's mount, network and UTS namespaces: it
        sees the node's private /run/netns, so the namespaces it makes are the node's
        alone and FRR's netns backend finds them. It leaves by the fabric's teardown."""
        directory = self.node_dir(node)
        token_file = directory / "agent-token"
        token_file.touch(mode=0o600)
        token_file.write_text(token + "\n")
        (directory / "service-url").write_text(service_url + "\n")
        (directory / "agent.pid").unlink(missing_ok=True)
        argv = ["nsenter", "-t", str(self.pid(node, "zebra")), "-m", "-n", "-u",
                sys.executable, "-m", "agent.main", "--service", service_url, "--device",
                node, "--token-file", str(token_file), "--state-dir", str(directory / "agent"),
                "--frr-vty-dir", str(directory), "--pid-file", str(directory / "agent.pid")]
        if softgate:
            argv.append("--softgate")
        if vtep_leaf:
            argv.append("--vtep-leaf")
        with (directory / "agent.log").open("ab") as log:
            self._agents[node] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                                  stderr=log, start_new_session=True)
        wait_until(f"the agent of {node} to start", (directory / "agent.pid").exists,
                   timeout=15)

    def stop_agent(self, node: str, timeout: float = 10.0,
                   signum: int = signal.SIGTERM) -> None:
        """Signal the node's agent (by its process handle; SIGTERM a graceful stop,
        SIGKILL a crash) and wait until it has left; what it applied stays."""
        process = self._agents.pop(node)
        process.send_signal(signum)
        process.wait(timeout=timeout)

    def pid(self, node: str, daemon: str) -> int:
        return int((self.node_dir(node) / f"{daemon}.pid").read_text())

    def private_netns_dir(self, node: str) -> Path:
        """The node's own /run/netns (start_zebra's private one, where its agent makes the
        routing domains' namespaces), as seen from here: through zebra's root."""
        return Path(f"/proc/{self.pid(node, 'zebra')}/root/run/netns")

    def load_config(self, node: str, text: str) -> None:
        """Write frr.conf and load it into the running daemons (vtysh -b)."""
        (self.node_dir(node) / "frr.conf").write_text(text)
        self._vtysh_argv(node, "--config_dir", str(self.node_dir(node)), "-b")

    def vtysh(self, node: str, *commands: str) -> str:
        argv: list[str] = []
        for command in commands:
            argv += ["-c", command]
        return self._vtysh_argv(node, *argv)

    def vtysh_json(self, node: str, command: str) -> Any:
        return json.loads(self.vtysh(node, command) or "{}")

    def _vtysh_argv(self, node: str, *args: str) -> str:
        # In zebra's UTS namespace: vtysh's own "hostname" then matches the daemons'.
        return run(["nsenter", "-t", str(self.pid(node, "zebra")), "-u", "vtysh",
                    "--vty_socket", str(self.node_dir(node)), *args]).stdout

    def reload_test(self, node: str, text: str) -> list[str]:
        """frr-reload.py --test of `text` against the running node: the lines it would
        delete or add (empty when the node runs exactly this config)."""
        directory = self.node_dir(node)
        candidate = directory / "candidate.conf"
        candidate.write_text(text)
        output = run(["nsenter", "-t", str(self.pid(node, "zebra")), "-u", str(FRR_RELOAD),
                      "--test", "--stdout", "--vty_socket", str(directory), "--confdir",
                      str(directory), "--rundir", str(directory), str(candidate)]).stdout
        return reload_delta(output)

    # --- teardown ----------------------------------------------------------------------

    def down(self) -> None:
        teardown(self.dir)

    def __enter__(self) -> Fabric:
        return self

    def __exit__(self, *_: object) -> None:
        self.down()


def teardown(directory: Path) -> None:
    # The agents first, and gone before the rest: an agent still running starts again
    # the dnsmasq or metadata server that dies beside it, and that one would outlive
    # the run (seen: a SIGTERMed agent finishing its apply).
    _stop(_pids(directory, "*/agent.pid"), grace=5.0)
    # Then every other process: FRR in the node directories, and deeper the agents'
    # dnsmasq, metadata servers and conntrackd in their state directories. FRR takes
    # 1-2 s to exit on SIGTERM; its state dies with the run anyway.
    _stop(_pids(directory, "*/**/*.pid"), grace=0.5)
    listing = directory / "netns.list"
    if listing.exists():
        for name in reversed(listing.read_text().split()):
            run(["ip", "netns", "del", name], check=False)
    shutil.rmtree(directory, ignore_errors=True)


def reap_stale(state_root: Path = STATE_ROOT) -> None:
    """Tear down runs whose owning process is gone (a crashed test or demo)."""
    if not state_root.exists():
        return
    for directory in state_root.iterdir():
        owner = directory / "owner"
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue
        if not _alive(pid):
            teardown(directory)


def _pids(directory: Path, pattern: str) -> list[int]:
    return [pid for pid_file in sorted(directory.glob(pattern))
            if (pid := _our_pid(pid_file)) is not None]


def _stop(pids: list[int], grace: float) -> None:
    """SIGTERM, then SIGKILL whatever has not left within `grace` seconds; returns once
    they are gone."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0  # the kernel reaps a killed process promptly
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def _our_pid(pid_file: Path) -> int | None:
    """The pid the file names, if that process is still ours: its command line names the
    pid file or another file beside it (conntrackd has no pid-file option; its command
    line names the config in the same run directory)."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if f"{pid_file.parent}/".encode() in cmdline else None


def processes_of(directory: Path) -> list[int]:
    """Pids of live processes whose command line names a path inside the run directory:
    after a teardown, a leak."""
    marker = f"{directory}/".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile
    return found


def _alive(pid: int) -> bool:
    """Running: a zombie (exited, its parent, maybe this process, not yet waiting) is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
