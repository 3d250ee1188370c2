"""Structured logs for the service and the agent: one JSON object per line.

Every line has time, level, logger and message, then what is known of the work in hand:
request id, command, network id, VPC id, device, artifact. Those come from a context
that the code doing the work binds once (Flask's before_request, one extension event,
one agent apply), so every line logged inside carries them without passing them around.

    log_context.bind(command="implement-network", network_id="204")
    log.info("recorded")   # {"time": ..., "message": "recorded", "command": ..., ...}

The context is a ContextVar: each gunicorn thread and each agent thread has its own, and
a thread pool's thread must be cleared between requests (`clear`). Fields that hold for
the whole process (the agent's device) are `set_process_fields`, seen by every thread.

VXGATE_LOG_FORMAT=text gives one human-readable line instead (development); the fields
then follow the message as `[key=value ...]`.

Stdlib only: the agent and the service both use it, and neither depends on the other.
Nothing secret may ever be bound or logged: no tokens, passwords, SSH keys, user data.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TextIO

FORMATS = ("json", "text")
FORMAT_ENV = "VXGATE_LOG_FORMAT"
# The known fields, in the order a line shows them; others bound follow these.
FIELDS = ("request_id", "command", "outcome", "network_id", "vpc_id", "zone_id", "device",
          "artifact", "generation")
MAX_FIELD_CHARS = 128
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_context: ContextVar[Mapping[str, object]] = ContextVar("vxgate_log_context",
                                                      default=MappingProxyType({}))
_process_fields: dict[str, object] = {}


class LogFormatError(ValueError):
    """VXGATE_LOG_FORMAT (or --log-format) is not one of FORMATS."""


# --- the context -----------------------------------------------------------------------


def bind(**fields: object) -> Token[Mapping[str, object]]:
    """Add fields to this thread's context (None values are left out); returns the token
    for `reset`. Values are shortened to one line of at most MAX_FIELD_CHARS."""
    current = dict(_context.get())
    current.update({key: clean(value) for key, value in fields.items() if value is not None})
    return _context.set(current)


def reset(token: Token[Mapping[str, object]]) -> None:
    _context.reset(token)


def clear() -> None:
    """Forget this thread's context: a new request, or the end of one."""
    _context.set(MappingProxyType({}))


def context() -> dict[str, object]:
    """The fields a line logged now carries: the process's, then this thread's."""
    return {**_process_fields, **_context.get()}


def set_process_fields(**fields: object) -> None:
    """Fields of every line of this process, from every thread (the agent's device)."""
    _process_fields.update({key: clean(value) for key, value in fields.items()
                            if value is not None})


def clean(value: object) -> object:
    """A field value as logged: numbers as they are; anything else a short line of text
    (a tenant-supplied id cannot break a text line or blow up a JSON one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        text = " ".join(str(value).split())
        return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS - 1] + "…"
    return value


# --- formatters ------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601, milliseconds), level, logger,
    message, the context's fields, and `exception` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(ordered(context()))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with the context's fields after the message."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = ordered(context())
        if not fields:
            return text
        first, newline, rest = text.partition("\n")  # a traceback stays below
        shown = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{first} [{shown}]{newline}{rest}"


def ordered(fields: Mapping[str, object]) -> dict[str, object]:
    known = {key: fields[key] for key in FIELDS if key in fields}
    return {**known, **{key: value for key, value in fields.items() if key not in known}}


def formatter(kind: str) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else TextFormatter()


def format_from_env(environ: Mapping[str, str] | None = None, default: str = "json") -> str:
    env = os.environ if environ is None else environ
    return parse_format(env.get(FORMAT_ENV) or default)


def parse_format(value: str) -> str:
    kind = value.strip().lower()
    if kind not in FORMATS:
        raise LogFormatError(f"log format {value[:20]!r}: use one of {', '.join(FORMATS)}")
    return kind


# --- set-up ----------------------------------------------------------------------------


def configure(kind: str, level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """The root logger writes `kind` lines to `stream` (stderr); replaces its handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(kind))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


def gunicorn_config(kind: str, *, access_log: bool) -> dict[str, Any]:
    """gunicorn's logconfig_dict: its own lines (gunicorn.error, gunicorn.access) and the
    application's, all through one handler in `kind`. A logconfig_dict turns gunicorn's
    access log on, so without `access_log` its logger only passes warnings."""
    handler = {"class": "logging.StreamHandler", "formatter": "vxgate",
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"vxgate": {"()": f"{__name__}.{type(formatter(kind)).__name__}"}},
        "handlers": {"vxgate": handler},
        "root": {"level": "INFO", "handlers": ["vxgate"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO" if access_log else "WARNING",
                                "handlers": [], "propagate": True},
        },
    }
