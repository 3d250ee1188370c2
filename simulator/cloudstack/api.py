"""The HTTP layer of a CloudStack management-server stand-in: signed requests in, CloudStack
4.x JSON out, so that the cs client (and its command line) work against it unchanged.

Handler authors register commands and write plain functions of `Params`:

    api = ApiServer({api_key: secret_key})

    @api.command("createNetwork", kind="async", object_name="network")
    def create_network(params: Params) -> dict[str, Any]:
        if params.text("vlan") == "0":
            raise ApiError(ErrorCode.PARAM_ERROR, "vlan 0 is reserved")
        return {"id": new_id(), "name": params.required("name")}

    with api.running() as endpoint:  # http://127.0.0.1:<port>/client/api
        ...

A command's kind says what its handler returns and how the answer looks:
- "sync":  a dict, answered as {object_name: dict}; with object_name=None the handler
           returns None and the answer is {"success": "true"}.
- "list":  a list of dicts, answered a page at a time as {"count": N, object_name: [...]}
           ({} when there is nothing), by the request's page and pagesize.
- "async": as "sync", but the request answers {"jobid": ...} at once and the handler runs
           later on the job worker (see jobs.py); queryAsyncJobResult shows the outcome.
Every answer is wrapped as {"<command lower-cased>response": ...}.

Errors: raise ApiError(code, text); the answer has HTTP status `code`. Any other exception
is a 530 with a one-line text; its traceback goes to this module's logger. Results must be
JSON (dicts, lists, str, int, float, bool, None); the framework answers a copy of them.

Locking: handlers run on HTTP threads (sync, list) and on the job worker (async) at the
same time; the framework holds `ApiServer.lock`, one RLock, around every handler call, so
handlers may share state without locks of their own.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, NoReturn, TypeVar, cast
from urllib.parse import parse_qsl, urlsplit

from simulator.cloudstack import signing
from simulator.cloudstack.jobs import JobRunner
from simulator.cloudstack.params import SERVER_API, ApiError, ErrorCode, Params, internal_error

__all__ = ["API_PATH", "ApiError", "ApiServer", "ErrorCode", "Params", "new_id",
           "new_key_pair"]

logger = logging.getLogger(__name__)
Json = dict[str, Any]
Kind = Literal["sync", "list", "async"]
Handler = Callable[[Params], object]
H = TypeVar("H", bound=Handler)

API_PATH = "/client/api"
CLOUDSTACK_VERSION = "4.23.0.0"
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
MAX_PAGE_SIZE = 500  # default.page.size, which also caps pagesize
UNLIMITED_PAGE_SIZE = -1
MAX_BODY_BYTES = 16 << 20
AUTH_FAILURE = "unable to verify user credentials and/or request signature"
UNKNOWN_COMMAND = "The given command does not exist or it is not available for user"


def new_id() -> str:
    """A new object id; the API shows every object by a UUID."""
    return str(uuid.uuid4())


def new_key_pair() -> tuple[str, str]:
    """A random (api key, secret key), of the length and alphabet CloudStack generates."""
    return secrets.token_urlsafe(64)[:86], secrets.token_urlsafe(64)[:86]


def error_body(error: ApiError, *, with_cs_code: bool = True) -> Json:
    body: Json = {"uuidList": [], "errorcode": error.code}
    if with_cs_code:
        body["cserrorcode"] = error.cs_error_code
    return body | {"errortext": error.text}


@dataclass(frozen=True)
class Command:
    name: str
    # "bare" answers the handler's dict unwrapped by an object name (the job queries).
    kind: Literal["sync", "list", "async", "bare"]
    object_name: str | None
    handler: Handler
    locked: bool = True

    @property
    def response_name(self) -> str:
        return f"{self.name.lower()}response"

    @property
    def java_class(self) -> str:
        """What a job's `cmd` shows, after CloudStack's command class names."""
        return f"{self.name[0].upper()}{self.name[1:]}Cmd"


class ApiServer:
    """Accounts, commands and jobs; `running()` serves them over HTTP."""

    def __init__(self, accounts: Mapping[str, str]) -> None:
        self.accounts = dict(accounts)  # api key -> secret key; every account is an admin
        self.lock = threading.RLock()
        self.jobs = JobRunner()
        self._commands: dict[str, Command] = {}
        self._add_builtins()

    # --- registration ------------------------------------------------------------------

    def command(self, name: str, *, kind: Kind, object_name: str | None) -> Callable[[H], H]:
        """Register the decorated function as the handler of `name` (see the module doc)."""
        def decorate(handler: H) -> H:
            self.register(name, handler, kind=kind, object_name=object_name)
            return handler
        return decorate

    def register(self, name: str, handler: Handler, *, kind: Kind,
                 object_name: str | None) -> None:
        if kind == "list" and not object_name:
            raise ValueError(f"{name}: a list command needs an object_name")
        self._add(Command(name, kind, object_name, handler))

    def _add(self, command: Command) -> None:
        if command.name in self._commands:
            raise ValueError(f"{command.name} is already registered")
        self._commands[command.name] = command

    # --- one request -------------------------------------------------------------------

    def handle(self, pairs: Sequence[tuple[str, str]]) -> tuple[int, Json]:
        """Answer one request, given its parameters as sent: (HTTP status, JSON body)."""
        first: dict[str, str] = {}
        for name, value in pairs:
            first.setdefault(name, value)
        # Command names are case-sensitive, as in CloudStack's map of API names.
        name = next((value for key, value in first.items() if key.lower() == "command"), "")
        command = self._commands.get(name)
        if command is None:
            # CloudStack looks the command up before it checks the signature.
            logger.info("unknown command %r", name)
            error = ApiError(ErrorCode.UNSUPPORTED_ACTION_ERROR, UNKNOWN_COMMAND,
                             cs_error_code=SERVER_API)
            return error.code, {"errorresponse": error_body(error)}
        refusal = signing.refusal(first, self.accounts, datetime.now(UTC))
        if refusal:
            logger.info("%s refused: %s", command.name, refusal)
            error = ApiError(ErrorCode.UNAUTHORIZED, AUTH_FAILURE)
            return error.code, {command.response_name: error_body(error, with_cs_code=False)}
        try:
            answer = self._answer(command, Params(command.name, pairs))
        except ApiError as error:
            return error.code, {command.response_name: error_body(error)}
        return 200, {command.response_name: answer}

    def _answer(self, command: Command, params: Params) -> Json:
        if command.kind == "async":
            job_id = new_id()
            self.jobs.submit(job_id, command.java_class, lambda: self._result(command, params))
            return {"jobid": job_id}
        if command.kind == "list":
            return self._list_page(command, params)
        if command.kind == "bare":
            return self._object(command, self._call(command, params))
        if command.object_name is None:
            self._call(command, params)
            return {"success": "true"}  # a string in sync answers, a boolean in job results
        return self._result(command, params)

    def _result(self, command: Command, params: Params) -> Json:
        """A sync answer, or an async job's result."""
        result = self._call(command, params)
        if command.object_name is None:
            return {"success": True}
        return {command.object_name: self._object(command, result)}

    def _list_page(self, command: Command, params: Params) -> Json:
        start, size = _page_bounds(params)
        result = self._call(command, params)
        if not isinstance(result, list) or not all(isinstance(item, dict) for item in result):
            self._fail(command, f"returned {type(result).__name__}, not a list of dicts")
        items = cast(list[Json], result)
        page = items[start:] if size == UNLIMITED_PAGE_SIZE else items[start:start + size]
        if not page:
            return {}
        return {"count": len(items), cast(str, command.object_name): page}

    def _call(self, command: Command, params: Params) -> object:
        """Run the handler under the lock; any exception but ApiError becomes the 530.
        The result is copied through JSON while the lock is held: handlers may return
        the very dicts they keep, and an answer must neither change when they do later
        nor fail to serialise after the handler returned."""
        try:
            if not command.locked:
                return _json_copy(command.handler(params))
            with self.lock:
                return _json_copy(command.handler(params))
        except ApiError:
            raise
        except Exception as exc:
            logger.exception("%s failed", command.name)
            raise internal_error(exc) from exc

    def _object(self, command: Command, result: object) -> Json:
        if not isinstance(result, dict):
            self._fail(command, f"returned {type(result).__name__}, not a dict")
        return cast(Json, result)

    def _fail(self, command: Command, why: str) -> NoReturn:
        logger.error("the %s handler %s", command.name, why)
        raise internal_error(TypeError(f"the {command.name} handler {why}"))

    # --- built-in commands -------------------------------------------------------------

    def _add_builtins(self) -> None:
        self._add(Command("queryAsyncJobResult", "bare", None, self._query_job, locked=False))
        self._add(Command("listAsyncJobs", "list", "asyncjobs", lambda _: self.jobs.answers(),
                          locked=False))
        self._add(Command("listCapabilities", "sync", "capability", _capabilities))

    def _query_job(self, params: Params) -> Json:
        job_id = params.required("jobid")
        answer = self.jobs.answer(job_id)
        if answer is None:
            raise params.invalid("jobid", job_id, "no such job")
        return answer

    # --- serving -----------------------------------------------------------------------

    @contextmanager
    def running(self, host: str = "127.0.0.1") -> Iterator[str]:
        """Serve on a free port of `host` and run the job worker; yields the endpoint URL.
        On exit the server stops, and the worker once it finished the jobs queued."""
        server = _HttpServer(self, host)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="cloudstack-api", daemon=True)
        self.jobs.start()
        thread.start()
        try:
            yield f"http://{host}:{server.server_port}{API_PATH}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
            self.jobs.stop()


