"""`vxgate cloudstack audit`: compare CloudStack's view with the service's, print the drift.

CloudStack is asked through the `cs` client (credentials as `vxgate cloudstack register`
takes them: --endpoint/--api-key/--secret-key or $CLOUDSTACK_ENDPOINT/_KEY/_SECRET); the
service through its read API (URL and admin token as `vxgate status` takes them).
`--repair` then changes the service only, never CloudStack; `--every SECONDS` audits
again and again, one line per pass, until stopped.

Exit status: 0 no drift; 1 drift found (or left after --repair); 2 CloudStack or the
service could not be asked (unreachable, credentials refused, bad option). Errors are one
line on stderr; secrets and tokens are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

from provider_service import admin_client, audit, registration_cli, status_cli
from provider_service import cloudstack_registration as reg
from provider_service.status_report import shorten

PROG = "vxgate: cloudstack audit"
EXIT_OK, EXIT_DRIFT, EXIT_UNAVAILABLE = 0, 1, 2
TIMEOUT_S = 30.0
DETAIL_CHARS = 60  # the table's DETAIL and REPAIR cells; --json has them whole
# A request to the service: (method, path, body) → its JSON answer (None for 204).
Request = Callable[[str, str, Any], Any]
CloudStackFactory = Callable[[str, str, str, tuple[str, ...]], reg.Api]


class AuditError(Exception):
    """CloudStack or the service cannot be asked, or refused: exit 2 with this line."""


def add_parser(actions: argparse._SubParsersAction[argparse.ArgumentParser]) \
        -> argparse.ArgumentParser:
    """Add `audit` to `vxgate cloudstack`'s actions."""
    parser = actions.add_parser(
        "audit", help="compare CloudStack's networks, VPCs, public IPs and rules with the "
                      "service's; --repair fixes what it can",
        description="List networks, VPCs, public IPs, port forwards, firewall rules, "
                    "load balancers and network ACL items in CloudStack and in the service "
                    "and report what only one side has or what differs. Exit status 0: no "
                    "drift; 1: drift (or drift left after --repair); 2: CloudStack or the "
                    "service could not be asked.")
    api = parser.add_argument_group("CloudStack API")
    api.add_argument("--endpoint", help="API URL (default: $CLOUDSTACK_ENDPOINT)")
    api.add_argument("--api-key", help="admin API key (default: $CLOUDSTACK_KEY)")
    api.add_argument("--secret-key", help="admin secret key (default: $CLOUDSTACK_SECRET)")
    service = parser.add_argument_group("vxgate service")
    service.add_argument("--service-url", help="the provider service (default: "
                                               "$VXGATE_SERVICE_URL or "
                                               f"{status_cli.DEFAULT_SERVICE_URL})")
    service.add_argument("--token-file", type=Path,
                         help="file holding the admin token (default: $VXGATE_ADMIN_TOKEN, "
                              "$VXGATE_ADMIN_TOKEN_FILE or <state dir>/admin-token)")
    parser.add_argument("--name", default="vxgate",
                        help="the extension's name, as registered (default: %(default)s)")
    parser.add_argument("--repair", action="store_true",
                        help="fix the service's side where possible, then audit again")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--every", type=float, metavar="SECONDS",
                        help="audit again every SECONDS until stopped; one line per pass")
    parser.add_argument("--passes", type=int, metavar="N",
                        help="with --every: stop after N passes")
    return parser


def run(args: argparse.Namespace, *, environ: Mapping[str, str] | None = None,
        cloudstack_factory: CloudStackFactory | None = None,
        request: Request | None = None, stop: threading.Event | None = None) -> int:
    """Run `vxgate cloudstack audit`; the exit code."""
    env = os.environ if environ is None else environ
    secrets: tuple[str, ...] = ()
    try:
        endpoint, key, secret = registration_cli._credentials(args, env)
        secrets = (secret, key)
        if request is None:
            token = status_cli._token(args, env)
            secrets = (*secrets, token)
            url = status_cli._service_url(args, env)
            request = http_request(url, token, admin_client.tls_context(env)
                                   if url.startswith("https:") else None)
        factory = cloudstack_factory or _real_cloudstack
        cloudstack = factory(endpoint, key, secret, secrets)
        _check_options(args)
    except (registration_cli.UsageError, status_cli.StatusError, AuditError,
            admin_client.AdminCallError) as error:
        return _fail(str(error), secrets)
    auditor = Auditor(cloudstack, request, args.name, secrets)
    if args.every is None:
        return auditor.once(args.repair, args.json)
    return auditor.periodically(args.every, args.passes, args.repair, stop)


def _check_options(args: argparse.Namespace) -> None:
    if args.every is not None and args.every <= 0:
        raise AuditError("--every must be a positive number of seconds")
    if args.passes is not None and (args.every is None or args.passes < 1):
        raise AuditError("--passes needs --every and a count of at least 1")
    if args.every is not None and args.json:
        raise AuditError("--every prints one line per pass; it does not take --json")


