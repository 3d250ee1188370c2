"""Helpers of the process boundaries (dnsmasq, metadata server): pid files, atomic files.

We only ever signal a process we started, found through the pid file we gave it, and only
after /proc/PID/cmdline shows that pid file's path: a pid file left behind by a crash
whose number the kernel reused for something else is never acted on. Nothing here looks
processes up by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

POLL_S: Final = 0.005


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = POLL_S) -> bool:
    """Poll `condition` until it holds or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(text) if text.isdigit() and int(text) > 1 else None


def is_ours(pid: int, marker: str) -> bool:
    """Alive, not a zombie, and started with `marker` (our pid-file path) in argv."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    args = cmdline.split(b"\0")[1:]  # argv[0] never counts: it is the program
    return state != "Z" and any(marker.encode() in arg for arg in args)


def owned_pid(pid_file: Path, marker: str | None = None) -> int | None:
    """The pid in `pid_file` if that process is ours and running, else None. Ours: its
    argv carries `marker`, by default the pid file's path (a program that takes no pid
    file option is marked by its config file's path instead)."""
    pid = read_pid(pid_file)
    return pid if pid is not None and is_ours(pid, marker or str(pid_file)) else None


def stop_owned(pid_files: Iterable[Path], timeout: float = 3.0,
               marker: Callable[[Path], str] = str) -> int:
    """SIGTERM the processes of `pid_files` (those that are ours, see `owned_pid`) all at
    once, wait for them, SIGKILL any that linger. The pid files are removed. How many
    were stopped. `marker(pid file)`: what marks its process as ours."""
    paths = list(pid_files)
    owned = {path: pid for path in paths if (pid := owned_pid(path, marker(path))) is not None}
    for pid in owned.values():
        _signal(pid, signal.SIGTERM)

    def all_gone() -> bool:
        return not any(is_ours(pid, marker(path)) for path, pid in owned.items())

    if not wait_for(all_gone, timeout):
        for path, pid in owned.items():
            if is_ours(pid, marker(path)):
                _signal(pid, signal.SIGKILL)
        wait_for(all_gone, timeout)
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return len(owned)


def signal_owned(pid_file: Path, signum: int) -> bool:
    pid = owned_pid(pid_file)
    if pid is None:
        return False
    return _signal(pid, signum)


def _signal(pid: int, signum: int) -> bool:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def atomic_write(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write `text` to `path` unless it already holds exactly that; True when written.

    Readers (dnsmasq on SIGHUP, the metadata server on reload) see the old file or the new
    one, never half of one: write a temporary file beside it, then rename. No fsync: every
    file here is rendered from the desired state and rewritten on the agent's next resync.
    """
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # the umask must not narrow what dnsmasq (user nobody) may read
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
    return True
