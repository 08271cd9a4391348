"""The `sqld.read_at` session setting: a read-only session at a past version or time.

Given when connecting, as a startup parameter or in libpq's `options`
(`PGOPTIONS='-c sqld.read_at=2026-11-25T14:00:00Z' psql ...`), because the edge opens its
scheduler session at startup; SET sqld.read_at inside a session is refused with a hint.
The value is a page-store version (digits only) or an ISO 8601 time (UTC when no offset is
given). It needs the mvsqlite storage backend; time travel reaches back as far as its
retention window.
"""
from __future__ import annotations

import datetime

from sqld.edge import guc
from sqld.v1 import common_pb2

NAME = "sqld.read_at"


def from_startup(params: dict[str, str]) -> str | None:
    """The sqld.read_at value of a startup packet, from a parameter or `options`."""
    if params.get(NAME):
        return params[NAME]
    return guc.startup_option(params.get("options", ""), NAME)


def parse(value: str) -> common_pb2.ReadAt:
    """A ReadAt from a setting value; ValueError names the accepted forms."""
    value = value.strip().strip("'")
    if value.isdigit():
        return common_pb2.ReadAt(version=int(value))
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"invalid value for {NAME}: {value!r}; give a page-store version (digits) "
                         "or an ISO 8601 time such as 2026-11-25T14:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return common_pb2.ReadAt(unix_ms=int(when.timestamp() * 1000))