class Auditor:
    """One audit after another against the same CloudStack and service."""

    def __init__(self, cloudstack: reg.Api, request: Request, name: str,
                 secrets: tuple[str, ...]) -> None:
        self.cloudstack, self.request, self.name, self.secrets = \
            cloudstack, request, name, secrets

    def drift(self) -> tuple[list[audit.Drift], audit.ServiceView]:
        theirs = fetch_cloudstack(self.cloudstack)
        ours = fetch_service(self.request)
        return audit.compare(theirs, ours, self.name), ours

    def repair(self, drifts: list[audit.Drift]) -> list[str]:
        """Run the repair calls; a line for each one the service refused."""
        failures = []
        for call in audit.repair_plan(drifts):
            try:
                self.request(call.method, call.path, call.body)
            except AuditError as error:
                if "cannot reach" in str(error):
                    raise
                failures.append(f"{call.method} {call.path}: {error}")
        return failures

    def once(self, repair: bool, as_json: bool) -> int:
        try:
            drifts, ours = self.drift()
            before, failures = drifts, []
            if repair and any(d.repairable for d in drifts):
                failures = self.repair(drifts)
                drifts, ours = self.drift()
        except (AuditError, reg.CloudStackError) as error:
            return _fail(str(error), self.secrets)
        except Exception as error:  # an operator gets a line, not a traceback
            return _fail(f"unexpected {type(error).__name__}: {error}", self.secrets)
        if as_json:
            text = json.dumps(report_json(before, drifts, failures, repair), indent=2) + "\n"
        else:
            text = render(before, drifts, failures, repair, ours)
        sys.stdout.write(reg.redact(text, self.secrets))
        return EXIT_DRIFT if drifts else EXIT_OK

    def periodically(self, every: float, passes: int | None, repair: bool,
                     stop: threading.Event | None) -> int:
        stop = stop or _stop_on_signals()
        status, number = EXIT_OK, 0
        while not stop.is_set() and (passes is None or number < passes):
            number += 1
            status, line = self._pass(repair)
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            print(reg.redact(f"{stamp} pass {number}: {line}", self.secrets), flush=True)
            if passes is None or number < passes:
                stop.wait(every)
        return status

    def _pass(self, repair: bool) -> tuple[int, str]:
        try:
            drifts, _ours = self.drift()
            found, repaired, failures = len(drifts), 0, []
            if repair and any(d.repairable for d in drifts):
                failures = self.repair(drifts)
                after, _ours = self.drift()
                repaired, drifts = found - len(after), after
        except (AuditError, reg.CloudStackError) as error:
            return EXIT_UNAVAILABLE, " ".join(str(error).split())
        except Exception as error:  # the loop goes on; the line says what broke
            return EXIT_UNAVAILABLE, f"unexpected {type(error).__name__}: {error}"
        line = summary(drifts) if not repair else \
            f"{_count(found, 'drift item')} found, {repaired} repaired; " + summary(drifts)
        if failures:
            line += f"; {_count(len(failures), 'repair')} refused"
        return (EXIT_DRIFT if drifts else EXIT_OK), line


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


# --- fetching both sides ----------------------------------------------------------------


def fetch_cloudstack(api: reg.Api) -> audit.CloudStackView:
    every: dict[str, object] = {"listall": True}
    return audit.CloudStackView(
        zones=api.list_all("listZones", {}),
        network_offerings=api.list_all("listNetworkOfferings", {}),
        vpc_offerings=api.list_all("listVPCOfferings", {}),
        networks=api.list_all("listNetworks", every),
        vpcs=api.list_all("listVPCs", every),
        public_ips=api.list_all("listPublicIpAddresses", {**every, "allocatedonly": True}),
        port_forwards=api.list_all("listPortForwardingRules", every),
        firewall_rules=api.list_all("listFirewallRules", every)
        + api.list_all("listEgressFirewallRules", every),
        load_balancers=_load_balancers(api, every),
        acl_items=api.list_all("listNetworkACLs", every))


def _load_balancers(api: reg.Api, every: dict[str, object]) -> list[audit.Json]:
    """listLoadBalancerRules, each with its members' addresses on its network: the
    service knows members by address, listLoadBalancerRuleInstances names VMs."""
    nics = {(vm["id"], nic.get("networkid")): nic.get("ipaddress", "")
            for vm in api.list_all("listVirtualMachines", every)
            for nic in vm.get("nic", [])}
    rules = api.list_all("listLoadBalancerRules", every)
    return [{**rule, "memberips": sorted(
        nics.get((vm["id"], rule.get("networkid")), "") for vm in
        api.list_all("listLoadBalancerRuleInstances", {**every, "id": rule["id"]}))}
        for rule in rules]


