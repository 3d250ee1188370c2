"""`vxgate-agent`: the daemon on a SoftGate, hypervisor or Linux leaf.

    vxgate-agent --service http://192.0.2.5:8640 --device sg1 --token-file /etc/vxgate/token

It fetches the device's artifacts from the service and applies them: frr.conf on every
role, softgate.json (links, nftables, dnsmasq, metadata) on SoftGates, leaf.json (the
direct connects' bridges and VXLAN devices) on VTEP leaves. Stopping it leaves
the data plane as it is: dnsmasq, the metadata server, nftables, links and FRR keep
running, and the next start converges from what it finds.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import vxgate_log
from agent.daemon import AgentLoop, ArtifactApplier, FrrArtifact
from agent.frr import FrrReload
from agent.service_client import Fetched, Service, ServiceClient, TlsFiles
from agent.status import ObjectStatus

log = logging.getLogger("vxgate-agent")
DEFAULT_STATE_DIR = Path("/var/lib/vxgate-agent")


class _Stop(Exception):
    """Raised by SIGTERM/SIGINT while the loop waits in a long-poll (nothing half-done)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vxgate-agent", description=__doc__.split("\n")[0])
    parser.add_argument("--service", required=True, help="the service's URL")
    parser.add_argument("--device", required=True, help="this device's name in the service")
    parser.add_argument("--token-file", required=True, type=Path,
                        help="file holding the device's agent token")
    parser.add_argument("--ca-file", type=Path, default=None,
                        help="https: the CA that signed the service's certificate "
                             "(vxgate ca init's ca.crt; default: the system's CAs)")
    parser.add_argument("--cert-file", type=Path, default=None,
                        help="https: this device's certificate (vxgate ca issue <device>), "
                             "for a service that requires client certificates")
    parser.add_argument("--key-file", type=Path, default=None,
                        help="the key of --cert-file (default: in --cert-file)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="frr.conf, dnsmasq and metadata files")
    parser.add_argument("--softgate", action="store_true",
                        help="also apply softgate.json (links, nftables, DHCP, metadata)")
    parser.add_argument("--vtep-leaf", action="store_true",
                        help="also apply leaf.json (a VTEP leaf's direct-connect VNIs)")
    parser.add_argument("--frr-vty-dir", type=Path, default=None,
                        help="FRR with sockets and pid files in one directory (simulator)")
    parser.add_argument("--pid-file", type=Path, default=None,
                        help="write the agent's PID here (removed on a clean stop)")
    parser.add_argument("--long-poll", type=int, default=25, help="seconds per long-poll")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", choices=vxgate_log.FORMATS, default=None,
                        help="json (one object per line, the default) or text; default: "
                             "$VXGATE_LOG_FORMAT, else json")
    return parser.parse_args(argv)


def build_loop(args: argparse.Namespace, service: _Interruptible) -> AgentLoop:
    frr = FrrReload(args.state_dir / "frr", args.frr_vty_dir)
    appliers: dict[str, ArtifactApplier] = {"frr.conf": FrrArtifact(frr)}
    loop = AgentLoop(service, appliers, long_poll_s=args.long_poll, sleep=service.sleep)
    if args.softgate:
        from agent.softgate import SOFTGATE_JSON, SoftGateArtifact

        softgate = SoftGateArtifact.real(args.state_dir, frr)
        appliers[SOFTGATE_JSON] = softgate
        softgate.start_health_loop(loop.enqueue)
    if args.vtep_leaf:
        from agent.ipr import Ipr
        from agent.leaf_ports import LEAF_JSON, LeafPortsArtifact

        appliers[LEAF_JSON] = LeafPortsArtifact(Ipr())
    return loop


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        vxgate_log.configure(args.log_format or vxgate_log.format_from_env(), args.log_level)
    except ValueError as exc:  # a bad format or level
        print(f"vxgate-agent: {exc}", file=sys.stderr)
        return 2
    vxgate_log.set_process_fields(device=args.device)  # on every line, from every thread
    try:
        token = args.token_file.read_text(encoding="ascii").strip()
        tls = TlsFiles(args.ca_file, args.cert_file, args.key_file)
        client = ServiceClient(args.service, args.device, token, tls=tls)
    except (OSError, ValueError) as exc:
        print(f"vxgate-agent: {exc}", file=sys.stderr)
        return 2
    args.state_dir.mkdir(parents=True, exist_ok=True)
    if args.pid_file is not None:
        args.pid_file.write_text(f"{os.getpid()}\n")
    service = _Interruptible(client)
    loop = build_loop(args, service)
    signal.signal(signal.SIGTERM, service.on_signal)
    signal.signal(signal.SIGINT, service.on_signal)
    log.info("agent for %s started; service %s", args.device, args.service)
    try:
        loop.run(lambda: service.stop_requested)
    except _Stop:
        pass
    finally:
        client.close()
        if args.pid_file is not None:
            args.pid_file.unlink(missing_ok=True)
    log.info("agent stopped; the data plane is left as it is")
    return 0


class _Interruptible:
    """The service, with SIGTERM/SIGINT ending a long-poll at once. During an apply the
    stop waits for it to finish: an apply cut in half would be repaired by the next
    start, but need not be."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.stop_requested = False
        self._waiting = False

    def fetch(self, since: int, wait: int) -> Fetched:
        self._waiting = True
        try:
            return self.service.fetch(since, wait)
        finally:
            self._waiting = False

    def report(self, generation: int, reports: list[ObjectStatus]) -> None:
        self.service.report(generation, reports)

    def sleep(self, seconds: float) -> None:
        """The backoff while the service is unreachable: a stop ends it at once too."""
        self._waiting = True
        try:
            time.sleep(seconds)
        finally:
            self._waiting = False

    def on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.stop_requested = True
        if self._waiting:
            raise _Stop


if __name__ == "__main__":
    sys.exit(main())
