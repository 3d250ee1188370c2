"""procs: only processes that carry our pid file's path are ever signalled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agent import procs


def test_atomic_write_writes_only_changes_with_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "f"
    old_umask = os.umask(0o077)
    try:
        assert procs.atomic_write(path, "one\n") is True
    finally:
        os.umask(old_umask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert procs.atomic_write(path, "one\n") is False
    assert procs.atomic_write(path, "two\n", 0o600) is True
    assert path.read_text() == "two\n" and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_pid_file_naming_someone_else_is_ignored(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # alive, but not started with this path
    assert procs.owned_pid(pid_file) is None
    assert procs.stop_owned([pid_file]) == 0
    assert not pid_file.exists()
    pid_file.write_text("garbage\n")
    assert procs.owned_pid(pid_file) is None


def test_our_process_is_found_and_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "ours.pid"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                              f"--pid-file={pid_file}"])
    try:
        pid_file.write_text(f"{child.pid}\n")
        # Until the child has exec'd, its cmdline is still this process's.
        assert procs.wait_for(lambda: procs.owned_pid(pid_file) == child.pid, timeout=5)
        assert procs.stop_owned([pid_file]) == 1
        assert child.wait(timeout=5) != 0
        assert procs.owned_pid(pid_file) is None
    finally:
        if child.poll() is None:
            child.kill()  # our own child, by its Popen handle
            child.wait()

