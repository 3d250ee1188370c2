"""Traffic for the scenarios and the demo: a TCP server that answers with its peer's
address (or with its own name), a client, an HTTP fetch."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise

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


# A reply line of `ping -D`: "[1763712000.123456] 64 bytes from ...: icmp_seq=7 ...".
_REPLY_RE = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=\d+")
_SEQ_RE = re.compile(r"icmp_seq=(\d+)")


@dataclass
class PingStream:
    """What a fast ping saw, as it sees it: its output lines, its replies' arrival times
    (wall clock, as ping -D prints them) between `started` and `ended`."""

    started: float = 0.0
    ended: float = 0.0
    lines: list[str] = field(default_factory=list)

    def replies(self) -> list[float]:
        return [float(match.group(1)) for line in list(self.lines)
                if (match := _REPLY_RE.match(line))]

    def replying_since(self, since: float, lasting: float = 0.0) -> bool:
        """Whether replies have come from `since` on, for `lasting` seconds or more."""
        later = [stamp for stamp in self.replies() if stamp >= since]
        return bool(later) and later[-1] - later[0] >= lasting

    def lost(self) -> list[int]:
        """The icmp_seq numbers up to the last reply's that got no reply: packets lost (or
        answered after their successors, which a fabric must not do either). One still in
        flight when the stream ended is not among them."""
        answered = {int(match.group(1)) for line in list(self.lines)
                    if _REPLY_RE.match(line) and (match := _SEQ_RE.search(line))}
        return sorted(set(range(1, max(answered, default=0) + 1)) - answered)

    def longest_gap(self, since: float = 0.0, until: float = 0.0) -> float:
        """The longest time without a reply, the stream's start and end included: an
        outage plus at most one interval. `since`/`until` narrow it to a window."""
        return longest_gap(self.replies(), since or self.started,
                           until or self.ended or time.time())


def longest_gap(stamps: list[float], since: float, until: float) -> float:
    """The longest time between `since`, the stamps within (since, until) and `until`."""
    times = [since, *(stamp for stamp in stamps if since < stamp < until), until]
    return max(later - earlier for earlier, later in pairwise(times))


@contextmanager
def ping_stream(fabric: Fabric, node: str, address: str, interval: float = 0.02,
                source: str | None = None) -> Iterator[PingStream]:
    """Pings `address` from the node every `interval` seconds while the block runs; the
    stream fills as the replies come. `source` fixes the source address (a client that
    keeps its address whichever link the node sends through)."""
    stream = PingStream(started=time.time())
    fixed = ["-I", source] if source else []
    # stdbuf: a line per reply as it comes, not a pipe's buffer at the end.
    process = subprocess.Popen(["ip", "netns", "exec", fabric.ns(node), "stdbuf", "-oL",
                                "ping", "-D", "-n", "-i", str(interval), *fixed, address],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: stream.lines.extend(process.stdout or ()),
                              daemon=True)
    reader.start()
    try:
        yield stream
    finally:
        stream.ended = time.time()
        process.send_signal(signal.SIGINT)  # our own child, by its handle
        process.wait(timeout=10)
        reader.join(timeout=10)


# The servers' start: listen, say so, take one connection (c).
_ACCEPT_ONE = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(4)
print("ready", flush=True)
c, _ = s.accept()
"""
# The clients' start: one connection (c) to address port, reads waiting 30 s at most.
_CONNECT = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
c.settimeout(30)
print("connected", flush=True)
"""
# Echoes one TCP connection back, byte for byte, until the client closes it.
ECHO_SERVER = _ACCEPT_ONE + r"""
while data := c.recv(4096):
    c.sendall(data)
"""
# One TCP connection: a numbered line every 20 ms, each echo awaited and stamped;
# "ERR ..." and the end if the connection breaks.
STREAM_CLIENT = _CONNECT + r"""
n = 0
try:
    while True:
        n += 1
        c.sendall(b"%08d\n" % n)
        got = b""
        while len(got) < 9:
            chunk = c.recv(9 - len(got))
            if not chunk:
                raise OSError("closed by the peer")
            got += chunk
        if got != b"%08d\n" % n:
            raise OSError("echo out of order: %r" % got)
        print("%.6f %d" % (time.time(), n), flush=True)
        time.sleep(0.02)
except OSError as e:
    print("ERR", e, flush=True)
"""
# Server speaks: on one accepted connection, a numbered line every 20 ms until it breaks.
PUSH_SERVER = _ACCEPT_ONE + r"""
n = 0
while True:
    n += 1
    c.sendall(b"%08d\n" % n)
    time.sleep(0.02)
"""
# The client that only listens: each line stamped as it comes, "ERR ..." if it breaks.
# Its kernel acknowledges and nothing else: after a move, the server's retransmission
# is the first packet of the connection the new path sees.
LISTEN_CLIENT = _CONNECT + r"""
expected = 0
try:
    for line in c.makefile("rb"):
        expected += 1
        if line != b"%08d\n" % expected:
            raise OSError("line out of order: %r" % line)
        print("%.6f %d" % (time.time(), expected), flush=True)
    raise OSError("closed by the peer")
except OSError as e:
    print("ERR", e, flush=True)
"""


@dataclass
class TcpStream:
    """One TCP connection with a line every 20 ms (echoed, or pushed by the server):
    when each line came back, and whether the connection broke."""

    started: float = 0.0
    ended: float = 0.0
    lines: list[str] = field(default_factory=list)

    def echoes(self) -> list[float]:
        return [float(line.split()[0]) for line in list(self.lines)
                if line[:1].isdigit()]

    def broken(self) -> str:
        """The client's error line, "" while the connection holds."""
        return next((line.strip() for line in list(self.lines) if line.startswith("ERR")), "")

    def echoing_since(self, since: float, lasting: float = 0.0) -> bool:
        later = [stamp for stamp in self.echoes() if stamp >= since]
        return bool(later) and later[-1] - later[0] >= lasting

    def longest_gap(self, since: float = 0.0, until: float = 0.0) -> float:
        return longest_gap(self.echoes(), since or self.started,
                           until or self.ended or time.time())


@contextmanager
def tcp_stream(fabric: Fabric, client: str, server: str, address: str, port: int, *,
               pushed: bool = False) -> Iterator[TcpStream]:
    """An echo server in `server` listening on `port`, and one connection to it from
    `client` (to `address`) carrying a line every 20 ms while the block runs. `pushed`:
    the server sends the lines and the client only listens."""
    server_script, client_script = ((PUSH_SERVER, LISTEN_CLIENT) if pushed
                                    else (ECHO_SERVER, STREAM_CLIENT))
    echo = subprocess.Popen(["ip", "netns", "exec", fabric.ns(server), "python3", "-c",
                             server_script, str(port)], stdout=subprocess.PIPE, text=True)
    stream = TcpStream(started=time.time())
    sender = None
    try:
        assert echo.stdout is not None and echo.stdout.readline() == "ready\n"
        sender = subprocess.Popen(["ip", "netns", "exec", fabric.ns(client), "python3",
                                   "-c", client_script, address, str(port)],
                                  stdout=subprocess.PIPE, text=True)
        reader = threading.Thread(target=lambda: stream.lines.extend(sender.stdout or ()),
                                  daemon=True)
        reader.start()
        yield stream
    finally:
        stream.ended = time.time()
        for process in (sender, echo):  # our own children, by their handles
            if process is not None:
                process.kill()
                process.wait(timeout=10)
