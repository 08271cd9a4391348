"""SQLite's wire extensions: what a SQLite-API client (client/sqldclient) needs beyond pg-wire.

A client asks for them when it connects, with the startup setting `sqld.sqlite_wire=on`
(libpq: `options='-c sqld.sqlite_wire=on'`); every other client sees PostgreSQL's messages
unchanged. In such a session (README "SQLite wire extensions"):
- the SQL runs as written, SQLite's dialect and placeholders (no PostgreSQL rewriting,
  sqlrewrite.rewrite); Parse declares the parameter count by its type list.
- result columns have the type OID `VALUE_OID` and every value carries its own storage
  class: a first byte `i` (integer, decimal text), `r` (real, Python's repr: shortest
  round-trip, `inf`/`-inf`), `t` (text, UTF-8) or `b` (blob, the raw bytes); NULL stays NULL.
  The same bytes whatever format code the client asked for.
- result columns keep SQLite's names (no PostgreSQL FigureColname renaming, edge/colnames.py).
- before a RowDescription whose declared types differ from the last ones sent, a
  ParameterStatus `sqld.decltypes` = a JSON array of each column's declared type
  (sqlite3_column_decltype; null for an expression).
- before a ReadyForQuery, when it changed, a ParameterStatus `sqld.total_changes`: the rows the
  connection's statements and their triggers changed so far (sqlite3_total_changes).
- before a ReadyForQuery, when it changed, a ParameterStatus `sqld.frame_no`: the replication
  frame number of the connection's last write (BatchResult.frame_no; 0/unsent without
  replication), so that an embedded replica can read the connection's own writes.
- INSERT's CommandComplete is `INSERT <last_insert_rowid> <rows>` (PostgreSQL puts 0 there).
- an ErrorResponse for an error SQLite raised carries its extended result code in field `x`
  (decimal) and its name in field `y` (SQLITE_CONSTRAINT_PRIMARYKEY); the protocol lets a
  server add fields and clients ignore those they do not know.

The mode is the connection's: `connection.py` sets `ACTIVE` in the connection's task at
startup, and render.py, tags.py, colnames.py and sqlrewrite.py read it there, so no handler
passes it along.
"""
from __future__ import annotations

import contextvars
import json
from collections.abc import Sequence
from dataclasses import dataclass

import apsw

from sqld.edge import guc
from sqld.edge.pgwire import messages as m
from sqld.v1 import common_pb2

NAME = "sqld.sqlite_wire"
VALUE_OID = 0x53514C56  # "SQLV": a value tagged with its storage class
DECLTYPES = "sqld.decltypes"
TOTAL_CHANGES = "sqld.total_changes"
FRAME_NO = "sqld.frame_no"
CODE_FIELD, NAME_FIELD = b"x", b"y"


@dataclass
class Wire:
    """One connection's extension state: what it was last told, and its total changes."""
    last_decltypes: str | None = None
    total_changes: int = 0      # rows its statements and their triggers changed (sqlite3_total_changes)
    told_changes: int = 0
    frame_no: int = 0           # the replication frame number of its last write
    told_frame_no: int = 0


ACTIVE: contextvars.ContextVar[Wire | None] = contextvars.ContextVar("sqlite_wire", default=None)


def startup_option(params: dict[str, str], name: str) -> str | None:
    """A setting of the startup packet, given as a parameter or in libpq's `options` (-c name=value)."""
    if params.get(name):
        return params[name]
    return guc.startup_option(params.get("options", ""), name)


def wanted(params: dict[str, str]) -> bool:
    """Did the client ask for the extensions? ValueError for a value that is not on/off."""
    value = (startup_option(params, NAME) or "off").strip().lower()
    if value not in ("on", "off", "true", "false", "1", "0"):
        raise ValueError(f'invalid value for parameter "{NAME}": "{value}" (use on or off)')
    return value in ("on", "true", "1")


def value(v: common_pb2.Value) -> bytes | None:
    kind = v.WhichOneof("value")
    if kind == "integer":
        return b"i%d" % v.integer
    if kind == "text":
        return b"t" + v.text.encode()
    if kind == "real":
        return b"r" + repr(v.real).encode()
    if kind == "blob":
        return b"b" + v.blob
    return None


def decltypes_status(columns: Sequence[common_pb2.Column], wire: Wire) -> bytes:
    """The ParameterStatus to send before a RowDescription of `columns`, or b"" when unchanged."""
    text = json.dumps([c.decltype or None for c in columns])
    if text == wire.last_decltypes:
        return b""
    wire.last_decltypes = text
    return m.parameter_status(DECLTYPES, text)


def changes_status(wire: Wire) -> bytes:
    """The ParameterStatus `sqld.total_changes` and `sqld.frame_no` to send before ReadyForQuery,
    each only when it changed."""
    out = b""
    if wire.total_changes != wire.told_changes:
        wire.told_changes = wire.total_changes
        out += m.parameter_status(TOTAL_CHANGES, str(wire.total_changes))
    if wire.frame_no != wire.told_frame_no:
        wire.told_frame_no = wire.frame_no
        out += m.parameter_status(FRAME_NO, str(wire.frame_no))
    return out


def error_fields(code: int) -> bytes:
    """The ErrorResponse fields for SQLite's extended result code `code` (none when 0)."""
    if not code:
        return b""
    name = apsw.mapping_extended_result_codes.get(code) or apsw.mapping_result_codes.get(code & 0xFF) or "unknown"
    return CODE_FIELD + str(code).encode() + b"\x00" + NAME_FIELD + str(name).encode() + b"\x00"
