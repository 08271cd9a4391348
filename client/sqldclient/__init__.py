"""sqldclient: Python's sqlite3 interface to a sqld-py server (`import sqldclient as sqlite3`).

Statements run on the server's SQLite through its PostgreSQL wire protocol edge; values come
back as SQLite's storage classes. What needs SQLite in this process (user functions, blobs,
backups, extensions) raises NotSupportedError.
"""
from __future__ import annotations

import sqlite3 as _local
from typing import Any

from . import _connection, _sqltext
from ._connection import Connection, connect
from ._cursor import PARSE_COLNAMES, PARSE_DECLTYPES, Cursor, Row
from ._errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
)
from ._types import (
    Binary,
    Date,
    DateFromTicks,
    PrepareProtocol,
    Time,
    TimeFromTicks,
    Timestamp,
    TimestampFromTicks,
    adapters,
    converters,
    register_adapter,
    register_converter,
)
from ._types import adapt_value as adapt

__all__ = [
    "Binary", "Connection", "Cursor", "DataError", "DatabaseError", "Date", "DateFromTicks", "Error",
    "IntegrityError", "InterfaceError", "InternalError", "NotSupportedError", "OperationalError",
    "PARSE_COLNAMES", "PARSE_DECLTYPES", "PrepareProtocol", "ProgrammingError", "Row", "Time",
    "TimeFromTicks", "Timestamp", "TimestampFromTicks", "Warning", "adapt", "adapters", "complete_statement",
    "connect", "converters", "register_adapter", "register_converter",
]

apilevel = "2.0"
threadsafety = 1  # connections may not be shared between threads (check_same_thread)
paramstyle = "qmark"
version = "2.6.0"
version_info = (2, 6, 0)

complete_statement = _sqltext.complete_statement


def __getattr__(name: str) -> Any:
    """sqlite_version is the server's SQLite once a connection is made (the local one before)."""
    if name in ("sqlite_version", "sqlite_version_info"):
        text = _connection.server_version or _local.sqlite_version
        return text if name == "sqlite_version" else tuple(int(p) for p in text.split("."))
    raise AttributeError(f"module 'sqldclient' has no attribute {name!r}")


def enable_callback_tracebacks(flag: bool, /) -> None:
    pass
