"""`vxgate cloudstack register`: options, checks, and the run that prints one line a step.

CloudStack credentials come from --endpoint/--api-key/--secret-key or, like the cs client,
from CLOUDSTACK_ENDPOINT/CLOUDSTACK_KEY/CLOUDSTACK_SECRET (better: no secret in `ps`).
Errors are one line on stderr and a non-zero exit; the API secret and the tokens are never
printed. The token given is the service's admin token: it is used here only to ask the
service for each extension's own token (auth.py: it reaches only the CloudStack calls),
and that is what the registration details get.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from provider_service import admin_client
from provider_service import cloudstack_registration as reg

PROG = "vxgate: cloudstack register"
EXIT_FAILED, EXIT_USAGE = 1, 2
MIN_TOKEN_LENGTH = 16  # what the provider service accepts (config.py)
# CloudStack turns other characters of the name into "_" for the directory (protocol.md
# §1.1); keeping to these makes the directory the name, lower-cased.
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # fullmatch: '$' allows a trailing newline
ApiFactory = Callable[[str, str, str, tuple[str, ...]], reg.Api]


class UsageError(Exception):
    """A bad or missing option; exit 2."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) \
        -> argparse.ArgumentParser:
    """Add `cloudstack register` and `cloudstack audit` to `vxgate`'s sub-commands;
    returns the register parser."""
    cloudstack = subparsers.add_parser("cloudstack", help="integration with CloudStack")
    actions = cloudstack.add_subparsers(dest="cloudstack_action", required=True)
    register = actions.add_parser(
        "register", help="register vxgate with CloudStack (idempotent)",
        description="Create the vxgate NetworkOrchestrator extension, register it on a "
                    "physical network, enable its provider and create the vxgate offerings. "
                    "Safe to re-run: only what differs is changed.")
    api = register.add_argument_group("CloudStack API")
    api.add_argument("--endpoint", help="API URL, e.g. https://cs.example/client/api "
                                        "(default: $CLOUDSTACK_ENDPOINT)")
    api.add_argument("--api-key", help="admin API key (default: $CLOUDSTACK_KEY)")
    api.add_argument("--secret-key", help="admin secret key (default: $CLOUDSTACK_SECRET)")
    where = register.add_argument_group("where")
    where.add_argument("--physical-network", required=True, help="physical network name or id")
    where.add_argument("--zone", help="zone name or id, when the physical network's name "
                                      "is not unique")
    ext = register.add_argument_group("extension")
    ext.add_argument("--name", default="vxgate", help="extension and provider name "
                                                      "(default: %(default)s)")
    ext.add_argument("--entry-point", default="vxgate_extension.py",
                     help="entry-point file name in the extension's directory "
                          "(default: %(default)s)")
    ext.add_argument("--service-url", required=True,
                     help="URL of the vxgate provider service, as the management servers "
                          "reach it")
    token = ext.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", help="the service's admin token (visible in `ps`: prefer "
                                       "--token-file). It only asks the service for each "
                                       "extension's own token, which is what CloudStack "
                                       "gets; the admin token never leaves this host")
    token.add_argument("--token-file", type=Path,
                       help="file holding the service's admin token, e.g. "
                            "/var/lib/vxgate/admin-token")
    register.add_argument("--egress-default", choices=("allow", "deny"), default="allow",
                          help="default egress policy of the isolated offerings "
                               "(default: %(default)s)")
    from provider_service import audit_cli  # it uses this module's credential checks

    audit_cli.add_parser(actions)
    return register


