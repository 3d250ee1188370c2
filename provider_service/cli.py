"""`vxgate`: admin commands."""

from __future__ import annotations

import argparse
import json
import sys

from provider_service import ca_cli, registration_cli, status_cli
from provider_service.config import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vxgate", description="vxgate admin commands")
    commands = parser.add_subparsers(dest="command", required=True)
    db_cmd = commands.add_parser("db", help="database schema")
    db_sub = db_cmd.add_subparsers(dest="action", required=True)
    db_sub.add_parser("upgrade", help="migrate the database to the newest schema")
    revision = db_sub.add_parser("revision", help="autogenerate a migration (developers)")
    revision.add_argument("-m", "--message", required=True)
    commands.add_parser("openapi", help="print the OpenAPI document")
    registration_cli.add_parser(commands)
    status_cli.add_parser(commands)
    ca_cli.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "cloudstack":
        return registration_cli.run(args)
    if args.command == "status":
        return status_cli.run(args)
    if args.command == "ca":
        return ca_cli.run(args)

    if args.command == "openapi":
        from provider_service.api.openapi import document

        print(json.dumps(document(), indent=2))
        return 0
    from provider_service import schema

    try:
        url = Settings.from_env({**_env(), "VXGATE_ADMIN_TOKEN": "x" * 16}).database_url
    except SettingsError as exc:  # pragma: no cover - the token is supplied above
        print(f"vxgate: {exc}", file=sys.stderr)
        return 2
    if args.action == "upgrade":
        schema.upgrade(url)
    else:
        schema.make_revision(url, args.message)
    return 0


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


if __name__ == "__main__":
    sys.exit(main())
