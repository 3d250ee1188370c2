"""Run a Python module as a throw-away SoftGate: its own network and mount namespaces.

`run_module` creates `vxt<pid>-sg` with `ip netns add`, then starts
`ip netns exec vxt<pid>-sg unshare -m sh -c 'mount -t tmpfs vxtmp /run/netns && exec
python -m MODULE ...'`: the module sees an empty, private /run/netns, so every `vxr*`
namespace the links applier makes there lives in that mount namespace only and dies
with it; nothing reaches the host's /run/netns. `ip netns exec`, `unshare` and `sh` all
exec, so the PID started is the Python process itself, and only that PID is ever killed
(on timeout). Afterwards `vxt<pid>-sg` is deleted by name and the host's namespace list
is checked to be what it was.

Inside, `require_sandbox()` refuses to go on unless /run/netns is that tmpfs: the code
under test deletes namespaces by prefix, so it must never run against the host's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

TMPFS_SOURCE: Final = "vxtmp"
REPO: Final = Path(__file__).resolve().parent.parent
ENV_FLAG: Final = "VXGATE_SANDBOX"


class SandboxError(RuntimeError):
    pass


@dataclass(frozen=True)
class SandboxRun:
    returncode: int
    stdout: str
    stderr: str
    leftovers: tuple[str, ...]  # host namespaces that appeared and are still there


def host_namespaces() -> set[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=True)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def run_module(module: str, *args: str, timeout: float = 120.0) -> SandboxRun:
    name = f"vxt{os.getpid()}-sg"
    before = host_namespaces()
    if name in before:
        raise SandboxError(f"namespace {name} already exists: not mine to reuse")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        done = _start(name, module, args, timeout)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    leftovers = tuple(sorted(host_namespaces() - before))
    return SandboxRun(done[0], done[1], done[2], leftovers)


def _start(name: str, module: str, args: tuple[str, ...], timeout: float
           ) -> tuple[int, str, str]:
    script = f'mount -t tmpfs {TMPFS_SOURCE} /run/netns && exec "$0" -m "$@"'
    env = dict(os.environ, PYTHONPATH=str(REPO), **{ENV_FLAG: name})
    process = subprocess.Popen(
        ["ip", "netns", "exec", name, "unshare", "-m", "sh", "-c", script, sys.executable,
         module, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # our own child (exec chain): never anything found by name
        stdout, stderr = process.communicate()
        stderr += f"\nkilled after {timeout} s"
    return process.returncode, stdout, stderr


def in_sandbox() -> bool:
    """True when /run/netns is the sandbox's private tmpfs (the last mount there)."""
    last: list[str] = []
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 4 and fields[4] == "/run/netns":
                last = fields[fields.index("-") + 1:]
    return last[:2] == ["tmpfs", TMPFS_SOURCE]


def require_sandbox() -> None:
    if not os.environ.get(ENV_FLAG) or not in_sandbox():
        raise SandboxError("refusing to run outside the sandbox (private /run/netns): "
                           "start through simulator.sandbox.run_module")