def run(args: argparse.Namespace, *, environ: Mapping[str, str] | None = None,
        api_factory: ApiFactory | None = None,
        token_issuer: reg.TokenIssuer | None = None) -> int:
    """Run `vxgate cloudstack register` (or `audit`); the exit code. `token_issuer` None:
    each extension's token comes from the service (POST /v1/extension-tokens/<name>)."""
    if getattr(args, "cloudstack_action", "register") == "audit":
        from provider_service import audit_cli

        return audit_cli.run(args, environ=environ)
    env = os.environ if environ is None else environ
    secrets: list[str] = []
    try:
        endpoint, key, secret = _credentials(args, env)
        secrets += (secret, key)
        options = options_from(args)
        secrets.append(options.token)
        issuer = _remembering(token_issuer or _service_issuer(options, env), secrets)
        api = (api_factory or _real_api)(endpoint, key, secret, (options.token,))
        reg.reconcile(api, reg.build_plan(options), _say, _warn, tokens=issuer)
    except UsageError as error:
        return _fail(str(error), tuple(secrets), EXIT_USAGE)
    except (reg.RegistrationError, admin_client.AdminCallError) as error:
        return _fail(str(error), tuple(secrets), EXIT_FAILED)
    except Exception as error:  # an operator gets a line, not a traceback
        return _fail(f"unexpected {type(error).__name__}: {error}", tuple(secrets), EXIT_FAILED)
    return 0


def _service_issuer(options: reg.Options, env: Mapping[str, str]) -> reg.TokenIssuer:
    def issue(name: str, held: str) -> str:
        return admin_client.issue_extension_token(options.service_url, options.token, name,
                                                  held, env)

    return issue


def _remembering(issuer: reg.TokenIssuer, secrets: list[str]) -> reg.TokenIssuer:
    """`issuer`, with every token it hands out added to what error lines redact."""
    def issue(name: str, held: str) -> str:
        token = issuer(name, held)
        secrets.append(token)
        return token

    return issue


def options_from(args: argparse.Namespace) -> reg.Options:
    """Checked options; UsageError names the first bad one."""
    if not SAFE_NAME.fullmatch(args.name):
        raise UsageError("--name may hold only letters, digits, '.', '_' and '-'")
    if not SAFE_NAME.fullmatch(args.entry_point) or args.entry_point.startswith("."):
        raise UsageError("--entry-point must be a plain file name, e.g. vxgate_extension.py")
    return reg.Options(
        physical_network=args.physical_network,
        zone=args.zone or None,
        name=args.name,
        entry_point=args.entry_point,
        service_url=_service_url(args.service_url),
        token=_token(args),
        egress_default_allow=args.egress_default == "allow",
    )


def _credentials(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str, str]:
    values = []
    for option, variable in (("endpoint", "CLOUDSTACK_ENDPOINT"), ("api_key", "CLOUDSTACK_KEY"),
                             ("secret_key", "CLOUDSTACK_SECRET")):
        value = getattr(args, option) or env.get(variable, "")
        if not value:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"no CloudStack {option.replace('_', ' ')}: pass {flag} "
                             f"or set {variable}")
        values.append(value)
    endpoint, key, secret = values
    if urlsplit(endpoint).scheme not in ("http", "https"):
        raise UsageError("--endpoint must be an http:// or https:// URL")
    return endpoint, key, secret


def _service_url(url: str) -> str:
    # The entry-point speaks HTTP itself and understands scheme://host[:port][/base] only.
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok \
            or parts.username or parts.password or parts.query or parts.fragment:
        raise UsageError("--service-url must look like http(s)://host[:port][/path]")
    return url.rstrip("/")


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        try:
            token = str(args.token_file.read_text(encoding="utf-8")).strip()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise UsageError(f"cannot read token file {args.token_file}: {reason}") from None
    else:
        token = str(args.token).strip()
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise UsageError(f"the token must be one word of at least {MIN_TOKEN_LENGTH} "
                         "characters")
    return token


def _real_api(endpoint: str, key: str, secret: str, secrets: tuple[str, ...]) -> reg.Api:
    return reg.CloudStackApi(endpoint, key, secret, secrets=secrets)


def _say(line: str) -> None:
    print(line, flush=True)


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


def _fail(message: str, secrets: tuple[str, ...], code: int) -> int:
    one_line = " ".join(reg.redact(message, secrets).split())
    print(f"{PROG}: {one_line}", file=sys.stderr, flush=True)
    return code
