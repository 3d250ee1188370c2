"""`vxgate status`: ask the running service what each device applied, print a table.

The service's URL comes from --service-url or $VXGATE_SERVICE_URL (default the service's
own default bind, http://127.0.0.1:8640); the admin token from --token-file, or as the
service itself reads it: $VXGATE_ADMIN_TOKEN, $VXGATE_ADMIN_TOKEN_FILE, or
<$VXGATE_STATE_DIR>/admin-token. Exit status: 0 everything applied (or pending for less
than the grace period), 1 an object in error or pending longer, 2 the service could not
be asked (unreachable, token refused, bad option). Errors are one line on stderr; the
token is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from provider_service.admin_client import AdminCallError, tls_context
from provider_service.cloudstack_registration import redact
from provider_service.config import Settings, SettingsError
from provider_service.status_report import (
    DEFAULT_PENDING_GRACE_S,
    build_report,
    render_table,
    report_json,
)

PROG = "vxgate status"
EXIT_UNAVAILABLE = 2
DEFAULT_SERVICE_URL = "http://127.0.0.1:8640"
TIMEOUT_S = 15.0
Fetch = Callable[[str], Any]  # a /v1 path → its JSON answer; raises StatusError


class StatusError(Exception):
    """The service cannot be asked, or refused: exit 2 with this line."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) \
        -> argparse.ArgumentParser:
    status = subparsers.add_parser(
        "status", help="networks, their VNI/VLAN, the devices that carry them and how "
                       "applying went",
        description="Networks → VNI/VLAN → devices → apply status, with errors and their "
                    "reasons, then one line per device. Exit status 0: all applied; 1: an "
                    "object in error, or pending longer than --pending-grace; 2: the "
                    "service could not be asked.")
    status.add_argument("--service-url", help="the provider service (default: "
                                              f"$VXGATE_SERVICE_URL or {DEFAULT_SERVICE_URL})")
    status.add_argument("--token-file", type=Path,
                        help="file holding the admin token (default: $VXGATE_ADMIN_TOKEN, "
                             "$VXGATE_ADMIN_TOKEN_FILE or <state dir>/admin-token)")
    status.add_argument("--network", metavar="ID", help="only this network")
    status.add_argument("--errors", action="store_true",
                        help="only what is in error or pending")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--pending-grace", type=float, default=DEFAULT_PENDING_GRACE_S,
                        metavar="SECONDS",
                        help="how long a config generation may stay unapplied before it "
                             "counts as a problem (default: %(default)g)")
    return status


def run(args: argparse.Namespace, *, environ: Mapping[str, str] | None = None,
        fetch: Fetch | None = None) -> int:
    """Run `vxgate status`; the exit code."""
    env = os.environ if environ is None else environ
    token = ""
    try:
        if args.pending_grace < 0:
            raise StatusError("--pending-grace must not be negative")
        if fetch is None:
            token = _token(args, env)
            fetch = _http_fetch(_service_url(args, env), token, env)
        report = build_report(*_gather(fetch, args.network), pending_grace_s=args.pending_grace)
    except StatusError as error:
        return _fail(str(error), token)
    except Exception as error:  # an operator gets a line, not a traceback
        return _fail(f"unexpected {type(error).__name__}: {error}", token)
    if args.json:
        text = json.dumps(report_json(report, problems_only=args.errors), indent=2) + "\n"
    else:
        text = render_table(report, problems_only=args.errors)
    sys.stdout.write(redact(text, (token,)))
    return report.exit_status


def _gather(fetch: Fetch, network_id: str | None
            ) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """Networks, placement, and the status of every device the placement names."""
    if network_id is not None:
        networks = [fetch(f"/v1/networks/{quote(network_id, safe='')}")]
        placement = fetch(f"/v1/placement?network_id={quote(network_id, safe='')}")
    else:
        networks = fetch("/v1/networks")
        placement = fetch("/v1/placement")
    statuses = {device["name"]: fetch(f"/v1/devices/{quote(device['name'], safe='')}/status")
                for device in placement["devices"]}
    return networks, placement, statuses


def _service_url(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    url = args.service_url or env.get("VXGATE_SERVICE_URL") or DEFAULT_SERVICE_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StatusError("--service-url must look like http(s)://host[:port]")
    return url.rstrip("/")


def _token(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    if args.token_file is not None:
        env = {**env, "VXGATE_ADMIN_TOKEN": "", "VXGATE_ADMIN_TOKEN_FILE": str(args.token_file)}
    try:
        return Settings.from_env(env).admin_token
    except SettingsError as error:
        raise StatusError(str(error)) from None


def _http_fetch(base_url: str, token: str, env: Mapping[str, str]) -> Fetch:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    try:  # https: VXGATE_CA_FILE, VXGATE_CLIENT_CERT/KEY (admin_client.py)
        context = tls_context(env) if base_url.startswith("https:") else None
    except AdminCallError as error:
        raise StatusError(str(error)) from None

    def fetch(path: str) -> Any:
        request = urllib.request.Request(base_url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            raise StatusError(f"{path.split('?')[0]}: the service answered {error.code}: "
                              f"{_error_text(error)}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            raise StatusError(f"cannot reach the service at {base_url}: {reason}") from None
        except ValueError:
            raise StatusError(f"{path.split('?')[0]}: the answer is not JSON; is "
                              f"{base_url} the vxgate service?") from None

    return fetch


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read())
        return str(body["error"])
    except Exception:  # not our JSON error: a proxy's page, say
        return str(error.reason)


def _fail(message: str, token: str) -> int:
    one_line = " ".join(redact(message, (token,)).split())
    print(f"{PROG}: {one_line}", file=sys.stderr, flush=True)
    return EXIT_UNAVAILABLE
