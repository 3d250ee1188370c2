"""Sockets inside a network namespace, without a process in it; named namespaces.

A socket belongs to the namespace it was created in, for its whole life. So the calling
thread enters the namespace (setns), creates the socket and returns to its own namespace
at once; other threads never notice. Needs CAP_SYS_ADMIN (the agent runs as root).
Python 3.11 has no os.setns, hence libc through ctypes.

Named namespaces follow iproute2 (`ip netns add/del`): a file under /run/netns that the
namespace is bind-mounted on, the directory a shared mount so later mount namespaces see
new entries. `create` unshares in the calling thread and comes back, which costs about
0.3 ms; `ip netns add` costs 2.3 ms and pyroute2's netns.create (a forked helper) 7.6 ms
(measured here).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errnos
import os
import socket
from collections.abc import Iterator
from typing import Final

CLONE_NEWNET: Final = 0x40000000
NETNS_DIR: Final = "/run/netns"
MS_BIND: Final = 0x1000
MS_REC: Final = 0x4000
MS_SHARED: Final = 1 << 20
MNT_DETACH: Final = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _setns(fd: int) -> None:
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")


@contextlib.contextmanager
def entered(netns: str | None) -> Iterator[None]:
    """The calling thread inside `netns` (None: stays where it is) for the block: what it
    opens under /proc/sys/net or creates as a socket there belongs to that namespace."""
    if netns is None:
        yield
        return
    with open(f"{NETNS_DIR}/{netns}", "rb") as target, \
            open("/proc/thread-self/ns/net", "rb") as home:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


def socket_in(netns: str | None, family: int = socket.AF_INET,
              kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket in namespace `netns` (None: the caller's own namespace)."""
    with entered(netns):
        return socket.socket(family, kind)


def names() -> list[str]:
    """The named namespaces (what `ip netns list` shows), sorted."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _shared_directory() -> None:
    # As iproute2: make the directory a shared mount (bind it on itself first if it is
    # not a mount point), so namespaces added later propagate to mount namespaces that
    # `ip netns exec` or FRR already made.
    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    path = NETNS_DIR.encode()
    if _libc.mount(b"none", path, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errnos.EINVAL:
        _check(-1, f"make {NETNS_DIR} shared")
    _check(_libc.mount(path, path, b"none", MS_BIND | MS_REC, None), f"bind {NETNS_DIR}")
    _check(_libc.mount(b"none", path, b"none", MS_SHARED | MS_REC, None),
           f"make {NETNS_DIR} shared")


def create(name: str) -> None:
    """A new named namespace; FileExistsError when the name is taken."""
    _shared_directory()
    path = f"{NETNS_DIR}/{name}"
    with open("/proc/thread-self/ns/net", "rb") as home:
        _check(_libc.unshare(CLONE_NEWNET), "unshare")
        try:
            # The file appears only once the namespace exists, to be bound at once: FRR's
            # zebra -n tries a new file as soon as it appears and, when it is not a
            # namespace yet, again only a second later (agent.frr.await_adopted).
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
            try:
                _check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none",
                                   MS_BIND, None), f"mount {path}")
            except BaseException:
                os.unlink(path)
                raise
        finally:
            _setns(home.fileno())


def remove(name: str) -> None:
    """Unmount and unlink a named namespace; it dies with its last user (a process or
    an open socket in it)."""
    path = f"{NETNS_DIR}/{name}"
    if _libc.umount2(path.encode(), MNT_DETACH) != 0 and ctypes.get_errno() != errnos.EINVAL:
        _check(-1, f"umount {path}")
    os.unlink(path)
