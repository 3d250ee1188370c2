"""New-connection rate through a routing-domain namespace: namespaces and C programs.

Topology (names `vxb<pid>-*`, deleted by name afterwards; no link to the root
namespace): client (198.51.100.1) -- router (pub0 198.51.100.0, guest br 10.1.1.1/24)
-- server (10.1.1.11). The router port-forwards 203.0.113.2:80 to 10.1.1.11:8080.

The client and server are small C programs compiled here with gcc: Python would measure
its own interpreter (a connect+close costs it ~30 us of CPU), not the router. The client
forks workers that each connect, and reset-close (SO_LINGER 0: no TIME_WAIT, so ports are
not exhausted), as fast as they can for a fixed time; every connect is a new conntrack
entry and a DNAT map lookup in the router. The server accepts and closes, in one
process. All three share this machine's CPUs with the router's softirq work, so the
figure is a whole-machine rate, compared between two map sizes under the same load.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CLIENT_C = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  if (argc != 5) { fprintf(stderr, "usage: ip port seconds workers\n"); return 2; }
  struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
  inet_pton(AF_INET, argv[1], &to.sin_addr);
  double seconds = atof(argv[3]); int workers = atoi(argv[4]); int fds[2]; pipe(fds);
  for (int w = 0; w < workers; w++) if (fork() == 0) {
    long ok = 0, failed = 0; double end = now() + seconds;
    struct linger reset = { 1, 0 };
    while (now() < end) {
      int s = socket(AF_INET, SOCK_STREAM, 0);
      setsockopt(s, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      if (connect(s, (struct sockaddr *)&to, sizeof to) == 0) ok++; else failed++;
      close(s);
    }
    long counts[2] = { ok, failed }; write(fds[1], counts, sizeof counts); _exit(0);
  }
  long ok = 0, failed = 0, counts[2];
  for (int w = 0; w < workers; w++) { read(fds[0], counts, sizeof counts);
    ok += counts[0]; failed += counts[1]; }
  while (wait(NULL) > 0) {}
  printf("%ld %ld\n", ok, failed); return 0;
}
"""

SERVER_C = r"""
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in at = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
  if (bind(s, (struct sockaddr *)&at, sizeof at) || listen(s, 4096)) { perror("listen");
    return 1; }
  printf("ready\n"); fflush(stdout);
  for (;;) { int c = accept(s, NULL, NULL); if (c >= 0) close(c); }
}
"""


def run(*args: str) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")


def compile_programs(workdir: Path) -> tuple[Path, Path] | None:
    """The client and server binaries, or None when there is no C compiler."""
    if shutil.which("gcc") is None:
        return None
    paths = []
    for name, source in (("client", CLIENT_C), ("server", SERVER_C)):
        (workdir / f"{name}.c").write_text(source)
        run("gcc", "-O2", "-o", str(workdir / name), str(workdir / f"{name}.c"))
        paths.append(workdir / name)
    return paths[0], paths[1]


@dataclass
class ConnLab:
    prefix: str
    client: Path
    server: Path
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def router(self) -> str:
        return f"{self.prefix}-rt"

    def add_ns(self, short: str, forward: bool) -> str:
        name = f"{self.prefix}-{short}"
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "netns", "exec", name, "sysctl", "-qw",
            f"net.ipv4.ip_forward={int(forward)}", "net.bridge.bridge-nf-call-iptables=0")
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def build(self) -> None:
        client, router, server = (self.add_ns("cl", False), self.add_ns("rt", True),
                                  self.add_ns("sv", False))
        run("ip", "link", "add", "up0", "netns", client, "type", "veth", "peer", "name",
            "pub0", "netns", router)
        run("ip", "link", "add", "eth0", "netns", server, "type", "veth", "peer", "name",
            "sv-p", "netns", router)
        run("ip", "-n", router, "link", "add", "br1", "type", "bridge")
        for ns, *cmd in (
            (client, "addr", "add", "198.51.100.1/31", "dev", "up0"),
            (client, "link", "set", "up0", "up"),
            (client, "route", "add", "203.0.113.0/24", "via", "198.51.100.0"),
            (router, "addr", "add", "198.51.100.0/31", "dev", "pub0"),
            (router, "addr", "add", "10.1.1.1/24", "dev", "br1"),
            (router, "link", "set", "sv-p", "master", "br1"),
            (router, "link", "set", "pub0", "up"), (router, "link", "set", "br1", "up"),
            (router, "link", "set", "sv-p", "up"),
            (server, "addr", "add", "10.1.1.11/24", "dev", "eth0"),
            (server, "link", "set", "eth0", "up"),
            (server, "route", "add", "default", "via", "10.1.1.1"),
        ):
            run("ip", "-n", ns, *cmd)
        process = subprocess.Popen(["ip", "netns", "exec", server, str(self.server), "8080"],
                                   stdout=subprocess.PIPE, text=True)
        self.processes.append(process)
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"

    def rate(self, seconds: float, workers: int) -> tuple[float, int]:
        """(new connections per second, failed connects) for one run."""
        run("ip", "netns", "exec", self.router, "conntrack", "-F")
        done = subprocess.run(["ip", "netns", "exec", f"{self.prefix}-cl", str(self.client),
                               "203.0.113.2", "80", str(seconds), str(workers)],
                              capture_output=True, text=True, timeout=seconds + 30, check=True)
        ok, failed = (int(x) for x in done.stdout.split())
        return ok / seconds, failed

    def cleanup(self) -> None:
        for process in self.processes:  # only the PIDs we started
            process.kill()
            process.wait(timeout=5)
            if process.stdout is not None:
                process.stdout.close()
        for name in reversed(self.namespaces):  # only the namespaces we created
            subprocess.run(["ip", "netns", "del", name], check=False)


@contextmanager
def conn_lab(prefix: str) -> Iterator[ConnLab | None]:
    with tempfile.TemporaryDirectory(prefix="vxgate-bench-") as workdir:
        programs = compile_programs(Path(workdir))
        if programs is None:
            yield None
            return
        lab = ConnLab(prefix, *programs)
        try:
            lab.build()
            yield lab
        finally:
            lab.cleanup()
