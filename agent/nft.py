"""The one module that runs nftables: `nft -f -`, inside a network namespace or not.

Why a subprocess and not libnftables: Debian's python3-nftables binding imports only in
the system interpreter (the agent runs in a virtual environment), and entering a
namespace in-process needs os.setns, which Python 3.11 lacks; a setns'd thread would
also drag the whole interpreter's sockets along. `ip netns exec NAME nft -f -` costs
about 4 ms per call here (measured: `nsenter --net` 3.5 ms), small next to one
transaction of any size, and it keeps nft's own parser as the single judge of the text.

Every call is one transaction (nft -f applies a file as one netlink batch). Errors
become NftError with nft's stderr on one line. Everything above this module is tested
against FakeNft (agent.nft_fake).
"""

from __future__ import annotations

import re
import subprocess
from typing import Final, Protocol

_NETNS_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CARETS_RE: Final = re.compile(r"^[\s^~]*$")
MAX_MESSAGE: Final = 600


class NftError(RuntimeError):
    """nft refused a transaction or could not run; `str()` is one line."""


class NftRunner(Protocol):
    def apply(self, netns: str | None, text: str, *, check: bool = False) -> None: ...

    def list_ruleset(self, netns: str | None) -> str: ...


def one_line(stderr: str) -> str:
    """nft's multi-line error (message, offending line, carets) as one line."""
    parts = [" ".join(line.split()) for line in stderr.splitlines()
             if line.strip() and not _CARETS_RE.match(line)]
    text = " | ".join(parts) or "nft failed without a message"
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def command(netns: str | None, args: list[str], binary: str = "nft") -> list[str]:
    if netns is None:
        return [binary, *args]
    if not _NETNS_RE.fullmatch(netns):
        raise NftError(f"not a namespace name: {netns!r}")
    return ["ip", "netns", "exec", netns, binary, *args]


class Nft:
    """Runs the real nft. `check=True` is `nft -c`: parsed and validated by the kernel,
    nothing committed."""

    def __init__(self, binary: str = "nft", timeout: float = 60.0) -> None:
        self.binary = binary
        self.timeout = timeout

    def _run(self, netns: str | None, args: list[str], stdin: str = "") -> str:
        try:
            done = subprocess.run(command(netns, args, self.binary), input=stdin,
                                  capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NftError(f"nft in {netns or 'the current namespace'}: {exc}") from exc
        if done.returncode != 0:
            where = f"netns {netns}" if netns else "current netns"
            raise NftError(f"nft ({where}): {one_line(done.stderr)}")
        return done.stdout

    def apply(self, netns: str | None, text: str, *, check: bool = False) -> None:
        self._run(netns, ["-c", "-f", "-"] if check else ["-f", "-"], text)

    def list_ruleset(self, netns: str | None) -> str:
        return self._run(netns, ["list", "ruleset"])
