"""Probing load-balancer backends from inside their routing domain (the socket boundary).

A probe must leave from the routing-domain namespace: that is where the backends are
reachable (guest addresses overlap between domains), and it takes the path the load
balancer's own DNAT takes. Sockets are created in the namespace with agent.netns, then
used from this thread; no process runs in the namespace.

- TCP: a non-blocking connect. Handshake done = alive; refused, unreachable or no answer
  within the timeout = dead. The connection is then reset (SO_LINGER 0), not closed:
  a FIN would leave one TIME_WAIT socket per probe and second in the namespace, and the
  backend would see an orderly, empty session (HAProxy resets its checks for the same
  reasons).
- UDP: an empty datagram on a connected socket. A UDP service owes us no answer (DNS
  ignores an empty datagram, syslog never answers), so the only definite "nobody is
  there" is the kernel's: ICMP port unreachable, which a connected socket reports as
  ECONNREFUSED on recv/send. So a refusal (or host/network unreachable) is dead, an
  answer is alive, and silence is alive too. Limits, known and accepted: a backend
  whose whole host vanished answers nothing (ARP fails after ~3 s, after the probe is
  over), and ICMP error rate limits can swallow a refusal; both read as alive.

All probes of a round run at once in one thread: non-blocking sockets and one epoll
selector, at most MAX_IN_FLIGHT open at a time. Measured here (2 CPUs), a round over
1,000 backends that answer (500 listening, 500 refusing) takes ~60 ms; one silent
backend makes it last the timeout, ~0.55 s (tests/functional/test_softgate_lb_health.py).

Verdicts are "alive", "dead", or "unknown" when the failure is ours (namespace gone,
out of file descriptors): a local problem must never take backends out of service.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from agent.netfilter_state import IPv4, PortProtocol
from agent.netns import socket_in

Verdict = Literal["alive", "dead", "unknown"]

# At most this many probe sockets open at once: bounds our file descriptors (the
# agent's soft limit may be as low as 1024) while 1,000 backends still fit in one wave.
MAX_IN_FLIGHT: Final = 1000
# What the backend (or the path to it) says when nobody is there. Anything else that
# fails is our own trouble and gives "unknown".
_DEAD_ERRNOS: Final = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH,
                                 errno.ENETUNREACH, errno.EHOSTDOWN, errno.ETIMEDOUT})
_RESET: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST


@dataclass(frozen=True, order=True)
class Target:
    """One thing to probe: a backend as seen from one routing-domain namespace."""

    netns: str | None  # None: the caller's own namespace (tests)
    protocol: PortProtocol
    ip: IPv4
    port: int

    def __str__(self) -> str:
        return f"{self.protocol}/{self.ip}:{self.port}"


@dataclass(frozen=True)
class ProbeResult:
    verdict: Verdict
    detail: str  # why, in a few words: "connection refused", "no answer in 0.5 s"


class Prober(Protocol):
    def probe_all(self, targets: Iterable[Target], timeout: float
                  ) -> dict[Target, ProbeResult]: ...


@dataclass
class _Probe:
    target: Target
    sock: socket.socket
    deadline: float


def _oserror_result(exc: OSError) -> ProbeResult:
    verdict: Verdict = "dead" if exc.errno in _DEAD_ERRNOS else "unknown"
    return ProbeResult(verdict, (exc.strerror or str(exc)).lower())


def _errno_result(code: int) -> ProbeResult:
    return _oserror_result(OSError(code, os.strerror(code)))


@dataclass
class SocketProber:
    """The real prober, one round at a time. `socket_factory` is agent.netns.socket_in,
    replaceable in tests."""

    socket_factory: Callable[[str | None, int, int], socket.socket] = socket_in
    max_in_flight: int = MAX_IN_FLIGHT
    clock: Callable[[], float] = time.monotonic
    _selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)

    def probe_all(self, targets: Iterable[Target], timeout: float
                  ) -> dict[Target, ProbeResult]:
        pending = deque(dict.fromkeys(targets))  # unique, in the given order
        results: dict[Target, ProbeResult] = {}
        flying: dict[int, _Probe] = {}
        try:
            while pending or flying:
                while pending and len(flying) < self.max_in_flight:
                    self._start(pending.popleft(), timeout, flying, results)
                self._wait(flying, results, timeout)
        finally:
            for probe in list(flying.values()):
                self._finish(probe, flying)
        return results

    def _start(self, target: Target, timeout: float, flying: dict[int, _Probe],
               results: dict[Target, ProbeResult]) -> None:
        kind = socket.SOCK_STREAM if target.protocol == "tcp" else socket.SOCK_DGRAM
        try:
            sock = self.socket_factory(target.netns, socket.AF_INET, kind)
        except OSError as exc:  # namespace gone, out of descriptors: not the backend
            results[target] = ProbeResult("unknown", f"no probe socket: {exc}")
            return
        sock.setblocking(False)
        try:
            if target.protocol == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                code = sock.connect_ex((str(target.ip), target.port))
                if code not in (0, errno.EINPROGRESS):
                    raise OSError(code, os.strerror(code))
                events = selectors.EVENT_WRITE
            else:
                sock.connect((str(target.ip), target.port))
                sock.send(b"")
                events = selectors.EVENT_READ
        except OSError as exc:
            sock.close()
            results[target] = _oserror_result(exc)
            return
        probe = _Probe(target, sock, self.clock() + timeout)
        flying[sock.fileno()] = probe
        self._selector.register(sock, events, probe)

    def _wait(self, flying: dict[int, _Probe], results: dict[Target, ProbeResult],
              timeout: float) -> None:
        if not flying:
            return
        wait = min(p.deadline for p in flying.values()) - self.clock()
        for key, _ in self._selector.select(max(0.0, wait)):
            probe: _Probe = key.data
            results[probe.target] = _answer(probe)
            self._finish(probe, flying)
        now = self.clock()
        for probe in [p for p in flying.values() if p.deadline <= now]:
            results[probe.target] = _silence(probe.target, timeout)
            self._finish(probe, flying)

    def _finish(self, probe: _Probe, flying: dict[int, _Probe]) -> None:
        flying.pop(probe.sock.fileno(), None)
        self._selector.unregister(probe.sock)
        probe.sock.close()


def _answer(probe: _Probe) -> ProbeResult:
    """The socket is ready: the handshake finished or failed, or a datagram or an ICMP
    error came back."""
    if probe.target.protocol == "tcp":
        code = probe.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return ProbeResult("alive", "connected") if code == 0 else _errno_result(code)
    try:
        probe.sock.recv(1)
    except BlockingIOError:
        return ProbeResult("alive", "no refusal")  # a spurious wake-up: nothing refused
    except OSError as exc:
        return _oserror_result(exc)
    return ProbeResult("alive", "answered")


def _silence(target: Target, timeout: float) -> ProbeResult:
    if target.protocol == "tcp":
        return ProbeResult("dead", f"no answer in {timeout:g} s")
    return ProbeResult("alive", f"no refusal in {timeout:g} s")


@dataclass
class FakeProber:
    """For unit tests: verdicts by target (default alive), and a record of each round."""

    verdicts: dict[Target, Verdict] = field(default_factory=dict)
    rounds: list[tuple[Target, ...]] = field(default_factory=list)

    def set(self, verdicts: Mapping[Target, Verdict]) -> None:
        self.verdicts.update(verdicts)

    def probe_all(self, targets: Iterable[Target], timeout: float
                  ) -> dict[Target, ProbeResult]:
        probed = tuple(dict.fromkeys(targets))
        self.rounds.append(probed)
        return {t: ProbeResult(self.verdicts.get(t, "alive"), "fake") for t in probed}
