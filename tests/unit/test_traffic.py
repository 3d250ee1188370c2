"""simulator.traffic's ping-stream arithmetic on recorded `ping -D` output."""

from __future__ import annotations

import pytest

from simulator.traffic import PingStream

OUTPUT = """PING 10.100.0.3 (10.100.0.3) 56(84) bytes of data.
[100.020000] 64 bytes from 10.100.0.3: icmp_seq=1 ttl=64 time=0.1 ms
[100.040000] 64 bytes from 10.100.0.3: icmp_seq=2 ttl=64 time=0.1 ms
[101.250000] 64 bytes from 10.100.0.3: icmp_seq=63 ttl=64 time=0.2 ms
[101.270000] 64 bytes from 10.100.0.3: icmp_seq=64 ttl=64 time=0.1 ms

--- 10.100.0.3 ping statistics ---
64 transmitted, 4 received, 93.75% packet loss, time 1270ms
"""


def test_the_longest_gap_is_between_two_replies() -> None:
    stream = PingStream(started=100.0, ended=101.3, lines=OUTPUT.splitlines())
    assert stream.replies() == [100.02, 100.04, 101.25, 101.27]
    assert stream.longest_gap() == pytest.approx(1.21)


def test_no_reply_after_the_outage_counts_to_the_end() -> None:
    stream = PingStream(started=100.0, ended=105.0, lines=OUTPUT.splitlines())
    assert stream.longest_gap() == pytest.approx(3.73)


def test_no_reply_at_all_is_the_whole_stream() -> None:
    assert PingStream(started=100.0, ended=102.5).longest_gap() == 2.5


def test_replying_since_a_moment_for_a_while() -> None:
    stream = PingStream(started=100.0, lines=OUTPUT.splitlines())
    assert stream.replying_since(100.0)
    assert stream.replying_since(101.0, lasting=0.02 - 1e-9)
    assert not stream.replying_since(101.0, lasting=0.1)
    assert not stream.replying_since(101.3)


def test_lost_packets_are_the_sequence_numbers_without_a_reply() -> None:
    stream = PingStream(started=100.0, ended=101.3, lines=OUTPUT.splitlines())
    assert stream.lost() == list(range(3, 63))
    whole = PingStream(lines=[line for line in OUTPUT.splitlines() if "seq=6" in line])
    assert whole.lost() == list(range(1, 63))  # the first packets count too
    assert PingStream(lines=[]).lost() == []
