"""Throw-away namespaces for the SoftGate netfilter tests: build, probe, clean up.

Everything is named `vxt<pid>-...` and recorded as it is created; cleanup deletes only
what was recorded and kills only PIDs this module started. No veth has an end in the
root namespace, so no test packet can leave the machine. Addresses: RFC 5737 for the
"internet" (198.51.100.0/31 link, 192.0.2.0/24 client addresses, 203.0.113.0/24 public
IPs), 10.1.x.0/24 for guests; IPv6 (off unless a namespace asks for it) only from the
RFC 3849 documentation prefix 2001:db8::/32, and fe80:: on links.

Probing is done by one long-lived Python process per client namespace (PROBER), fed
JSON lines on stdin: a probe costs a round trip, not an interpreter start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

PYTHON = "/usr/bin/python3"  # the system interpreter exists in every namespace

# Answers every TCP connection with "<name> <peer ip>\n", then echoes lines prefixed
# with the name until EOF; answers every UDP datagram with "<name> <peer ip>". Listens
# on IPv4, and also on IPv6 (separate, v6-only sockets) when the 4th argument is "6".
SERVER = r"""
import socket, sys, threading
name, tcp_ports, udp_ports = sys.argv[1], sys.argv[2], sys.argv[3]
families = [(socket.AF_INET, "0.0.0.0")]
if sys.argv[4:] == ["6"]:
    families.append((socket.AF_INET6, "::"))
def bound(family, address, kind, port):
    s = socket.socket(family, kind); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((address, port)); return s
def serve_tcp(sock):
    while True:
        conn, peer = sock.accept()
        threading.Thread(target=talk, args=(conn, peer), daemon=True).start()
def talk(conn, peer):
    with conn:
        conn.sendall(f"{name} {peer[0]}\n".encode())
        for line in conn.makefile():
            conn.sendall(f"{name} {line}".encode())
def serve_udp(sock):
    while True:
        data, peer = sock.recvfrom(2048)
        sock.sendto(f"{name} {peer[0]}".encode(), peer)
