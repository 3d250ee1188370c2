"""The one module that runs conntrack: active connections per load-balancer backend.

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
