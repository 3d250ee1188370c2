"""Boundary around the metadata server process: its config, start, reload, stop.

`render_config` is pure: the desired state in, the server's JSON config and its digest
out (only networks with the UserData service; every NIC address of those networks).
`MetadataServer.apply` writes it (mode 0600: passwords and user data are in it), starts
the server if it is not running, sends SIGHUP if the config changed, and waits until
status.json shows that digest, so the result is what the server really runs: per network
"" or an error (a namespace that is missing, an address that cannot be bound).

The process is ours when its pid file names it and /proc/PID/cmdline carries that pid
file's path; we stop it by that PID only.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from agent import procs
from agent.dhcp_state import DhcpState, Network

CONFIG: Final = "config.json"
STATUS: Final = "status.json"
PID: Final = "metadata.pid"
LOG: Final = "metadata.log"
HTTP_PORT: Final = 80
PASSWORD_PORT: Final = 8080
START_TIMEOUT_S: Final = 10.0
RELOAD_TIMEOUT_S: Final = 5.0
GLOBAL: Final = ""  # the key of an error that concerns every network


@dataclass(frozen=True)
class MetadataConfig:
    text: str
    digest: str
    network_ids: tuple[str, ...]


def render_config(state: DhcpState, http_port: int = HTTP_PORT,
                  password_port: int = PASSWORD_PORT, own_netns: bool = False
                  ) -> MetadataConfig:
    """Deterministic JSON; `own_netns` serves every site in the server's own namespace
    (unit tests on 127.0.0.1, without root)."""
    networks = [net for net in state.networks if net.userdata]
    sites = [_site(net, own_netns) for net in networks]
    body = {"http_port": http_port, "password_port": password_port, "sites": sites}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    text = json.dumps({"digest": digest, **body}, sort_keys=True, indent=1) + "\n"
    return MetadataConfig(text, digest, tuple(net.id for net in networks))


def _site(network: Network, own_netns: bool) -> dict[str, Any]:
    vms: dict[str, Any] = {}
    for nic in network.nics:
        data = nic.vm_data
        vms[str(nic.ipv4)] = {"user_data": data.user_data, "metadata": dict(data.metadata),
                              "password": data.password}
    return {"network_id": network.id, "netns": None if own_netns else network.netns,
            "addresses": [str(network.gateway)], "vms": vms}


class MetadataControl(Protocol):
    def apply(self, config: MetadataConfig) -> dict[str, str]: ...

    def running(self) -> int | None: ...

    def stop(self) -> None: ...


class MetadataServer:
    """The real process, its files under `state_dir` (mode 0700)."""

    def __init__(self, state_dir: Path, python: str = sys.executable) -> None:
        self.state_dir = state_dir
        self.python = python
        self.pid_file = state_dir / PID

    def running(self) -> int | None:
        return procs.owned_pid(self.pid_file)

    def apply(self, config: MetadataConfig) -> dict[str, str]:
        """{network id: error} of what the server runs now; GLOBAL for the whole server."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        changed = procs.atomic_write(self.state_dir / CONFIG, config.text, 0o600)
        if self.running() is None:
            error = self._start()
            if error:
                return {GLOBAL: error}
        elif changed or self._needs_load(config.digest):
            self._forget_status()
            procs.signal_owned(self.pid_file, signal.SIGHUP)
        if not procs.wait_for(lambda: self._status().get("digest") == config.digest,
                              RELOAD_TIMEOUT_S):
            status = self._status()
            return {GLOBAL: str(status.get("error") or "the metadata server did not load "
                                "its new config in time")}
        sites = self._status().get("sites", {})
        return {str(k): str(v) for k, v in sites.items() if v}

    def _needs_load(self, digest: str) -> bool:
        """Another config is loaded, or this one with errors: a reload retries them."""
        status = self._status()
        return status.get("digest") != digest or any(status.get("sites", {}).values())

    def _forget_status(self) -> None:
        """So that waiting for the digest waits for the reload just asked for."""
        (self.state_dir / STATUS).unlink(missing_ok=True)

    def _start(self) -> str:
        log = (self.state_dir / LOG).open("ab")
        package_root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": package_root}
        argv = [self.python, "-m", "agent.metadata_server",
                "--config", str(self.state_dir / CONFIG),
                "--state-dir", str(self.state_dir), "--pid-file", str(self.pid_file)]
        with log:
            # Its own session: the agent's terminal signals are not the server's.
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=log, env=env, start_new_session=True)
        ready = procs.wait_for(lambda: self.running() == process.pid
                               or process.poll() is not None, START_TIMEOUT_S)
        if ready and process.poll() is None:
            return ""
        if process.poll() is None:
            process.kill()  # our own child, by its Popen handle
            process.wait()
            return f"the metadata server did not start within {START_TIMEOUT_S:.0f} s"
        return f"the metadata server exited with {process.returncode}: {self._log_tail()}"

    def _log_tail(self) -> str:
        try:
            lines = (self.state_dir / LOG).read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "no log"
        return lines[-1] if lines else "no log"

    def _status(self) -> dict[str, Any]:
        try:
            data = json.loads((self.state_dir / STATUS).read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def stop(self) -> None:
        procs.stop_owned([self.pid_file])


@dataclass
class FakeMetadataServer:
    """In memory: the last config applied, a pid, a log of actions, injectable errors."""

    config: MetadataConfig | None = None
    pid: int | None = None
    actions: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def running(self) -> int | None:
        return self.pid

    def apply(self, config: MetadataConfig) -> dict[str, str]:
        if self.pid is None:
            self.pid = 4242
            self.actions.append("start")
        elif self.config is None or self.config.digest != config.digest:
            self.actions.append("reload")
        self.config = config
        return dict(self.errors)

    def stop(self) -> None:
        if self.pid is not None:
            self.actions.append("stop")
        self.pid = None