for family, address in families:
    for port in filter(None, tcp_ports.split(",")):
        s = bound(family, address, socket.SOCK_STREAM, int(port)); s.listen(64)
        threading.Thread(target=serve_tcp, args=(s,), daemon=True).start()
    for port in filter(None, udp_ports.split(",")):
        s = bound(family, address, socket.SOCK_DGRAM, int(port))
        threading.Thread(target=serve_udp, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

# Reads {"op": ...} lines, writes one JSON answer per line. Open TCP connections are
# kept by id so a test can hold one across ruleset changes. A host with ":" is IPv6.
PROBER = r"""
import json, socket, sys
held = {}
def family(q):
    return socket.AF_INET6 if ":" in q["host"] else socket.AF_INET
def tcp(q):
    s = socket.socket(family(q)); s.settimeout(q["timeout"])
    if q.get("src"): s.bind((q["src"], 0))
    s.connect((q["host"], q["port"]))
    f = s.makefile()
    line = f.readline().strip()
    if q.get("hold"): held[q["hold"]] = (s, f)
    else: s.close()
    return line
def udp(q):
    s = socket.socket(family(q), socket.SOCK_DGRAM); s.settimeout(q["timeout"])
    if q.get("src") or q.get("sport"): s.bind((q.get("src") or "", q.get("sport") or 0))
    s.sendto(b"probe", (q["host"], q["port"]))
    data = s.recv(2048).decode(); s.close(); return data
def send(q):
    s, f = held[q["hold"]]; s.settimeout(q["timeout"])
    s.sendall((q["text"] + "\n").encode()); return f.readline().strip()
for raw in sys.stdin:
    q = json.loads(raw)
    try:
        answer = {"ok": True, "reply": {"tcp": tcp, "udp": udp, "send": send}[q["op"]](q)}
    except Exception as exc:
        answer = {"ok": False, "reply": type(exc).__name__}
    print(json.dumps(answer), flush=True)
"""


def require_root() -> None:
    reason = ""
    if os.geteuid() != 0:
        reason = "needs root to create network namespaces and load nftables"
    else:
        missing = [t for t in ("ip", "nft", "conntrack", "ping", PYTHON) if not shutil.which(t)]
        if missing:
            reason = f"missing tools: {', '.join(missing)}"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SoftGate netfilter tests: {reason}")
        pytest.skip(reason)


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll `condition` until it holds or the deadline passes (then fail)."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


@dataclass
class Prober:
    process: subprocess.Popen[str]

    def ask(self, **query: Any) -> tuple[bool, str]:
        query.setdefault("timeout", 0.5)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(query) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        return bool(answer["ok"]), str(answer["reply"])

    def tcp(self, host: str, port: int, src: str = "", hold: str = "") -> str | None:
        ok, reply = self.ask(op="tcp", host=host, port=port, src=src, hold=hold)
        return reply if ok else None

    def udp(self, host: str, port: int, src: str = "", sport: int = 0) -> str | None:
        """One datagram and its answer; a fixed `sport` makes every call one flow."""
        ok, reply = self.ask(op="udp", host=host, port=port, src=src, sport=sport)
        return reply if ok else None

    def send(self, hold: str, text: str) -> str | None:
        ok, reply = self.ask(op="send", hold=hold, text=text)
        return reply if ok else None


@dataclass
class Lab:
    prefix: str
    namespaces: list[str] = field(default_factory=list)
    pids: list[subprocess.Popen[str]] = field(default_factory=list)

    def ns(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def add_ns(self, short: str, *, router: bool = False, ipv6: bool = False) -> str:
        name = self.ns(short)
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        # A new namespace starts from kernel defaults: forwarding off, and bridged
        # frames sent through the IP hooks (br_netfilter is built in). Guest traffic
        # within a bridge must not meet the router's forward chain.
        sysctls = ["net.ipv4.ip_forward=1" if router else "net.ipv4.ip_forward=0",
                   "net.bridge.bridge-nf-call-iptables=0",
                   "net.bridge.bridge-nf-call-ip6tables=0"]
        if ipv6:
            # No duplicate address detection: an address is usable at once instead of
            # "tentative" for a second, and these links hold no duplicates.
            sysctls += [f"net.ipv6.conf.all.forwarding={int(router)}",
                        "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]
        else:
            sysctls += ["net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"]
        run("ip", "netns", "exec", name, "sysctl", "-qw", *sysctls)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def veth(self, ns_a: str, dev_a: str, ns_b: str, dev_b: str) -> None:
        run("ip", "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name", dev_b,
            "netns", ns_b)
        run("ip", "-n", ns_a, "link", "set", dev_a, "up")
        run("ip", "-n", ns_b, "link", "set", dev_b, "up")

    def ip(self, ns: str, *args: str) -> None:
        run("ip", "-n", ns, *args)

    def start(self, ns: str, script: str, *args: str, wait_ready: bool = False
              ) -> subprocess.Popen[str]:
        process = subprocess.Popen(["ip", "netns", "exec", ns, PYTHON, "-c", script, *args],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        self.pids.append(process)
        if wait_ready:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        return process

    def server(self, ns: str, name: str, tcp: list[int], udp: list[int], *,
               ipv6: bool = False) -> subprocess.Popen[str]:
        return self.start(ns, SERVER, name, ",".join(map(str, tcp)), ",".join(map(str, udp)),
                          "6" if ipv6 else "4", wait_ready=True)

    def stop(self, process: subprocess.Popen[str]) -> None:
        """Ends a process this lab started (by its PID), and waits for it: its sockets
        are closed when this returns."""
        assert process in self.pids, "only processes this lab started"
        process.kill()
        process.wait(timeout=5)

    def prober(self, ns: str) -> Prober:
        return Prober(self.start(ns, PROBER))

    def ping(self, ns: str, host: str) -> bool:
        """One echo request (IPv4 or IPv6, by the address), one second to answer."""
        return run("ip", "netns", "exec", ns, "ping", "-c1", "-W1", "-q", host,
                   check=False).returncode == 0

    def flush_conntrack(self, ns: str) -> None:
        run("ip", "netns", "exec", ns, "conntrack", "-F", check=False)

    def cleanup(self) -> None:
        for process in self.pids:  # only what we started, by PID
            if process.poll() is None:
                process.kill()
            process.wait(timeout=5)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
        for name in reversed(self.namespaces):  # only what we created, by name
            run("ip", "netns", "del", name, check=False)
        self.namespaces.clear()