def fetch_service(request: Request) -> audit.ServiceView:
    zones = request("GET", "/v1/zones", None)
    networks = request("GET", "/v1/networks", None)
    public_ips = [ip for zone in zones
                  for ip in request("GET", f"/v1/zones/{_q(zone['id'])}/public-ips", None)]
    forwards = [{**forward, "zone_id": ip["zone_id"]} for ip in public_ips
                for forward in request("GET", f"/v1/zones/{_q(ip['zone_id'])}/public-ips/"
                                              f"{_q(ip['address'])}/port-forwards", None)]
    firewalls = {n["id"]: request("GET", f"/v1/networks/{_q(n['id'])}/firewall", None)
                 for n in networks}
    lbs = {n["id"]: request("GET", f"/v1/networks/{_q(n['id'])}/load-balancers", None)
           for n in networks}
    acls = {n["id"]: request("GET", f"/v1/networks/{_q(n['id'])}/acl", None)
            for n in networks if n.get("vpc_id")}
    return audit.ServiceView(zones=zones, networks=networks,
                             vpcs=request("GET", "/v1/vpcs", None), public_ips=public_ips,
                             port_forwards=forwards, firewalls=firewalls,
                             load_balancers=lbs, acls=acls)


def http_request(base_url: str, token: str, tls: ssl.SSLContext | None = None) -> Request:
    """Calls to the service; over https verified by `tls` (VXGATE_CA_FILE, client cert)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def request(method: str, path: str, body: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        sent = {**headers, "Content-Type": "application/json"} if data else headers
        call = urllib.request.Request(base_url + path, data=data, headers=sent, method=method)
        try:
            with urllib.request.urlopen(call, timeout=TIMEOUT_S, context=tls) as answer:
                text = answer.read()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as error:
            raise AuditError(f"{path.split('?')[0]}: the service answered {error.code}: "
                             f"{status_cli._error_text(error)}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise AuditError(f"cannot reach the service at {base_url}: {reason}") from None
        except ValueError:
            raise AuditError(f"{path}: the answer is not JSON; is {base_url} the vxgate "
                             "service?") from None

    return request


def _real_cloudstack(endpoint: str, key: str, secret: str,
                     secrets: tuple[str, ...]) -> reg.Api:
    return reg.CloudStackApi(endpoint, key, secret, secrets=secrets)


# --- output -------------------------------------------------------------------------


def summary(drifts: list[audit.Drift]) -> str:
    if not drifts:
        return "no drift"
    where = {w: sum(1 for d in drifts if d.where == w)
             for w in (audit.CLOUDSTACK_ONLY, audit.SERVICE_ONLY, audit.DIFFERENT)}
    repairable = sum(1 for d in drifts if d.repairable)
    return (f"{_count(len(drifts), 'drift item')}: {where[audit.CLOUDSTACK_ONLY]} only in "
            f"CloudStack, {where[audit.SERVICE_ONLY]} only in the service, "
            f"{where[audit.DIFFERENT]} different; {repairable} repairable")


def render(before: list[audit.Drift], after: list[audit.Drift], failures: list[str],
           repaired: bool, ours: audit.ServiceView) -> str:
    """The drift as a table (what was found; after --repair, what is left)."""
    lines: list[str] = []
    if repaired and before:
        lines.append(f"Found {summary(before)}.")
        fixed = len(before) - len(after)
        lines.append(f"Repaired {fixed} of them through the service's API.")
        lines += [f"  refused: {shorten(f, 100)}" for f in failures]
        lines.append("")
        if after:
            lines.append("Left after repair:")
    if after:
        rows = [[d.kind, d.key, d.where, shorten(d.detail, DETAIL_CHARS) or "-",
                 d.repair] for d in after]  # last column: whole, it says what to run
        lines += _columns(["KIND", "KEY", "WHERE", "DETAIL", "REPAIR"], rows)
        lines.append("")
    rules = sum(len(f["rules"]) for f in ours.firewalls.values())
    lbs = sum(len(f["rules"]) for f in ours.load_balancers.values())
    acl_items = sum(len(f["rules"]) for f in ours.acls.values())
    if after:
        lines.append(summary(after))
    else:
        lines.append(f"no drift: CloudStack and the service agree on "
                     f"{_count(len(ours.networks), 'network')}, "
                     f"{_count(len(ours.vpcs), 'VPC')}, "
                     f"{_count(len(ours.public_ips), 'public IP')}, "
                     f"{_count(len(ours.port_forwards), 'port forward')}, "
                     f"{_count(rules, 'firewall rule')}, {_count(lbs, 'LB rule')} and "
                     f"{_count(acl_items, 'ACL item')}")
    return "\n".join(lines) + "\n"


def report_json(before: list[audit.Drift], after: list[audit.Drift], failures: list[str],
                repaired: bool) -> dict[str, Any]:
    def item(d: audit.Drift) -> dict[str, Any]:
        return {"kind": d.kind, "key": d.key, "where": d.where, "detail": d.detail,
                "repair": d.repair, "repairable": d.repairable}

    answer: dict[str, Any] = {"exit_status": EXIT_DRIFT if after else EXIT_OK,
                              "summary": summary(after), "drift": [item(d) for d in after]}
    if repaired:
        answer.update(found=[item(d) for d in before], refused=failures)
    return answer


def _columns(header: list[str], rows: list[list[str]]) -> list[str]:
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in table]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _q(text: object) -> str:
    return quote(str(text), safe="")


def _fail(message: str, secrets: tuple[str, ...]) -> int:
    one_line = " ".join(reg.redact(message, secrets).split())
    print(f"{PROG}: {one_line}", file=sys.stderr, flush=True)
    return EXIT_UNAVAILABLE
