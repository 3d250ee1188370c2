"""`vxgate-service`: migrate the database, then serve the API under gunicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

import vxgate_log
from provider_service import metrics_setup
from provider_service.config import DEFAULT_STATE_DIR, SettingsError, ensure_admin_token_file
from provider_service.stopping import answer_long_polls_on_stop


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from provider_service.app import create_app

        return create_app()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vxgate-service", description=__doc__)
    parser.add_argument("--bind", action="append", default=None,
                        help="host:port or unix:PATH to listen on; repeat for several "
                             "(default 127.0.0.1:8640)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    # Every agent's long-poll (GET /config?wait=) holds a thread while it waits, so a
    # worker needs threads beyond the one serving CloudStack. Waiting threads sleep and
    # do not contend for the GIL; busy threads of one process do (bench/ measured one
    # thread fastest under 8 concurrent writers): size this to the number of agents.
    parser.add_argument("--threads", type=int, default=8,
                        help="threads per worker (each waiting agent holds one)")
    parser.add_argument("--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR),
                        help="holds the SQLite database and the admin token file")
    parser.add_argument("--database-url", default=None,
                        help="SQLAlchemy URL; default: SQLite in the state directory")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    tls = parser.add_argument_group(
        "TLS", "serve HTTPS with a certificate from `vxgate ca issue` (default: plain HTTP)")
    tls.add_argument("--tls-cert", type=Path, default=_env_path("VXGATE_TLS_CERT"),
                     help="the service's certificate (PEM; default $VXGATE_TLS_CERT)")
    tls.add_argument("--tls-key", type=Path, default=_env_path("VXGATE_TLS_KEY"),
                     help="its private key (PEM, mode 0600; default $VXGATE_TLS_KEY)")
    tls.add_argument("--tls-client-ca", type=Path, default=_env_path("VXGATE_TLS_CLIENT_CA"),
                     help="require every client to present a certificate this CA signed "
                          "(mutual TLS; default $VXGATE_TLS_CLIENT_CA)")
    parser.add_argument("--log-format", choices=vxgate_log.FORMATS, default=None,
                        help="json (one object per line) or text; default: "
                             "$VXGATE_LOG_FORMAT, else json")
    return parser.parse_args(argv)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "")
    return Path(value) if value else None


def tls_options(args: argparse.Namespace) -> dict[str, Any]:
    """gunicorn's TLS settings; SettingsError (one line) for an unusable combination or
    file, checked here because gunicorn would fail later, with a traceback, per worker."""
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise SettingsError("--tls-client-ca needs --tls-cert and --tls-key")
        return {}
    if args.tls_cert is None or args.tls_key is None:
        raise SettingsError("--tls-cert and --tls-key go together")
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca is not None:
            context.load_verify_locations(args.tls_client_ca)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise SettingsError(f"TLS files unusable: {reason}") from None
    options: dict[str, Any] = {"certfile": str(args.tls_cert), "keyfile": str(args.tls_key)}
    if args.tls_client_ca is not None:
        # Every connection must show a certificate the CA signed, before any HTTP: the
        # agents (--cert-file), the entry-point and the admin commands (VXGATE_CLIENT_CERT).
        # The token is still checked on every call: the certificate says "one of ours",
        # the token says which device or role.
        options.update(cert_reqs=ssl.CERT_REQUIRED, ca_certs=str(args.tls_client_ca))
    return options


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binds = args.bind or ["127.0.0.1:8640"]
    os.umask(0o077)  # the database will hold VM passwords and user data
    state_dir = args.state_dir.resolve()
    os.environ["VXGATE_STATE_DIR"] = str(state_dir)
    metrics_setup.prepare(state_dir)  # before anything imports prometheus_client
    try:
        log_format = args.log_format or vxgate_log.format_from_env()
    except vxgate_log.LogFormatError as exc:
        print(f"vxgate-service: VXGATE_LOG_FORMAT: {exc}", file=sys.stderr)
        return 2
    if args.database_url:
        os.environ["VXGATE_DATABASE_URL"] = args.database_url
    if not os.environ.get("VXGATE_ADMIN_TOKEN"):
        os.environ.setdefault("VXGATE_ADMIN_TOKEN_FILE", str(ensure_admin_token_file(state_dir)))

    from provider_service import schema
    from provider_service.config import Settings

    try:
        settings = Settings.from_env()
        tls = tls_options(args)
    except SettingsError as exc:
        print(f"vxgate-service: {exc}", file=sys.stderr)
        return 2
    schema.upgrade(settings.database_url)
    scheme = "https" if tls else "http"
    _announce(f"vxgate service: {scheme}://{binds[0]}/v1  (database "
              f"{_redact(settings.database_url)})", log_format)
    # The token itself only to a person at a terminal; a journal or a CI log gets the
    # file that holds it (or the variable's name: a log line never has the token).
    token_file = os.environ.get("VXGATE_ADMIN_TOKEN_FILE", "")
    shown_as_is = sys.stdout.isatty() or not token_file
    token = settings.admin_token if log_format == "text" and shown_as_is else None
    where = f"in {token_file}" if token_file else "from $VXGATE_ADMIN_TOKEN"
    shown = token or (f"$(cat {token_file})" if token_file else "$VXGATE_ADMIN_TOKEN")
    _announce(f"admin token:    {token or where}", log_format)
    _announce(f"try:            curl -H \"Authorization: Bearer {shown}\" "
              f"{scheme}://{binds[0]}/v1/zones", log_format)
    options: dict[str, Any] = {
        "bind": binds,
        "workers": args.workers,
        "threads": args.threads,
        # gthread even with one thread: the sync worker closes every connection, and the
        # extension and agents would pay a TCP handshake per call.
        "worker_class": "gthread",
        "keepalive": 30,
        # gunicorn's default control socket is one per user: two services would collide.
        "control_socket": str(state_dir / "gunicorn.ctl"),
        "accesslog": "-" if args.access_log else None,
        "loglevel": "info",
        "logconfig_dict": vxgate_log.gunicorn_config(log_format, access_log=args.access_log),
        "post_worker_init": answer_long_polls_on_stop,
        "child_exit": metrics_setup.child_exit,
        **tls,
    }
    _Gunicorn(options).run()
    return 0


def _announce(line: str, log_format: str) -> None:
    """A start-up line: as it is in text mode, else one JSON log line like all others."""
    if log_format == "text":
        print(line, flush=True)
    else:
        record = logging.LogRecord("provider_service.serve", logging.INFO, __file__, 0,
                                   " ".join(line.split()), None, None)
        print(vxgate_log.JsonFormatter().format(record), flush=True)


def _redact(url: str) -> str:
    """Hide the password of a database URL."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


if __name__ == "__main__":
    sys.exit(main())
