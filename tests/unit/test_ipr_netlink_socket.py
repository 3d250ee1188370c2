"""agent.ipr_netlink.Socket's loop against a scripted kernel: one send, the answers of
that request read up to its ack, leftovers of another request skipped, the kernel's
reason kept with its error, an echo returned with the ack."""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable

import pytest

from agent import ipr_netlink as nl

Answer = Callable[[int], list[bytes]]  # the request's sequence number -> what comes


class Kernel:
    """Stands in for the socket: every send queues the next scripted answers, each recv
    gives one queued datagram."""

    def __init__(self, *script: Answer) -> None:
        self.script = list(script)
        self.sent: list[bytes] = []
        self.queued: list[bytes] = []

    def setsockopt(self, *args: object) -> None: ...
    def bind(self, address: object) -> None: ...
    def close(self) -> None: ...

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        seq = nl.HEADER.unpack_from(data)[3]
        self.queued += self.script.pop(0)(seq)
        return len(data)

    def recv_into(self, buffer: bytearray) -> int:
        datagram = self.queued.pop(0)
        buffer[:len(datagram)] = datagram
        return len(datagram)


def message(kind: int, seq: int, body: bytes, flags: int = 0) -> bytes:
    return nl.HEADER.pack(nl.HEADER.size + len(body), kind, flags, seq, 0) + body


def ack(seq: int, code: int = 0, text: str = "") -> bytes:
    body = struct.pack("=i", -code)
    if text:
        raw = text.encode() + b"\0"
        body += nl.HEADER.pack(16, nl.RTM_NEWLINK, 0, seq, 0)  # our request, echoed
        body += struct.pack("=HH", 4 + len(raw), 1) + raw + b"\0" * (-len(raw) % 4)
    return message(nl.NLMSG_ERROR, seq, body, 0x200 if text else 0x100)


def link(seq: int, index: int, flags: int = 0) -> bytes:
    return message(nl.RTM_NEWLINK, seq, struct.pack("=BxHiII", 0, 1, index, 0, 0), flags)


def open_on(kernel: Kernel) -> nl.Socket:
    return nl.Socket(kernel)  # type: ignore[arg-type]  # duck-typed like a socket


def test_a_change_is_one_send_and_its_ack() -> None:
    kernel = Kernel(lambda seq: [ack(seq)])
    assert open_on(kernel).ack(nl.RTM_NEWLINK, 0, nl.named("vxb7", up=True)) == []
    _, kind, flags, _, _ = nl.HEADER.unpack_from(kernel.sent[0])
    assert (len(kernel.sent), kind, flags) == (1, nl.RTM_NEWLINK,
                                               nl.NLM_F_REQUEST | nl.NLM_F_ACK)


def test_an_echo_comes_before_the_ack_and_is_returned() -> None:
    kernel = Kernel(lambda seq: [link(seq, 42) + ack(seq)])
    echoed = open_on(kernel).ack(nl.RTM_NEWLINK, nl.CREATE, nl.bridge("vxb7"), echo=True)
    assert [nl.link_indexes(answer) for answer in echoed] == [(42, None)]
    assert nl.HEADER.unpack_from(kernel.sent[0])[2] & nl.NLM_F_ECHO


def test_a_refusal_carries_the_kernels_reason() -> None:
    said = "A VXLAN device with the specified VNI already exists"
    kernel = Kernel(lambda seq: [ack(seq, errno.EEXIST, said)])
    with pytest.raises(nl.NetlinkError) as caught:
        open_on(kernel).ack(nl.RTM_NEWLINK, nl.CREATE, nl.named("vxv7"))
    assert (caught.value.code, caught.value.detail) == (errno.EEXIST, said)
    assert not open_on(Kernel(lambda seq: [ack(seq, errno.ENODEV)])).broken


def test_answers_of_another_request_are_skipped() -> None:
    kernel = Kernel(lambda seq: [ack(seq - 1, errno.ENODEV) + link(seq - 1, 3), link(seq, 7)])
    sock = open_on(kernel)
    assert nl.link_indexes(sock.get(nl.RTM_GETLINK, nl.link_get(name="vxb7")))[0] == 7
    assert not sock.broken


def test_a_dump_is_read_to_its_end_and_asked_again_when_interrupted() -> None:
    done = struct.pack("=i", 0)
    kernel = Kernel(
        lambda seq: [link(seq, 1, nl.NLM_F_MULTI | nl.NLM_F_DUMP_INTR),
                     message(nl.NLMSG_DONE, seq, done, nl.NLM_F_MULTI)],
        lambda seq: [link(seq, 1, nl.NLM_F_MULTI) + link(seq, 2, nl.NLM_F_MULTI),
                     link(seq, 3, nl.NLM_F_MULTI) + message(nl.NLMSG_DONE, seq, done,
                                                            nl.NLM_F_MULTI)])
    answers = open_on(kernel).dump(nl.RTM_GETLINK, nl.link_dump())
    assert [nl.link_indexes(answer)[0] for answer in answers] == [1, 2, 3]
    first, again = kernel.sent  # the same request, with the next sequence number
    assert first[:8] + first[12:] == again[:8] + again[12:]
    assert (nl.HEADER.unpack_from(first)[3], nl.HEADER.unpack_from(again)[3]) == (1, 2)


def test_a_socket_is_broken_until_its_answers_are_read() -> None:
    kernel = Kernel(lambda seq: [])
    sock = open_on(kernel)
    with pytest.raises(IndexError):  # the scripted kernel has nothing to give
        sock.ack(nl.RTM_NEWLINK, 0, nl.named("vxb7"))
    assert sock.broken


def test_the_real_socket_is_a_netlink_one() -> None:
    sock = nl.Socket.open()
    try:
        assert sock.sock.family == socket.AF_NETLINK
    finally:
        sock.close()
