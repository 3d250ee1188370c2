#!/usr/bin/python3 -IS
"""vxgate's CloudStack NetworkOrchestrator extension entry-point.

CloudStack spawns this for every network event, 10-12 times per VM start, so it is a thin
client: read the event, send it to the vxgate provider service in one HTTP request,
print what CloudStack reads back. Standard library only, and only its C modules: the
interpreter starts in ~7 ms; json, socket, signal and os would add ~10 ms (json imports re,
all but os import enum), http.client ~20 ms more (it imports the email package). So JSON
goes through json's own C scanner and encoder (_json), HTTP/1.1 is spoken over a plain
_socket, and ssl (with socket) is imported only for an https service URL.

Forms accepted (see protocol.md):
  vxgate_extension.py <command> <payload-file> <timeout-seconds>      (CloudStack 4.23)
  vxgate_extension.py <command> --flag value ... \\
      --physical-network-extension-details '<json>' --network-extension-details '<json>'

Exit 0 with the expected output on success; non-zero with one line on failure.
"""

from __future__ import annotations

import posix  # os's C half, loaded at start-up; os itself costs ~1 ms to import
import sys
import time

# Only C modules at run time: the signal and socket packages import enum, json imports re
# and enum -- together ~9 ms, more than the interpreter's own start (bench/extension.py).
# `typing` would cost as much, so mypy and ruff are served by this stand-in: both treat
# any `if TYPE_CHECKING:` block as taken, and check us against the full packages.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    import socket
    from typing import Any
else:
    try:
        import _signal as signal
        import _socket as socket
    except ImportError:  # not CPython
        import signal
        import socket

# Registration details that carry the service's address and our credential.
URL_KEY = "vxgate.url"
TOKEN_KEY = "vxgate.token"
# "routed" on the registration of the extension that serves ROUTED networks (vxgate
# cloudstack register); NATTED otherwise. Forwarded to the service with the other details.
MODE_KEY = "vxgate.network_mode"
# Keys of the registration details never sent on or printed (protocol.md §2.1: CloudStack
# passes hidden details, credentials included, to every call).
SECRET_MARKERS = ("token", "password", "secret", "sshkey", "key")
DEFAULT_TIMEOUT = 60.0
# The alarm backs up the socket timeouts, which normally expire first and say more.
ALARM_GRACE = 0.5
EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 1, 2, 124
ENVELOPE_DETAILS = ("physical-network-extension-details", "network-extension-details")
# CloudStack's command names ([a-z][a-z0-9-]{0,62}); anything else must not reach the
# request line.
COMMAND_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz")
COMMAND_CHARS = COMMAND_FIRST | frozenset("0123456789-")
MAX_COMMAND, MAX_TOKEN = 63, 4096


def _is_command(text: str) -> bool:
    return (0 < len(text) <= MAX_COMMAND and text[0] in COMMAND_FIRST
            and all(char in COMMAND_CHARS for char in text))


def _is_token(text: str) -> bool:
    """One visible ASCII word (\\x21-\\x7e): nothing that could end the header."""
    return 0 < len(text) <= MAX_TOKEN and text.isascii() and text.isprintable() \
        and " " not in text


class _DecoderContext:
    """The attributes json.JSONDecoder hands to its C scanner."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__


def _unsupported(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json's own C scanner and encoder (what json.loads and json.dumps run), without the json
# package; None where they are missing or changed, and the json package does the work.
_scan: Any
_encode: Any
try:
    import _json

    _scan = _json.make_scanner(_DecoderContext())  # type: ignore[arg-type]
    _encode = _json.make_encoder(None, _unsupported, _json.encode_basestring_ascii, None,
                                 ":", ",", False, False, True)
except (ImportError, AttributeError, TypeError):
    _scan = _encode = None


def json_loads(text: str) -> object:
    if _scan is not None:
        try:
            value, end = _scan(text, len(text) - len(text.lstrip(" \t\n\r")))
            if not text[end:].strip(" \t\n\r"):
                return value
        except Exception:  # the json package below says what is wrong
            pass
    import json

    return json.loads(text)


def json_dumps(value: object) -> str:
    """Compact JSON, as json.dumps(value, separators=(",", ":")) writes it."""
    if _encode is not None:
        return "".join(_encode(value, 0))
    import json

    return json.dumps(value, separators=(",", ":"))


class Failure(Exception):
    """One line for CloudStack's log, and the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(" ".join(message.split()))
        self.code = code


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    shown = command if _is_command(command) else "extension"
    try:
        if not _is_command(command) or len(argv) < 3:
            raise Failure("usage: vxgate_extension.py <command> <payload-file> <timeout>",
                          EXIT_USAGE)
        event, timeout = read_event(command, argv[2:])
        deadline = _arm_deadline(command, timeout)
        try:
            output = send(command, event, deadline)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)  # one line only, never two
    except Failure as failure:
        _print(f"vxgate: {shown}: {failure}")
        return failure.code
    except Exception as error:  # never a traceback in CloudStack's log
        _print(" ".join(f"vxgate: {shown}: unexpected {type(error).__name__}: {error}".split()))
        return EXIT_FAILED
    if output is not None:
        _print(output if isinstance(output, str) else json_dumps(output))
    return 0


