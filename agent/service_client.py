"""The agent's HTTP client of the service: long-poll the device's configs, report status.

Standard library only (http.client): the agent runs on SoftGates and hypervisors, where
fewer packages mean fewer things to break. One keep-alive connection, reopened after any
error. Every failure is a ServiceUnreachable with one line; the agent then keeps the data
plane as it is and retries with backoff.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.status import ObjectStatus

# The service answers a long-poll after at most `wait` seconds; the socket waits a little
# longer so a slow answer is not taken for a dead service.
SOCKET_SLACK_S = 15.0


_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class ServiceUnreachable(RuntimeError):
    """The service could not be reached or refused the call; the message is one line."""


@dataclass(frozen=True)
class Artifact:
    name: str
    generation: int
    sha256: str
    content: str


@dataclass(frozen=True)
class Fetched:
    generation: int
    artifacts: tuple[Artifact, ...]  # only those changed after the generation asked for



class Service(Protocol):
    def fetch(self, since: int, wait: int) -> Fetched: ...

    def report(self, generation: int, reports: list[ObjectStatus]) -> None: ...


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket: the simulator's agents run in network namespaces with no
    route to the service, but a socket path reaches across namespaces."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


@dataclass(frozen=True)
class TlsFiles:
    """How the agent checks the service and shows itself under https: the CA that signed
    the service's certificate (None: the system's CAs), and the device's own certificate
    and key (`vxgate ca issue <device>`) for a service that requires client certificates."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        """A verifying client context; ValueError (one line) if a file is unusable."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file is not None:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise ValueError(f"TLS files unusable: {reason}") from None
        return context


class ServiceClient:
    """`url` is http(s)://host[:port][/prefix], or unix:///path/to/socket."""

    def __init__(self, url: str, device: str, token: str, timeout: float = 10.0,
                 tls: TlsFiles | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        unix = parsed.scheme == "unix" and parsed.path
        if not unix and (parsed.scheme not in ("http", "https") or not parsed.hostname):
            raise ValueError("service URL must be http(s)://host[:port] or "
                             f"unix:///path: {url!r}")
        if tls is not None and (tls.cert_file or tls.ca_file) and parsed.scheme != "https":
            raise ValueError(f"TLS files given, but the service URL is not https: {url!r}")
        # Built once, here: a bad file is an error at start, not at every reconnect.
        self._tls = (tls or TlsFiles()).context() if parsed.scheme == "https" else None
        self._parsed = parsed
        self._base = "" if unix else parsed.path.rstrip("/")
        self._device = urllib.parse.quote(device, safe="")
        self._headers = {"Authorization": f"Bearer {token}",
                         "Content-Type": "application/json"}
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def fetch(self, since: int, wait: int) -> Fetched:
        body = self._call("GET", f"config?since={since}&wait={wait}", None,
                          self._timeout + wait + SOCKET_SLACK_S)
        try:
            artifacts = tuple(
                Artifact(name, int(item["generation"]), str(item["sha256"]),
                         str(item["content"]))
                for name, item in sorted(body["artifacts"].items()))
            return Fetched(int(body["generation"]), artifacts)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ServiceUnreachable(f"unexpected answer from the service: {exc!r}") from exc

    def report(self, generation: int, reports: list[ObjectStatus]) -> None:
        objects = [{"kind": r.kind, "id": r.id, "state": r.state, "reason": r.reason}
                   for r in reports]
        self._call("PUT", "status", {"generation": generation, "objects": objects},
                   self._timeout)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _call(self, method: str, tail: str, body: Any, timeout: float) -> Any:
        path = f"{self._base}/v1/devices/{self._device}/{tail}"
        payload = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            reused = self._connection is not None
            try:
                connection = self._open(timeout)
                connection.request(method, path, body=payload, headers=self._headers)
                response = connection.getresponse()
                text = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                # The server closes idle keep-alive connections (gunicorn: 30 s); a
                # request on one that died meanwhile is sent again, once, on a new one.
                if attempt == 1 and reused and isinstance(exc, _STALE_CONNECTION):
                    continue
                raise ServiceUnreachable(f"{method} {path}: {_one_line(exc)}") from exc
        if response.status != 200:
            raise ServiceUnreachable(f"{method} {path}: HTTP {response.status}: "
                                     f"{_error_of(text)}")
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ServiceUnreachable(f"{method} {path}: answer is not JSON") from exc

    def _open(self, timeout: float) -> http.client.HTTPConnection:
        if self._connection is None:
            if self._parsed.scheme == "unix":
                self._connection = UnixHTTPConnection(self._parsed.path, timeout)
            else:
                host, port = self._parsed.hostname or "", self._parsed.port
                if self._tls is not None:
                    self._connection = http.client.HTTPSConnection(
                        host, port, timeout=timeout, context=self._tls)
                else:
                    self._connection = http.client.HTTPConnection(host, port, timeout=timeout)
        self._connection.timeout = timeout
        if self._connection.sock is not None:
            self._connection.sock.settimeout(timeout)
        return self._connection


def _error_of(text: bytes) -> str:
    try:
        return " ".join(str(json.loads(text)["error"]).split())[:300]
    except (ValueError, KeyError, TypeError):
        return " ".join(text.decode(errors="replace").split())[:300]


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    return " ".join(str(exc).split()) or type(exc).__name__
