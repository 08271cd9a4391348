"""SQLite errors → PostgreSQL SQLSTATE: the one mapping table of this boundary.

Extended result codes decide first; SQLITE_ERROR (the generic code) is refined by its
message, since SQLite reports syntax, missing tables and missing columns all as code 1.
A refusal by the SQL guard (storage.sqlite.guard) is SQLITE_AUTH: 42501, with the guard's
reason as the message instead of SQLite's bare "not authorized".
"""
from __future__ import annotations

import logging

import apsw

from sqld.v1 import common_pb2

log = logging.getLogger(__name__)

# Extended (and primary) result codes → SQLSTATE. Extended codes are looked up first.
BY_CODE: dict[int, str] = {
    2067: "23505",  # SQLITE_CONSTRAINT_UNIQUE
    1555: "23505",  # SQLITE_CONSTRAINT_PRIMARYKEY
    1299: "23502",  # SQLITE_CONSTRAINT_NOTNULL
    787: "23503",   # SQLITE_CONSTRAINT_FOREIGNKEY
    275: "23514",   # SQLITE_CONSTRAINT_CHECK
    3091: "42804",  # SQLITE_CONSTRAINT_DATATYPE (STRICT tables)
    1811: "23000",  # SQLITE_CONSTRAINT_TRIGGER (RAISE(ABORT, ...))
    19: "23000",    # SQLITE_CONSTRAINT
    517: "40001",   # SQLITE_BUSY_SNAPSHOT: another writer committed after this read began
    64010: "40001",  # IOERR | 250<<8: mvsqlite page-level conflict at commit (storage/mvsqlite/vfs.py)
    5: "55P03",     # SQLITE_BUSY
    6: "55P03",     # SQLITE_LOCKED
    8: "25006",     # SQLITE_READONLY
    9: "57014",     # SQLITE_INTERRUPT
    18: "54000",    # SQLITE_TOOBIG
    13: "53100",    # SQLITE_FULL
    7: "53200",     # SQLITE_NOMEM
    10: "58030",    # SQLITE_IOERR
    11: "XX001",    # SQLITE_CORRUPT
    26: "XX001",    # SQLITE_NOTADB
    20: "42804",    # SQLITE_MISMATCH
    23: "42501",    # SQLITE_AUTH
    25: "22023",    # SQLITE_RANGE
    4: "57014",     # SQLITE_ABORT
}

# SQLITE_ERROR messages → SQLSTATE, by substring, first match wins.
BY_MESSAGE: list[tuple[str, str]] = [
    ("no such table", "42P01"),
    ("no such view", "42P01"),
    ("no such column", "42703"),
    ("no such function", "42883"),
    ("no such index", "42704"),
    ("no such trigger", "42704"),
    ("no such collation", "42704"),
    ("no such savepoint", "3B001"),
    ("already exists", "42P07"),
    ("syntax error", "42601"),
    ("incomplete input", "42601"),
    ("unrecognized token", "42601"),
    ("wrong number of arguments", "42883"),
    ("ambiguous column name", "42702"),
    ("cannot start a transaction within a transaction", "25001"),
    ("cannot commit - no transaction is active", "25P01"),
    ("cannot rollback - no transaction is active", "25P01"),
    ("too many sql variables", "54023"),
    ("values were supplied", "42601"),
    ("has no column named", "42703"),
    ("not authorized", "42501"),
    ("may not be modified", "42501"),  # sqlite_schema and shadow tables (the guard's DEFENSIVE)
    ("unsafe use of", "42501"),        # a non-innocuous function in a view/trigger (TRUSTED_SCHEMA off)
    ("division by zero", "22012"),
    ("integer overflow", "22003"),
    ("malformed json", "22P02"),
]

GENERIC_SQLITE_ERROR = "42000"  # an SQLITE_ERROR we have no better name for: a statement SQLite refused


def sqlstate_for(code: int, message: str) -> str:
    """The SQLSTATE for a SQLite extended result code and its message."""
    if code in BY_CODE:
        return BY_CODE[code]
    primary = code & 0xFF
    if primary == 1:  # SQLITE_ERROR
        low = message.lower()
        for needle, state in BY_MESSAGE:
            if needle in low:
                return state
        return GENERIC_SQLITE_ERROR
    if primary in BY_CODE:
        return BY_CODE[primary]
    log.error("unmapped sqlite result code=%d message=%s", code, message)
    return "XX000"


SQLITE_AUTH = 23


def to_error(exc: BaseException, denied: str | None = None) -> common_pb2.StatementError:
    """A statement error for an exception raised while running SQL; `denied` is the SQL
    guard's reason when it refused part of the statement."""
    if isinstance(exc, apsw.BindingsError):
        return common_pb2.StatementError(sqlstate="08P01", message=f"bind: {exc}")
    if isinstance(exc, apsw.InterruptError):
        # Raised by SQLite, or by us between result parts (a constructed one carries no code).
        return common_pb2.StatementError(sqlite_code=9, sqlstate="57014", message=str(exc) or "interrupted")
    if isinstance(exc, apsw.Error):
        code = getattr(exc, "extendedresult", None) or getattr(exc, "result", None) or 1
        message = str(exc)
        if denied is not None and (code & 0xFF == SQLITE_AUTH or "not authorized" in message):
            return common_pb2.StatementError(sqlite_code=SQLITE_AUTH, sqlstate="42501", message=denied)
        return common_pb2.StatementError(sqlite_code=code, sqlstate=sqlstate_for(code, message),
                                         message=message)
    if isinstance(exc, (TypeError, ValueError, OverflowError)):
        return common_pb2.StatementError(sqlstate="22023", message=f"bad parameter: {exc}")
    log.exception("unexpected error while executing a statement", exc_info=exc)
    return common_pb2.StatementError(sqlstate="XX000", message=f"internal error: {exc}")
