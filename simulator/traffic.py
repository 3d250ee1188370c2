"""Traffic for the scenarios and the demo: a TCP server that answers with its peer's
address (or with its own name), a client, an HTTP fetch."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from simulator.fabric import Fabric

# Answers each TCP connection with the peer's address (or the name given), then closes.
PEER_SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    try:
        c.sendall((sys.argv[2] if len(sys.argv) > 2 else peer[0]).encode())
    except OSError:
        pass  # a health probe that resets at once
    c.close()
"""
CONNECT = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5) as c:
        print(c.recv(64).decode())
except OSError as e:
    print("ERR", e); sys.exit(1)
"""
FETCH = r"""
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode(), end="")
"""


@contextmanager
def server_in(fabric: Fabric, node: str, port: int, name: str = "") -> Iterator[None]:
    """A TCP server in the node that answers each connection with the peer's address,
    or with `name` if one is given."""
    process = subprocess.Popen(["ip", "netns", "exec", fabric.ns(node), "python3", "-c",
                                PEER_SERVER, str(port), *([name] if name else [])],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        yield
    finally:
        process.kill()  # our own child, by its handle
        process.wait()


def connect(fabric: Fabric, node: str, address: str, port: int) -> str:
    """What the server at address:port answers from the node ("" if nothing does)."""
    done = fabric.exec(node, "python3", "-c", CONNECT, address, str(port), check=False)
    return done.stdout.strip() if done.returncode == 0 else ""
