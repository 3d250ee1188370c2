"""Sockets inside a network namespace, without a process in it.

A socket belongs to the namespace it was created in, for its whole life. So the calling
thread enters the namespace (setns), creates the socket and returns to its own namespace
at once; other threads never notice. Needs CAP_SYS_ADMIN (the agent runs as root).
Python 3.11 has no os.setns, hence libc through ctypes.
"""

from __future__ import annotations

import ctypes
import os
import socket
from typing import Final

CLONE_NEWNET: Final = 0x40000000
NETNS_DIR: Final = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def socket_in(netns: str | None, family: int = socket.AF_INET,
              kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket in namespace `netns` (None: the caller's own namespace)."""
    if netns is None:
        return socket.socket(family, kind)
    with open(f"{NETNS_DIR}/{netns}", "rb") as target, \
            open("/proc/thread-self/ns/net", "rb") as home:
        _setns(target.fileno())
        try:
            return socket.socket(family, kind)
        finally:
            _setns(home.fileno())
