"""`vxgate ca init` and `vxgate ca issue`: the CA of the service and its agents.

    vxgate ca init                                   # <state dir>/ca/ca.{key,crt}
    vxgate ca issue service --dns vxgate.example --ip 192.0.2.5
    vxgate ca issue sg1 --out /tmp/sg1-certs         # copy to the SoftGate sg1

One line per file on success; refusals are one line on stderr with exit 1, bad options
exit 2. Both commands are idempotent: a re-run with the same arguments changes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from provider_service import ca
from provider_service.config import DEFAULT_STATE_DIR

PROG = "vxgate ca"
CA_SUBDIR = "ca"
ISSUED_SUBDIR = "issued"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) \
        -> argparse.ArgumentParser:
    parser = subparsers.add_parser("ca", help="the small CA for TLS between agents and "
                                              "the service")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help=f"the service's state directory; the CA lives in <it>/{CA_SUBDIR} "
                             f"(default: $VXGATE_STATE_DIR or {DEFAULT_STATE_DIR})")
    actions = parser.add_subparsers(dest="ca_action", required=True)
    actions.add_parser("init", help="create the CA (once; a re-run keeps it)")
    issue = actions.add_parser(
        "issue", help="issue a key and certificate signed by the CA",
        description="A certificate usable as the service's server certificate and as a "
                    "device's client certificate. Without --dns/--ip its only SAN is the "
                    "name as a DNS name.")
    issue.add_argument("name", help="certificate name: the service's, or the device's")
    issue.add_argument("--dns", action="append", default=[], metavar="NAME",
                       help="a DNS subjectAltName (repeat for several)")
    issue.add_argument("--ip", action="append", default=[], metavar="ADDRESS",
                       help="an IP subjectAltName (repeat for several)")
    issue.add_argument("--out", type=Path, default=None,
                       help=f"where to write <name>.key and <name>.crt (default: "
                            f"<state dir>/{CA_SUBDIR}/{ISSUED_SUBDIR})")
    issue.add_argument("--force", action="store_true",
                       help="replace an existing key and certificate of that name")
    return parser


def run(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or Path(os.environ.get("VXGATE_STATE_DIR", DEFAULT_STATE_DIR))
    ca_dir = state_dir / CA_SUBDIR
    try:
        if args.ca_action == "init":
            outcome = ca.init_ca(ca_dir)
            print(f"{outcome.action} CA key {outcome.key}")
            print(f"{outcome.action} CA certificate {outcome.cert} (give this file to "
                  "agents and the CloudStack entry-point: VXGATE_CA_FILE)")
            return 0
        names = ca.SubjectNames.parse(args.name, args.dns, args.ip)
        out = args.out or ca_dir / ISSUED_SUBDIR
        outcome = ca.issue(ca_dir, args.name, names, out, force=args.force)
    except ca.CaError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # e.g. no permission on the state directory
        print(f"{PROG}: {error.filename or ''}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"{outcome.action} key {outcome.key}")
    print(f"{outcome.action} certificate {outcome.cert} ({names.show()})")
    return 0
