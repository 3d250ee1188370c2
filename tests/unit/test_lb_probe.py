"""agent.lb_probe.SocketProber on the loopback of the test's own namespace (no root).

Every target is 127.0.0.1: nothing leaves the machine. Ports are ones we bound (and, for
"closed", bound and released, so nobody else holds them either).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from agent.lb_probe import SocketProber, Target

LOOP = IPv4Address("127.0.0.1")


def _target(protocol: str, port: int) -> Target:
    return Target(None, protocol, LOOP, port)  # type: ignore[arg-type]


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def _bound(opened: list[socket.socket], kind: int, backlog: int | None = None) -> int:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if backlog is not None:
        sock.listen(backlog)
    opened.append(sock)
    port: int = sock.getsockname()[1]
    return port


def _closed_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_verdicts_by_protocol(sockets: list[socket.socket]) -> None:
    listening = _bound(sockets, socket.SOCK_STREAM, backlog=8)
    # A full accept queue drops SYNs: a TCP backend that never answers, on loopback.
    stuck = _bound(sockets, socket.SOCK_STREAM, backlog=0)
    filler = socket.create_connection(("127.0.0.1", stuck))
    sockets.append(filler)
    udp_silent = _bound(sockets, socket.SOCK_DGRAM)
    targets = {
        "tcp listening": _target("tcp", listening),
        "tcp closed": _target("tcp", _closed_port(socket.SOCK_STREAM)),
        "tcp silent": _target("tcp", stuck),
        "udp silent": _target("udp", udp_silent),
        "udp closed": _target("udp", _closed_port(socket.SOCK_DGRAM)),
    }
    results = SocketProber().probe_all(targets.values(), 0.3)
    got = {name: (results[t].verdict, results[t].detail) for name, t in targets.items()}
    assert got == {
        "tcp listening": ("alive", "connected"),
        "tcp closed": ("dead", "connection refused"),
        "tcp silent": ("dead", "no answer in 0.3 s"),
        "udp silent": ("alive", "no refusal in 0.3 s"),  # silence is alive, by design
        "udp closed": ("dead", "connection refused"),  # ICMP port unreachable
    }


def test_an_answering_udp_backend_is_alive(sockets: list[socket.socket]) -> None:
    port = _bound(sockets, socket.SOCK_DGRAM)
    server = sockets[-1]
    prober = SocketProber()
    target = _target("udp", port)
    # Answer the probe's datagram from the test itself: one probe in flight, so the
    # probe socket is the only sender.
    def echo() -> None:
        data, peer = server.recvfrom(16)
        server.sendto(b"pong" + data, peer)

    thread = threading.Thread(target=echo)
    thread.start()
    result = prober.probe_all([target], 2.0)[target]
    thread.join(timeout=5)
    assert (result.verdict, result.detail) == ("alive", "answered")


def test_local_trouble_is_unknown_not_dead() -> None:
    def no_sockets(netns: str | None, family: int, kind: int) -> socket.socket:
        raise OSError(24, "Too many open files")

    target = _target("tcp", 9)
    result = SocketProber(socket_factory=no_sockets).probe_all([target], 0.1)[target]
    assert result.verdict == "unknown" and "Too many open files" in result.detail


def test_a_missing_namespace_is_unknown() -> None:
    target = Target("vxt-no-such-namespace", "tcp", LOOP, 9)
    result = SocketProber().probe_all([target], 0.1)[target]
    assert result.verdict == "unknown"


def test_more_targets_than_in_flight_all_get_answers(sockets: list[socket.socket]) -> None:
    listening = _bound(sockets, socket.SOCK_STREAM, backlog=64)
    closed = [_closed_port(socket.SOCK_STREAM) for _ in range(10)]
    targets = [_target("tcp", listening), *(_target("tcp", p) for p in closed)]
    results = SocketProber(max_in_flight=3).probe_all(targets, 1.0)
    assert [results[t].verdict for t in targets] == ["alive"] + ["dead"] * 10


def test_a_thousand_refusals_take_a_fraction_of_the_interval() -> None:
    # Closed ports answer at once (RST): this measures our own cost per round, socket
    # creation, connect and the selector, for 1,000 backends.
    port = _closed_port(socket.SOCK_STREAM)
    targets = [Target(None, "tcp", IPv4Address(f"127.0.{i // 250}.{i % 250 + 1}"), port)
               for i in range(1000)]
    started = time.monotonic()
    results = SocketProber().probe_all(targets, 0.5)
    elapsed = time.monotonic() - started
    assert {r.verdict for r in results.values()} == {"dead"} and len(results) == 1000
    assert elapsed < 0.5, f"1,000 probes took {elapsed:.3f} s"
