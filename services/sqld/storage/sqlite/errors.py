"""SQLite errors → PostgreSQL SQLSTATE: the one mapping table of this boundary.

Extended result codes decide first; SQLITE_ERROR (the generic code) is refined by its
message, since SQLite reports syntax, missing tables and missing columns all as code 1.
A refusal by the SQL guard (storage.sqlite.guard) is SQLITE_AUTH: 42501, with the guard's
reason as the message instead of SQLite's bare "not authorized".
"""
from __future__ import annotations

import logging

import apsw

from sqld.common import sqlstate
from sqld.v1 import common_pb2

log = logging.getLogger(__name__)

# Extended (and primary) result codes → SQLSTATE. Extended codes are looked up first.
BY_CODE: dict[int, str] = {
    apsw.SQLITE_CONSTRAINT_UNIQUE: sqlstate.UNIQUE_VIOLATION,
    apsw.SQLITE_CONSTRAINT_PRIMARYKEY: sqlstate.UNIQUE_VIOLATION,
    apsw.SQLITE_CONSTRAINT_NOTNULL: sqlstate.NOT_NULL_VIOLATION,
    apsw.SQLITE_CONSTRAINT_FOREIGNKEY: sqlstate.FOREIGN_KEY_VIOLATION,
    apsw.SQLITE_CONSTRAINT_CHECK: sqlstate.CHECK_VIOLATION,
    apsw.SQLITE_CONSTRAINT_DATATYPE: sqlstate.DATATYPE_MISMATCH,  # STRICT tables
    apsw.SQLITE_CONSTRAINT_TRIGGER: sqlstate.INTEGRITY_CONSTRAINT_VIOLATION,  # RAISE(ABORT, ...)
    apsw.SQLITE_CONSTRAINT: sqlstate.INTEGRITY_CONSTRAINT_VIOLATION,
    apsw.SQLITE_BUSY_SNAPSHOT: sqlstate.SERIALIZATION_FAILURE,  # another writer committed after this read began
    64010: sqlstate.SERIALIZATION_FAILURE,  # IOERR | 250<<8: mvsqlite page-level conflict at commit (storage/mvsqlite/vfs.py)
    apsw.SQLITE_BUSY: sqlstate.LOCK_NOT_AVAILABLE,
    apsw.SQLITE_LOCKED: sqlstate.LOCK_NOT_AVAILABLE,
    apsw.SQLITE_READONLY: sqlstate.READ_ONLY_SQL_TRANSACTION,
    apsw.SQLITE_INTERRUPT: sqlstate.QUERY_CANCELED,
    apsw.SQLITE_TOOBIG: sqlstate.PROGRAM_LIMIT_EXCEEDED,
    apsw.SQLITE_FULL: sqlstate.DISK_FULL,
    apsw.SQLITE_NOMEM: sqlstate.OUT_OF_MEMORY,
    apsw.SQLITE_IOERR: sqlstate.IO_ERROR,
    apsw.SQLITE_CORRUPT: sqlstate.DATA_CORRUPTED,
    apsw.SQLITE_NOTADB: sqlstate.DATA_CORRUPTED,
    apsw.SQLITE_MISMATCH: sqlstate.DATATYPE_MISMATCH,
    apsw.SQLITE_AUTH: sqlstate.INSUFFICIENT_PRIVILEGE,
    apsw.SQLITE_RANGE: sqlstate.INVALID_PARAMETER_VALUE,
    apsw.SQLITE_ABORT: sqlstate.QUERY_CANCELED,
}