# --- reading the event -----------------------------------------------------------------


def read_event(command: str, args: list[str]) -> tuple[dict[str, object], float]:
    """The envelope as protocol.md §2 describes it, from either invocation form."""
    if args and not args[0].startswith("--"):
        envelope = _load_json_file(args[0])
        timeout = _timeout(args[1] if len(args) > 1 else "")
    else:
        envelope, timeout = _legacy_envelope(command, args), DEFAULT_TIMEOUT
    if not isinstance(envelope, dict):
        raise Failure("the payload is not a JSON object")
    return envelope, timeout


def _legacy_envelope(command: str, args: list[str]) -> object:
    # Deployed, the two files sit side by side as top-level modules; in the source tree
    # they form the `plugin` package.
    import importlib
    import os

    if not __package__:  # run as a script: -I leaves the script's directory off sys.path
        sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
    name = f"{__package__}.plugin_legacy" if __package__ else "plugin_legacy"
    legacy = importlib.import_module(name)
    try:
        return legacy.legacy_envelope(command, args)
    except ValueError as error:
        raise Failure(f"legacy arguments: {error}", EXIT_USAGE) from None


def _load_json_file(path: str) -> object:
    try:
        with open(path, "rb") as handle:
            return json_loads(handle.read().decode("utf-8"))
    except OSError as error:
        raise Failure(f"cannot read payload file: {error.strerror}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise Failure(f"payload file is not JSON: {error}") from None
    except RecursionError:  # JSON nested deeper than the parser recurses
        raise Failure("payload file is not JSON: nested too deeply") from None


def _timeout(text: str) -> float:
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        raise Failure(f"timeout is not a number: {text[:20]!r}", EXIT_USAGE) from None
    return value if 0 < value <= 3600 else DEFAULT_TIMEOUT


def _arm_deadline(command: str, timeout: float) -> float:
    """The monotonic time by which we must have answered.

    CloudStack waits forever for us (protocol.md §1); a hung call would hold the
    network's lock in the management server. Socket operations get the time that is
    left; the alarm is the backstop behind them (a stuck TLS handshake, say). Both end
    with EXIT_TIMEOUT.
    """

    def expire(_signum: int, _frame: object) -> None:
        _print(f"vxgate: {command}: gave up after the {timeout:g} s deadline")
        posix._exit(EXIT_TIMEOUT)

    deadline = time.monotonic() + timeout
    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout + ALARM_GRACE)
    return deadline


# --- talking to the service ------------------------------------------------------------


def send(command: str, event: dict[str, object], deadline: float) -> object:
    registration = event.get("physical-network-extension-details")
    if not isinstance(registration, dict):
        raise Failure("physical-network-extension-details missing from the payload")
    url, token = registration.get(URL_KEY), registration.get(TOKEN_KEY)
    if not isinstance(url, str) or not url:
        raise Failure(f"registration detail {URL_KEY} is not set (run: vxgate cloudstack register)")
    if not isinstance(token, str) or not token:
        raise Failure(f"registration detail {TOKEN_KEY} is not set")
    if not _is_token(token):
        raise Failure(f"registration detail {TOKEN_KEY} is not a valid token")
    body = json_dumps(without_secrets(event)).encode()
    status, answer = post(url, f"/v1/cloudstack/{command}", token, body, deadline)
    if status != 200:
        raise Failure(_error_text(status, answer))
    return answer.get("output") if isinstance(answer, dict) else None


