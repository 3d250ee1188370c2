"""The one module that runs conntrack: active connections per load-balancer backend, and
forgetting the flows of a backend that died.

leastconn (agent.netfilter_lb) needs each backend's current connection count. After a
DNAT, a conntrack entry's reply direction comes from the backend, so counting entries
whose reply source is (backend ip, backend port) counts that backend's connections,
whatever VIP they came through. Only ESTABLISHED TCP entries count: half-open and
closing ones do not load a backend the way leastconn means.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from typing import Final

from agent.netfilter_state import IPv4

_FIELD_RE: Final = re.compile(r"\b(src|sport)=(\S+)")
_DELETED_RE: Final = re.compile(r"([0-9]+) flow entries have been deleted")


class ConntrackError(RuntimeError):
    """conntrack could not be run or failed; `str()` is one line."""


def reply_sources(listing: str) -> Counter[tuple[IPv4, int]]:
    """(reply source ip, port) -> entries, from `conntrack -L` text (pure)."""
    counts: Counter[tuple[IPv4, int]] = Counter()
    for line in listing.splitlines():
        fields = _FIELD_RE.findall(line)
        # Original direction: src, sport; reply direction: src, sport (in that order).
        sources = [value for key, value in fields if key == "src"]
        ports = [value for key, value in fields if key == "sport"]
        if len(sources) >= 2 and len(ports) >= 2 and ports[1].isdigit():
            try:
                counts[(IPv4(sources[1]), int(ports[1]))] += 1
            except ValueError:
                continue  # an IPv6 entry or noise: not one of our backends
    return counts


def established_by_backend(netns: str) -> Counter[tuple[IPv4, int]]:
    """ESTABLISHED TCP connections per reply source in one namespace."""
    command = ["ip", "netns", "exec", netns, "conntrack", "-L", "-p", "tcp",
               "--state", "ESTABLISHED"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConntrackError(f"conntrack in {netns}: {exc}") from exc
    if done.returncode != 0:
        message = " | ".join(line.strip() for line in done.stderr.splitlines() if line.strip())
        raise ConntrackError(f"conntrack in {netns}: {message or 'failed'}")
    return reply_sources(done.stdout)


def forget_flows(netns: str, protocol: str, vip: IPv4, vport: int, backend: IPv4,
                 port: int) -> int:
    """Deletes the conntrack entries of flows that came in for vip:vport and were sent to
    backend:port, so that their next packet is load-balanced afresh; returns how many.

    For UDP backends taken out by health checks: a UDP "connection" lives as long as
    its client keeps sending (each packet refreshes the entry), so a client that reuses
    its source port would stay pinned to the dead backend forever. TCP flows are left
    alone: a dead backend resets them itself, and a backend wrongly judged dead keeps
    serving the connections it has."""
    command = ["ip", "netns", "exec", netns, "conntrack", "-D", "-p", protocol,
               "--orig-dst", str(vip), "--orig-port-dst", str(vport),
               "--reply-src", str(backend), "--reply-port-src", str(port)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConntrackError(f"conntrack in {netns}: {exc}") from exc
    deleted = _DELETED_RE.search(done.stderr)
    if deleted is None:  # exit status 1 also means "nothing matched", with this message
        message = " | ".join(line.strip() for line in done.stderr.splitlines() if line.strip())
        raise ConntrackError(f"conntrack in {netns}: {message or 'failed'}")
    return int(deleted.group(1))