# SQLITE_ERROR messages → SQLSTATE, by substring, first match wins.
BY_MESSAGE: list[tuple[str, str]] = [
    ("no such table", sqlstate.UNDEFINED_TABLE),
    ("no such view", sqlstate.UNDEFINED_TABLE),
    ("no such column", sqlstate.UNDEFINED_COLUMN),
    ("no such function", sqlstate.UNDEFINED_FUNCTION),
    ("no such index", sqlstate.UNDEFINED_OBJECT),
    ("no such trigger", sqlstate.UNDEFINED_OBJECT),
    ("no such collation", sqlstate.UNDEFINED_OBJECT),
    ("no such savepoint", sqlstate.INVALID_SAVEPOINT_SPECIFICATION),
    ("already exists", sqlstate.DUPLICATE_TABLE),
    ("syntax error", sqlstate.SYNTAX_ERROR),
    ("incomplete input", sqlstate.SYNTAX_ERROR),
    ("unrecognized token", sqlstate.SYNTAX_ERROR),
    ("wrong number of arguments", sqlstate.UNDEFINED_FUNCTION),
    ("ambiguous column name", sqlstate.AMBIGUOUS_COLUMN),
    ("cannot start a transaction within a transaction", sqlstate.ACTIVE_SQL_TRANSACTION),
    ("cannot commit - no transaction is active", sqlstate.NO_ACTIVE_SQL_TRANSACTION),
    ("cannot rollback - no transaction is active", sqlstate.NO_ACTIVE_SQL_TRANSACTION),
    ("too many sql variables", sqlstate.TOO_MANY_ARGUMENTS),
    ("values were supplied", sqlstate.SYNTAX_ERROR),
    ("has no column named", sqlstate.UNDEFINED_COLUMN),
    ("not authorized", sqlstate.INSUFFICIENT_PRIVILEGE),
    ("may not be modified", sqlstate.INSUFFICIENT_PRIVILEGE),  # sqlite_schema and shadow tables (the guard's DEFENSIVE)
    ("unsafe use of", sqlstate.INSUFFICIENT_PRIVILEGE),        # a non-innocuous function in a view/trigger (TRUSTED_SCHEMA off)
    ("division by zero", sqlstate.DIVISION_BY_ZERO),
    ("integer overflow", sqlstate.NUMERIC_VALUE_OUT_OF_RANGE),
    ("malformed json", sqlstate.INVALID_TEXT_REPRESENTATION),
]

# An SQLITE_ERROR we have no better name for: a statement SQLite refused.
GENERIC_SQLITE_ERROR = sqlstate.SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION


def sqlstate_for(code: int, message: str) -> str:
    """The SQLSTATE for a SQLite extended result code and its message."""
    if code in BY_CODE:
        return BY_CODE[code]
    primary = code & 0xFF
    if primary == apsw.SQLITE_ERROR:
        low = message.lower()
        for needle, state in BY_MESSAGE:
            if needle in low:
                return state
        return GENERIC_SQLITE_ERROR
    if primary in BY_CODE:
        return BY_CODE[primary]
    log.error("unmapped sqlite result code=%d message=%s", code, message)
    return sqlstate.INTERNAL_ERROR


def to_error(exc: BaseException, denied: str | None = None) -> common_pb2.StatementError:
    """A statement error for an exception raised while running SQL; `denied` is the SQL
    guard's reason when it refused part of the statement."""
    if isinstance(exc, apsw.BindingsError):
        return common_pb2.StatementError(sqlstate=sqlstate.PROTOCOL_VIOLATION, message=f"bind: {exc}")
    if isinstance(exc, apsw.InterruptError):
        # Raised by SQLite, or by us between result parts (a constructed one carries no code).
        return common_pb2.StatementError(sqlite_code=apsw.SQLITE_INTERRUPT, sqlstate=sqlstate.QUERY_CANCELED,
                                         message=str(exc) or "interrupted")
    if isinstance(exc, apsw.Error):
        code = getattr(exc, "extendedresult", None) or getattr(exc, "result", None) or 1
        message = str(exc)
        if denied is not None and (code & 0xFF == apsw.SQLITE_AUTH or "not authorized" in message):
            return common_pb2.StatementError(sqlite_code=apsw.SQLITE_AUTH, sqlstate=sqlstate.INSUFFICIENT_PRIVILEGE,
                                             message=denied)
        return common_pb2.StatementError(sqlite_code=code, sqlstate=sqlstate_for(code, message),
                                         message=message)
    if isinstance(exc, (TypeError, ValueError, OverflowError)):
        return common_pb2.StatementError(sqlstate=sqlstate.INVALID_PARAMETER_VALUE,
                                         message=f"bad parameter: {exc}")
    log.exception("unexpected error while executing a statement", exc_info=exc)
    return common_pb2.StatementError(sqlstate=sqlstate.INTERNAL_ERROR, message=f"internal error: {exc}")
