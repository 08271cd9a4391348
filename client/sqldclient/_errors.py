"""sqlite3's exception hierarchy, and the one table from a server error to its class.

An error SQLite raised arrives with its extended result code and name (the ErrorResponse
fields `x` and `y` of the server's SQLite wire extension): the class is the one CPython's
sqlite3 picks for that code (Modules/_sqlite/util.c), and sqlite_errorcode/sqlite_errorname
are set. Other errors carry only a SQLSTATE: the class comes from the SQLSTATE the storage
service mapped SQLite's code to (services/sqld/storage/sqlite/errors.py), inverted.
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


# SQLite's primary result code → the class CPython's sqlite3 raises (Modules/_sqlite/util.c).
_BY_CODE: dict[int, type[Error]] = {
    2: InternalError, 12: InternalError,                      # INTERNAL, NOTFOUND
    11: DatabaseError,                                        # CORRUPT
    18: DataError,                                            # TOOBIG
    19: IntegrityError, 20: IntegrityError,                   # CONSTRAINT, MISMATCH
    21: InterfaceError, 25: InterfaceError,                   # MISUSE, RANGE
}
_OPERATIONAL = {1, 3, 4, 5, 6, 8, 9, 10, 13, 14, 15, 16, 17}  # ERROR, PERM, ABORT, BUSY, LOCKED, …
CODE_FIELD, NAME_FIELD = ord("x"), ord("y")  # the ErrorResponse fields of the SQLite wire extension


def code_class(code: int) -> type[Error]:
    primary = code & 0xFF
    if primary in _OPERATIONAL:
        return OperationalError
    return _BY_CODE.get(primary, DatabaseError)


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
    code = name = None
    if exc.pgresult is not None:
        raw_code, raw_name = exc.pgresult.error_field(CODE_FIELD), exc.pgresult.error_field(NAME_FIELD)
        code = int(raw_code) if raw_code else None
        name = raw_name.decode() if raw_name else None
    err = (code_class(code) if code else error_class(state))(message)
    err.sqlstate, err.sqlite_errorcode, err.sqlite_errorname = state, code, name
    return err
