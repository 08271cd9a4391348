"""Log lines (common.log over structlog): key=value fields, escaped values, one line per event."""
from __future__ import annotations

import json
import logging

from sqld.common import log
from tests.fixtures.logcheck import parse_logfmt


def _line(fmt: str, service: str, role: str, msg: str, *args: object, level: int = logging.INFO,
          exc_info: object = None) -> str:
    record = logging.LogRecord("sqld.test", level, __file__, 1, msg, args, exc_info)  # type: ignore[arg-type]
    return log.formatter(service, role, fmt).format(record)


def test_fields_of_a_percent_style_message_are_real_fields():
    line = _line("logfmt", "storage", "replica1", "database open db=%s path=%s pages=%d", "main", '/a b/"c"', 7)
    assert "\n" not in line
    f = parse_logfmt(line)
    assert f["level"] == "info" and f["svc"] == "storage" and f["role"] == "replica1"
    assert f["msg"] == "database open" and f["db"] == "main" and f["path"] == '/a b/"c"' and f["pages"] == "7"
    assert f["logger"] == "sqld.test" and f["ts"].endswith("Z")
    assert line.index("svc=") < line.index("role=") < line.index("msg=") < line.index("db=")


def test_quotes_and_newlines_are_escaped_on_one_line():
    line = _line("logfmt", "edge", "replica", 'bad "input"\nsecond line')
    assert "\n" not in line
    f = parse_logfmt(line)
    assert f["msg"] == 'bad "input"\nsecond line' and f["site"] == "replica"
    line = _line("logfmt", "edge", "", "statement statement=%s", "select 1;\nselect 'x'")
    assert "\n" not in line and parse_logfmt(line)["statement"] == "select 1;\nselect 'x'"


def test_a_message_of_another_shape_is_kept_whole():
    f = parse_logfmt(_line("logfmt", "scheduler", "", "stopping (grace %.1fs)", 5.0))
    assert f["msg"] == "stopping (grace 5.0s)"
    f = parse_logfmt(_line("logfmt", "scheduler", "", "serving on %s a=%s", "x y", "z"))  # words after a field
    assert f["msg"] == "serving on x y a=z"


def test_an_exception_stays_on_the_line():
    try:
        raise ValueError("boom\nbang")
    except ValueError:
        import sys
        line = _line("logfmt", "storage", "", "failed op=%s", "x", level=logging.ERROR, exc_info=sys.exc_info())
    assert "\n" not in line
    f = parse_logfmt(line)
    assert f["level"] == "error" and "ValueError: boom" in f["exc"]


def test_json_lines_carry_the_same_fields():
    doc = json.loads(_line("json", "storage", "primary", "database open db=%s", "main"))
    assert doc["svc"] == "storage" and doc["role"] == "primary" and doc["msg"] == "database open" and doc["db"] == "main"
