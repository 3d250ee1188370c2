"""Metadata and password server compatible with CloudStack's virtual router (VR).

Guests keep using what they used with the VR: cloud-init's CloudStack data source and
CloudStack's cloud-set-guest-password scripts. Per gateway address:

  port 80    GET /latest/user-data             the VM's user data (404 if it has none)
             GET /latest/meta-data/            listing: one key per line
             GET /latest/meta-data/<key>       one item (instance-id, vm-id, public-keys, ...)
             GET /latest/<key>                 the VR's legacy form of the same items
  port 8080  header "DomU_Request: send_my_password"   the password, once; afterwards
                                                       "saved_password"
             header "DomU_Request: saved_password"     the guest's acknowledgement
             anything else                             "bad_request"

The requesting VM is its source address: a VM only ever sees its own data, and only on
the gateway of the network that NIC is in (the VR keyed its files by REMOTE_ADDR the same
way). Paths match ignoring case, like the VR's RewriteRule [NC] flags.

Process layout: ONE process per SoftGate. It creates its listening sockets inside each
routing domain's namespace (setns on the main thread around socket(); a socket stays in
the namespace it was created in) and serves them all from one selector loop, a thread per
connection. One process per namespace would cost a Python start (~75 ms CPU) and ~15 MB
per routing domain: 1,000 isolated networks would mean 15 GB. A new network is a reload
(SIGHUP), not a new process. Sockets use IP_FREEBIND, so they can be opened before the
links step has put the gateway address on the bridge.

The agent writes the whole configuration (JSON, see metadata_process.render_config) and
sends SIGHUP; after each load the server writes status.json: the config digest it runs
and per network "" or the error. Passwords that were served are remembered (network, IP,
SHA-256 of the password) in served.json, so a reload or restart never serves one twice;
a new password for that VM is served again.

Run: python -m agent.metadata_server --config FILE --state-dir DIR --pid-file FILE
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import selectors
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Final

from agent import procs
from agent.netns import socket_in

IP_FREEBIND: Final = 15  # linux/in.h; the socket module of Python 3.11 lacks the name
SEND_MY_PASSWORD: Final = "send_my_password"
SAVED_PASSWORD: Final = "saved_password"
BAD_REQUEST: Final = "bad_request"
USER_DATA: Final = "user-data"
META_DATA: Final = "meta-data"
REQUEST_TIMEOUT_S: Final = 10.0
# One process serves every tenant: a guest that opens connections without end must not
# exhaust threads for the others. Past this many open requests, new ones are dropped.
MAX_CONNECTIONS: Final = 512


class ConfigError(ValueError):
    pass


# --- what is served --------------------------------------------------------------------


@dataclass(frozen=True)
class VmRecord:
    user_data: str | None
    metadata: Mapping[str, str]  # lower-case key -> value
    listing: tuple[str, ...]  # the keys as given, sorted: the meta-data/ listing
    password: str | None


@dataclass(frozen=True)
class Site:
    """One guest network: where it listens and whose data it serves, by VM address."""

    network_id: str
    netns: str | None  # None: the server's own namespace (tests)
    addresses: tuple[str, ...]
    vms: Mapping[str, VmRecord]


@dataclass(frozen=True)
class Config:
    digest: str
    http_port: int
    password_port: int
    sites: tuple[Site, ...]


def parse_config(text: str) -> Config:
    """The agent wrote it from validated state; this checks shape and types only."""
    try:
        data = json.loads(text)
        sites = tuple(_site(item) for item in data["sites"])
        return Config(str(data["digest"]), int(data["http_port"]),
                      int(data["password_port"]), sites)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"bad metadata config: {exc!r}") from None


def _site(data: dict[str, Any]) -> Site:
    vms = {str(ip): _vm(record) for ip, record in data["vms"].items()}
    netns = data.get("netns")
    return Site(str(data["network_id"]), None if netns is None else str(netns),
                tuple(str(address) for address in data["addresses"]), vms)


def _vm(data: dict[str, Any]) -> VmRecord:
    metadata = {str(key): _optional_str(value) or "" for key, value in
                data.get("metadata", {}).items()}
    return VmRecord(
        user_data=_optional_str(data.get("user_data")),
        metadata={key.lower(): value for key, value in metadata.items()},
        listing=tuple(sorted(metadata)),
        password=_optional_str(data.get("password")),
    )


def _optional_str(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {type(value).__name__}")


def metadata_answer(vm: VmRecord | None, path: str) -> tuple[int, str]:
    """(HTTP status, body) for GET `path` from the VM whose record is `vm`."""
    parts = [part for part in path.split("?", 1)[0].lower().split("/") if part]
    if vm is None:
        return 404, "not found\n"
    if not parts:
        return 200, "latest\n"
    if parts == ["latest"]:
        return 200, f"{META_DATA}\n{USER_DATA}\n"
    if parts[0] != "latest":
        return 404, "not found\n"
    rest = parts[1:]
    if rest == [USER_DATA]:
        return (404, "not found\n") if vm.user_data is None else (200, vm.user_data)
    if rest == [META_DATA]:
        return 200, "".join(f"{key}\n" for key in vm.listing)
    key = rest[1] if len(rest) == 2 and rest[0] == META_DATA else \
        rest[0] if len(rest) == 1 else None
    if key is not None and key in vm.metadata:
        return 200, vm.metadata[key]
    return 404, "not found\n"


# --- passwords -------------------------------------------------------------------------


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


class Passwords:
    """Pending passwords by (network, VM address); served ones remembered on disk."""

    def __init__(self, served_file: Path) -> None:
        self.served_file = served_file
        self.lock = threading.Lock()
        self.pending: dict[str, str] = {}
        self.served: dict[str, str] = self._read_served()

    def _read_served(self) -> dict[str, str]:
        try:
            data = json.loads(self.served_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def load(self, sites: tuple[Site, ...]) -> None:
        wanted = {f"{site.network_id}/{ip}": vm.password
                  for site in sites for ip, vm in site.vms.items() if vm.password}
        with self.lock:
            # A VM that is gone, or that got a new password, is forgotten.
            self.served = {key: digest for key, digest in self.served.items()
                           if key in wanted and _digest(wanted[key]) == digest}
            self.pending = {key: password for key, password in wanted.items()
                            if key not in self.served}
            self._save()

    def take(self, key: str) -> str | None:
        with self.lock:
            password = self.pending.pop(key, None)
            if password is not None:
                self.served[key] = _digest(password)
                self._save()
            return password

    def acknowledge(self, key: str) -> None:
        self.take(key)

    def _save(self) -> None:
        procs.atomic_write(self.served_file, json.dumps(self.served, sort_keys=True), 0o600)


def password_answer(passwords: Passwords, site: Site | None, client: str,
                    request: str | None) -> str:
    """The VR's protocol. The body is always sent with status 200, as the VR does:
    clients compare the body ("saved_password", "bad_request"), not the status."""
    key = f"{site.network_id if site else ''}/{client}"
    if request == SEND_MY_PASSWORD:
        password = passwords.take(key) if site is not None else None
        return password if password is not None else SAVED_PASSWORD
    if request == SAVED_PASSWORD:
        passwords.acknowledge(key)
        return SAVED_PASSWORD
    return BAD_REQUEST


# --- HTTP ------------------------------------------------------------------------------


class SiteHolder:
    """What a listener serves; replaced whole on reload (one reference assignment)."""

    def __init__(self, site: Site) -> None:
        self.site: Site | None = site


class Listener(socketserver.ThreadingMixIn, HTTPServer):
    """An HTTP server around a socket we opened (possibly in another namespace)."""

    daemon_threads = True

    def __init__(self, sock: socket.socket, handler: type[BaseHTTPRequestHandler],
                 holder: SiteHolder, passwords: Passwords) -> None:
        # BaseServer only: TCPServer.__init__ would open and bind a socket of its own.
        socketserver.BaseServer.__init__(self, sock.getsockname(), handler)
        self.socket = sock
        self.holder = holder
        self.passwords = passwords

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            _connections.release()


_connections = threading.BoundedSemaphore(MAX_CONNECTIONS)


class _Handler(BaseHTTPRequestHandler):
    server_version = "vxgate-metadata"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection, as the VR's clients use
    timeout = REQUEST_TIMEOUT_S
    server: Listener

    def _send(self, status: int, body: str, head: bool = False) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return  # per-request logs would hold VM addresses at request rates; counters later

    def _vm(self) -> VmRecord | None:
        site = self.server.holder.site
        return site.vms.get(self.client_address[0]) if site is not None else None


class MetadataHandler(_Handler):
    def do_GET(self) -> None:
        self._send(*metadata_answer(self._vm(), self.path))

    def do_HEAD(self) -> None:
        self._send(*metadata_answer(self._vm(), self.path), head=True)


class PasswordHandler(_Handler):
    server_version = "CloudStack Password Server"  # what the VR's server calls itself

    def do_GET(self) -> None:
        answer = password_answer(self.server.passwords, self.server.holder.site,
                                 self.client_address[0], self.headers.get("DomU_Request"))
        self._send(200, answer)


# --- sockets in namespaces -------------------------------------------------------------


def listening_socket(netns: str | None, address: str, port: int) -> socket.socket:
    """A TCP socket listening on address:port inside network namespace `netns`."""
    sock = socket_in(netns)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
    except (OSError, OverflowError):
        sock.close()
        raise
    return sock


# --- the daemon ------------------------------------------------------------------------

ListenerKey = tuple[str | None, str, int]


class MetadataDaemon:
    def __init__(self, config_file: Path, state_dir: Path) -> None:
        self.config_file = config_file
        self.state_dir = state_dir
        self.passwords = Passwords(state_dir / "served.json")
        self.selector = selectors.DefaultSelector()
        self.listeners: dict[ListenerKey, Listener] = {}
        self.holders: dict[str, SiteHolder] = {}
        self.stopping = False
        self.reload_wanted = False
        self.status_file = state_dir / "status.json"

    def load(self) -> None:
        """Read the config and converge the sockets; never raises for one bad site."""
        try:
            config = parse_config(self.config_file.read_text())
        except (OSError, ConfigError) as exc:
            self._write_status("", {}, str(exc))
            return
        errors: dict[str, str] = {}
        wanted: dict[ListenerKey, tuple[Site, type[BaseHTTPRequestHandler]]] = {}
        for site in config.sites:
            for address in site.addresses:
                for port, handler in ((config.http_port, MetadataHandler),
                                      (config.password_port, PasswordHandler)):
                    key = (site.netns, address, port)
                    if key in wanted:
                        errors[site.network_id] = f"{address} already serves another network"
                    else:
                        wanted[key] = (site, handler)
        self.passwords.load(config.sites)
        self._converge(wanted, errors)
        self._write_status(config.digest, {s.network_id: errors.get(s.network_id, "")
                                           for s in config.sites}, "")

    def _converge(self, wanted: dict[ListenerKey, tuple[Site, type[BaseHTTPRequestHandler]]],
                  errors: dict[str, str]) -> None:
        for key in [key for key in self.listeners if key not in wanted]:
            self._close(key)
        for key, (site, handler) in wanted.items():
            current = self.listeners.get(key)
            if current is not None and current.RequestHandlerClass is handler:
                current.holder.site = site
                continue
            if current is not None:  # same address, other service: never in practice
                self._close(key)
            try:
                sock = listening_socket(*key)
            except (OSError, OverflowError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                errors[site.network_id] = f"cannot listen on {key[1]}:{key[2]} in " \
                                          f"{key[0] or 'own namespace'}: {reason}"
                continue
            listener = Listener(sock, handler, SiteHolder(site), self.passwords)
            self.listeners[key] = listener
            self.selector.register(sock, selectors.EVENT_READ, listener)

    def _close(self, key: ListenerKey) -> None:
        listener = self.listeners.pop(key)
        self.selector.unregister(listener.socket)
        listener.holder.site = None
        listener.socket.close()

    def _write_status(self, digest: str, sites: dict[str, str], error: str) -> None:
        status = {"digest": digest, "error": error, "sites": sites, "pid": os.getpid()}
        procs.atomic_write(self.status_file, json.dumps(status, sort_keys=True))

    def serve(self, pid_file: Path | None) -> None:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)  # a signal wakes select() at once
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "reload_wanted", True))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        self.selector.register(wake_read, selectors.EVENT_READ, None)
        self.load()
        if pid_file is not None:  # readiness: the sockets of the first load are open
            procs.atomic_write(pid_file, f"{os.getpid()}\n")
        try:
            self._loop(wake_read)
        finally:
            for listener in self.listeners.values():
                listener.socket.close()
            if pid_file is not None and procs.read_pid(pid_file) == os.getpid():
                pid_file.unlink()

    def _loop(self, wake_read: int) -> None:
        while not self.stopping:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data is None:
                    os.read(wake_read, 512)
                else:
                    self._accept(key.data)
            if self.reload_wanted:
                self.reload_wanted = False
                self.load()

    @staticmethod
    def _accept(listener: Listener) -> None:
        try:
            conn, client = listener.socket.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        if not _connections.acquire(blocking=False):
            conn.close()  # full: the guest retries (cloud-init and wget both do)
            return
        conn.setblocking(True)
        listener.process_request(conn, client)  # ThreadingMixIn: a thread per connection


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.metadata_server",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--pid-file", type=Path, required=True)
    args = parser.parse_args(argv)
    daemon = MetadataDaemon(args.config, args.state_dir)
    daemon.serve(args.pid_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
