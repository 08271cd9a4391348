"""sqlite3's exception hierarchy, and the one table from a server error to its class.

The server sends a SQLSTATE, not SQLite's result code (that needs server support, #14 item 4),
so the class is chosen from the SQLSTATE the storage service mapped SQLite's code to
(services/storage/sqlite/errors.py), inverted here the way CPython's sqlite3 picks a class
for each SQLite code (Modules/_sqlite/util.c).
"""
from __future__ import annotations

import psycopg


class Warning(Exception):  # noqa: A001 - DB-API name
    pass


class Error(Exception):
    sqlite_errorcode: int | None = None
    sqlite_errorname: str | None = None
    sqlstate: str | None = None


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


# SQLSTATE (exact, then its class of two characters) → the class sqlite3 raises for the SQLite
# code storage turned into that SQLSTATE. Anything else is OperationalError, as for SQLITE_ERROR.
_BY_STATE: dict[str, type[Error]] = {
    "42804": IntegrityError,   # SQLITE_MISMATCH, SQLITE_CONSTRAINT_DATATYPE
    "54000": DataError,        # SQLITE_TOOBIG
    "XX001": DatabaseError,    # SQLITE_CORRUPT, SQLITE_NOTADB
    "22023": InterfaceError,   # SQLITE_RANGE
    "XX000": InternalError,    # SQLITE_INTERNAL
}
_BY_CLASS: dict[str, type[Error]] = {
    "23": IntegrityError,      # SQLITE_CONSTRAINT_*
}


def error_class(sqlstate: str | None) -> type[Error]:
    if not sqlstate:
        return OperationalError
    return _BY_STATE.get(sqlstate) or _BY_CLASS.get(sqlstate[:2]) or OperationalError


def translate(exc: psycopg.Error) -> Error:
    """The sqlite3 exception for a psycopg one; the caller raises it `from exc`."""
    if isinstance(exc, psycopg.OperationalError) and not exc.sqlstate:
        return OperationalError(str(exc).strip() or "connection failed")  # a socket or login problem
    state = exc.sqlstate
    message = exc.diag.message_primary or str(exc)
    if state == "57014":
        message = "interrupted"  # sqlite3's text for SQLITE_INTERRUPT
    err = error_class(state)(message)
    err.sqlstate = state
    return err