def _json_copy(value: object) -> object:
    return json.loads(json.dumps(value, allow_nan=False))


def _capabilities(params: Params) -> Json:
    return {"cloudstackversion": CLOUDSTACK_VERSION, "securitygroupsenabled": False,
            "userpublictemplateenabled": True, "supportELB": "false",
            "projectinviterequired": False, "allowusercreateprojects": True,
            "dynamicrolesenabled": True, "apilimitinterval": 1, "apilimitmax": -1}


def _page_bounds(params: Params) -> tuple[int, int]:
    """(index of the first item, page size or UNLIMITED_PAGE_SIZE), checked as
    CloudStack's dispatcher and BaseListCmd check them."""
    page, size = params.integer("page"), params.integer("pagesize")
    if page is None and size not in (None, UNLIMITED_PAGE_SIZE):
        raise ApiError(ErrorCode.PARAM_ERROR,
                       '"page" parameter is required when "pagesize" is specified')
    if size is None and page is not None:
        raise ApiError(ErrorCode.PARAM_ERROR,
                       '"pagesize" parameter is required when "page" is specified')
    if size == UNLIMITED_PAGE_SIZE:
        if page is not None:
            raise ApiError(ErrorCode.PARAM_ERROR,
                           "Can't specify page parameter when pagesize is -1 (Unlimited)")
        return 0, UNLIMITED_PAGE_SIZE
    if size is not None and size > MAX_PAGE_SIZE:
        raise ApiError(ErrorCode.PARAM_ERROR,
                       f"Page size can't exceed max allowed page size value: {MAX_PAGE_SIZE}")
    if (page is not None and page < 1) or (size is not None and size < 1):
        raise ApiError(ErrorCode.PARAM_ERROR, "page and pagesize must be positive")
    size = size or MAX_PAGE_SIZE
    return ((page or 1) - 1) * size, size


# --- HTTP --------------------------------------------------------------------------------


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: ApiServer, host: str) -> None:
        super().__init__((host, 0), _RequestHandler)
        self.api = api


class _RequestHandler(BaseHTTPRequestHandler):
    server: _HttpServer

    def do_GET(self) -> None:
        self._respond([])

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.send_error(400 if length < 0 else 413)
            return
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        form = self.headers.get_content_type() == "application/x-www-form-urlencoded"
        self._respond(_decode(body) if form else [])

    def _respond(self, body_pairs: list[tuple[str, str]]) -> None:
        url = urlsplit(self.path)
        if url.path != API_PATH:
            self.send_error(404)
            return
        # As the servlet's parameter map: the query string's parameters, then the body's.
        status, answer = self.server.api.handle(_decode(url.query) + body_pairs)
        payload = json.dumps(answer, allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", JSON_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def _decode(form: str) -> list[tuple[str, str]]:
    return parse_qsl(form, keep_blank_values=True, encoding="utf-8", errors="replace")
