"""agent.ipr's handles: per namespace, a netlink socket in it and what we know of it.

A socket is opened by the calling thread entering the namespace for a moment
(agent.netns). At most `max_open` stay open, least recently used closed first: an open
socket is a file descriptor, and it keeps its namespace, and the VXLAN devices in it,
alive. What we know of a namespace outlives its socket: its identity (device and inode
of /run/netns/<name>, checked on every use, for a namespace deleted and made again
behind our back) and the link indexes last seen in it. An apply lists every domain's
links first and builds the domains afterwards: with more domains than open sockets,
the indexes would otherwise have to be listed again.
"""

from __future__ import annotations

import os
import socket
from collections import OrderedDict
from dataclasses import dataclass, field

from agent import ipr_netlink as nl
from agent import netns as namespaces


@dataclass
class Handle:
    identity: tuple[int, int]
    sock: nl.Socket | None = None  # None: closed to stay within max_open
    indexes: dict[str, int] = field(default_factory=dict)  # link name -> ifindex

    def socket(self) -> nl.Socket:
        assert self.sock is not None, "Handles.get opens it"
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Handles:
    def __init__(self, max_open: int) -> None:
        # Two at least: one request can need two namespaces (a VXLAN device is made
        # through the SoftGate's socket, its master's index looked up in the domain).
        self.max_open = max(2, max_open)
        self._known: dict[str | None, Handle] = {}
        self._open: OrderedDict[str | None, None] = OrderedDict()  # least recent first

    def get(self, netns: str | None) -> Handle:
        """The handle of `netns` (None: the caller's own), its socket open; a new one
        when the name now stands for another namespace: a socket in the old one would
        keep it alive and quietly send every request there, and the indexes we know
        would be the old namespace's. OSError when the namespace is not there."""
        identity = _identity(netns)
        handle = self._known.get(netns)
        if handle is not None and handle.identity != identity:
            self.forget(netns)
            handle = None
        if handle is None:
            handle = self._known[netns] = Handle(identity)
        if handle.sock is not None and handle.sock.broken:
            handle.close()
        if handle.sock is None:
            handle.sock = nl.Socket(namespaces.socket_in(netns, socket.AF_NETLINK,
                                                         socket.SOCK_RAW))
        self._open.pop(netns, None)
        self._open[netns] = None
        while len(self._open) > self.max_open:
            self._known[self._open.popitem(last=False)[0]].close()
        return handle

    def known(self) -> list[str | None]:
        return list(self._known)

    def forget(self, netns: str | None) -> None:
        """Closes its socket, so that it no longer keeps the namespace alive."""
        handle = self._known.pop(netns, None)
        self._open.pop(netns, None)
        if handle is not None:
            handle.close()

    def close(self) -> None:
        for netns in self.known():
            self.forget(netns)


def _identity(netns: str | None) -> tuple[int, int]:
    path = f"{namespaces.NETNS_DIR}/{netns}" if netns else "/proc/thread-self/ns/net"
    info = os.stat(path)
    return info.st_dev, info.st_ino
