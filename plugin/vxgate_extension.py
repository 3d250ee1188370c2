#!/usr/bin/python3 -IS
"""vxgate's CloudStack NetworkOrchestrator extension entry-point.

CloudStack spawns this for every network event, 10-12 times per VM start, so it is a thin
client: read the event, send it to the vxgate provider service in one HTTP request,
print what CloudStack reads back. Standard library only, and only the cheap parts of it:
the interpreter starts in ~7 ms, json adds ~7 ms, http.client would add ~20 ms (it
imports the email package), so HTTP/1.1 is spoken over a plain socket, and ssl is
imported only for an https service URL.

Forms accepted (see protocol.md):
  vxgate_extension.py <command> <payload-file> <timeout-seconds>      (CloudStack 4.23)
  vxgate_extension.py <command> --flag value ... \\
      --physical-network-extension-details '<json>' --network-extension-details '<json>'

Exit 0 with the expected output on success; non-zero with one line on failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

# Registration details that carry the service's address and our credential.
URL_KEY = "vxgate.url"
TOKEN_KEY = "vxgate.token"
# Keys of the registration details never sent on or printed (protocol.md §2.1: CloudStack
# passes hidden details, credentials included, to every call).
SECRET_MARKERS = ("token", "password", "secret", "sshkey", "key")
DEFAULT_TIMEOUT = 60.0
EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 1, 2, 124
ENVELOPE_DETAILS = ("physical-network-extension-details", "network-extension-details")


class Failure(Exception):
    """One line for CloudStack's log, and the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(" ".join(message.split()))
        self.code = code


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    try:
        if not command or command.startswith("-"):
            raise Failure("usage: vxgate_extension.py <command> <payload-file> <timeout>",
                          EXIT_USAGE)
        event, timeout = read_event(command, argv[2:])
        _arm_deadline(command, timeout)
        output = send(command, event, timeout)
    except Failure as failure:
        _print(f"vxgate: {command or 'extension'}: {failure}")
        return failure.code
    except Exception as error:  # never a traceback in CloudStack's log
        _print(f"vxgate: {command}: unexpected {type(error).__name__}: {error}")
        return EXIT_FAILED
    if output is not None:
        _print(output if isinstance(output, str) else json.dumps(output, separators=(",", ":")))
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

    name = f"{__package__}.plugin_legacy" if __package__ else "plugin_legacy"
    legacy = importlib.import_module(name)
    try:
        return legacy.legacy_envelope(command, args)
    except ValueError as error:
        raise Failure(f"legacy arguments: {error}", EXIT_USAGE) from None


def _load_json_file(path: str) -> object:
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except OSError as error:
        raise Failure(f"cannot read payload file: {error.strerror}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise Failure(f"payload file is not JSON: {error}") from None


def _timeout(text: str) -> float:
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        raise Failure(f"timeout is not a number: {text[:20]!r}", EXIT_USAGE) from None
    return value if 0 < value <= 3600 else DEFAULT_TIMEOUT


def _arm_deadline(command: str, timeout: float) -> None:
    # CloudStack waits forever for us (protocol.md §1); a hung call would hold the
    # network's lock in the management server. The alarm is the backstop behind the
    # socket timeouts.
    def expire(_signum: int, _frame: object) -> None:
        _print(f"vxgate: {command}: gave up after the {timeout:g} s deadline")
        os._exit(EXIT_TIMEOUT)

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)


# --- talking to the service ------------------------------------------------------------


def send(command: str, event: dict[str, object], timeout: float) -> object:
    registration = event.get("physical-network-extension-details")
    if not isinstance(registration, dict):
        raise Failure("physical-network-extension-details missing from the payload")
    url, token = registration.get(URL_KEY), registration.get(TOKEN_KEY)
    if not isinstance(url, str) or not url:
        raise Failure(f"registration detail {URL_KEY} is not set (run: vxgate cloudstack register)")
    if not isinstance(token, str) or not token:
        raise Failure(f"registration detail {TOKEN_KEY} is not set")
    body = json.dumps(without_secrets(event), separators=(",", ":")).encode()
    status, answer = post(url, f"/v1/cloudstack/{command}", token, body, timeout)
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


def post(url: str, path: str, token: str, body: bytes, timeout: float) -> tuple[int, object]:
    scheme, host, port, base = _split_url(url)
    request = (
        f"POST {base}{path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            conn = _wrap_tls(raw, host) if scheme == "https" else raw
            conn.sendall(request)
            response = _read_all(conn)
    except TimeoutError:
        raise Failure(f"no answer from the vxgate service at {url} within {timeout:g} s") from None
    except OSError as error:
        raise Failure(f"cannot reach the vxgate service at {url}: {error.strerror or error}") \
            from None
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


def _wrap_tls(raw: socket.socket, host: str) -> socket.socket:
    import ssl

    context = ssl.create_default_context(cafile=os.environ.get("VXGATE_CA_FILE") or None)
    return context.wrap_socket(raw, server_hostname=host)


def _read_all(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_response(response: bytes) -> tuple[int, object]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise Failure("the vxgate service sent a malformed answer")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    try:
        return int(status_line[1]), json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError):
        return int(status_line[1]), None


def _dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
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
    sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))  # -I leaves it out
    sys.exit(main(sys.argv))
