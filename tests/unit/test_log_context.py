"""vxgate_log: one JSON object per line, with the context bound by the code at work."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

import vxgate_log


@pytest.fixture(autouse=True)
def fresh_context() -> Iterator[None]:
    vxgate_log.clear()
    saved = dict(vxgate_log._process_fields)
    yield
    vxgate_log.clear()
    vxgate_log._process_fields.clear()
    vxgate_log._process_fields.update(saved)


def record(message: str, *args: object, level: int = logging.INFO,
           exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("vxgate.test", level, __file__, 1, message, args,
                             exc_info)  # type: ignore[arg-type]


def json_line(rec: logging.LogRecord) -> dict[str, object]:
    text = vxgate_log.JsonFormatter().format(rec)
    assert "\n" not in text
    parsed: dict[str, object] = json.loads(text)
    return parsed


def test_a_line_has_time_level_logger_message_and_the_context_in_order() -> None:
    vxgate_log.bind(network_id="204", command="implement-network", request_id="r1")
    line = json_line(record("event %s in %.1f s", "ok", 0.5, level=logging.WARNING))
    assert list(line) == ["time", "level", "logger", "message", "request_id", "command",
                          "network_id"]
    assert line["level"] == "warning" and line["logger"] == "vxgate.test"
    assert line["message"] == "event ok in 0.5 s"
    assert str(line["time"]).endswith("Z") and "T" in str(line["time"])


def test_an_exception_is_one_field_of_the_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        line = json_line(record("failed", exc_info=sys.exc_info()))
    assert "RuntimeError: boom" in str(line["exception"])
    assert "Traceback" in str(line["exception"])


def test_bind_adds_reset_restores_clear_forgets() -> None:
    vxgate_log.bind(request_id="r1")
    token = vxgate_log.bind(artifact="frr.conf", generation=7, vpc_id=None)
    assert vxgate_log.context() == {"request_id": "r1", "artifact": "frr.conf",
                                    "generation": 7}
    vxgate_log.reset(token)
    assert vxgate_log.context() == {"request_id": "r1"}
    vxgate_log.clear()
    assert vxgate_log.context() == {}


def test_process_fields_reach_every_thread_context_fields_only_their_own() -> None:
    vxgate_log.set_process_fields(device="sg1")
    vxgate_log.bind(network_id="mine")
    seen: list[dict[str, object]] = []
    thread = threading.Thread(target=lambda: seen.append(vxgate_log.context()))
    thread.start()
    thread.join()
    assert seen == [{"device": "sg1"}]
    assert vxgate_log.context() == {"device": "sg1", "network_id": "mine"}


def test_a_value_is_one_short_line() -> None:
    vxgate_log.bind(network_id="a\nforged line", vpc_id="x" * 500, generation=3)
    fields = vxgate_log.context()
    assert fields["network_id"] == "a forged line"
    assert len(str(fields["vpc_id"])) == vxgate_log.MAX_FIELD_CHARS
    assert fields["generation"] == 3
    text = vxgate_log.TextFormatter().format(record("hello"))
    assert "\n" not in text
    assert text.endswith(f"hello [network_id=a forged line vpc_id={fields['vpc_id']} "
                         "generation=3]")


def test_text_keeps_a_traceback_below_the_line_with_the_fields() -> None:
    vxgate_log.bind(device="hv1")
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        text = vxgate_log.TextFormatter().format(record("oops", exc_info=sys.exc_info()))
    first, _, rest = text.partition("\n")
    assert first.endswith("vxgate.test: oops [device=hv1]")
    assert rest.startswith("Traceback") and rest.rstrip().endswith("ValueError: bad")


def test_the_format_comes_from_the_environment_and_a_bad_one_is_refused() -> None:
    assert vxgate_log.format_from_env({}) == "json"
    assert vxgate_log.format_from_env({"VXGATE_LOG_FORMAT": "Text"}) == "text"
    with pytest.raises(vxgate_log.LogFormatError, match="use one of json, text"):
        vxgate_log.format_from_env({"VXGATE_LOG_FORMAT": "xml"})


def test_configure_sends_every_logger_through_the_formatter() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        vxgate_log.configure("json", "info", stream)
        vxgate_log.bind(device="leaf1")
        logging.getLogger("agent.daemon").info("applied %s", "frr.conf")
        logging.getLogger("agent.daemon").debug("not shown")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["logger"], x["message"], x["device"]) for x in lines] == [
        ("agent.daemon", "applied frr.conf", "leaf1")]


def test_the_gunicorn_config_names_a_formatter_that_exists() -> None:
    import logging.config

    config = vxgate_log.gunicorn_config("json", access_log=False)
    factory = config["formatters"]["vxgate"]["()"]
    assert factory == "vxgate_log.JsonFormatter"
    assert config["loggers"]["gunicorn.access"]["level"] == "WARNING"
    assert vxgate_log.gunicorn_config("text", access_log=True)["loggers"][
        "gunicorn.access"]["level"] == "INFO"
    assert logging.config.BaseConfigurator({}).resolve(factory) is vxgate_log.JsonFormatter