def without_secrets(event: dict[str, object]) -> dict[str, object]:
    clean = dict(event)
    for key in ENVELOPE_DETAILS:
        details = event.get(key)
        if isinstance(details, dict):
            clean[key] = {name: value for name, value in details.items()
                          if not any(marker in name.lower() for marker in SECRET_MARKERS)}
    return clean


def post(url: str, path: str, token: str, body: bytes, deadline: float) -> tuple[int, object]:
    scheme, host, port, base = _split_url(url)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = (
        f"POST {base}{path} HTTP/1.1\r\nHost: {authority}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    try:
        conn = _connect(host, port, _left(deadline))
        try:
            if scheme == "https":
                conn = _wrap_tls(conn, host)
            conn.settimeout(_left(deadline))
            conn.sendall(request)
            response = _read_all(conn, deadline)
        finally:
            conn.close()
    except TimeoutError:
        raise Failure(f"no answer from the vxgate service at {url} before the deadline",
                      EXIT_TIMEOUT) from None
    except OSError as error:
        raise Failure(f"cannot reach the vxgate service at {url}: {error.strerror or error}") \
            from None
    if not response:
        # The service took the request and died (or was restarted) before answering: the
        # event may or may not be recorded, and replaying it is safe (all are idempotent).
        raise Failure(f"the vxgate service at {url} closed the connection without an "
                      "answer (stopped or restarted?); the event is safe to replay")
    return _parse_response(response)


def _split_url(url: str) -> tuple[str, str, int, str]:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise Failure(f"{URL_KEY} must be an http:// or https:// URL")
    hostport, _, base = rest.partition("/")
    host, port = hostport, 443 if scheme == "https" else 80
    if hostport.startswith("["):  # [IPv6]:port
        host, _, tail = hostport[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") and tail[1:].isdigit() else port
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
        if not port_text.isdigit():
            raise Failure(f"{URL_KEY} has a bad port")
        port = int(port_text)
    return scheme, host, port, ("/" + base).rstrip("/")


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """socket.create_connection() without the socket package."""
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _name, address in socket.getaddrinfo(
            _ascii(host), port, 0, socket.SOCK_STREAM):
        conn = socket.socket(family, kind, proto)
        try:
            conn.settimeout(timeout)
            conn.connect(address)
            return conn
        except OSError as exc:
            conn.close()
            error = exc
    raise error


def _ascii(host: str) -> str | bytes:
    """An ASCII host as bytes: getaddrinfo() encodes a str host with the idna codec,
    whose import (stringprep, unicodedata) costs ~1 ms."""
    return host.encode("ascii") if host.isascii() else host


def _wrap_tls(raw: socket.socket, host: str) -> socket.socket:
    import socket as full  # ssl needs the socket package's socket class
    import ssl

    raw = full.socket(fileno=raw.detach())
    context = ssl.create_default_context(cafile=_environ("VXGATE_CA_FILE") or None)
    # A service that requires client certificates (vxgate-service --tls-client-ca).
    cert = _environ("VXGATE_CLIENT_CERT")
    if cert:
        context.load_cert_chain(cert, _environ("VXGATE_CLIENT_KEY") or None)
    return context.wrap_socket(raw, server_hostname=host)


def _environ(name: str) -> str:
    value = posix.environ.get(name.encode())
    return value.decode(errors="surrogateescape") if value else ""


def _left(deadline: float) -> float:
    """Seconds until the deadline; TimeoutError once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _read_all(conn: socket.socket, deadline: float) -> bytes:
    chunks: list[bytes] = []
    while True:
        conn.settimeout(_left(deadline))
        chunk = conn.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _parse_response(response: bytes) -> tuple[int, object]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise Failure("the vxgate service sent a malformed answer")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    try:
        return int(status_line[1]), json_loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError):
        return int(status_line[1]), None


def _dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            raise Failure("the vxgate service sent a malformed chunked answer") from None
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)


def _error_text(status: int, answer: object) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return f"{answer['error']} (HTTP {status})"
    return f"the vxgate service answered HTTP {status}"


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
