"""PostgreSQL SQLSTATE codes by name, and the one exception type that carries one.

Code outside this module names a condition (`sqlstate.QUERY_CANCELED`), never its five
characters, so a reader sees what went wrong and a grep finds every place that says so.
The names are PostgreSQL's own condition names (Appendix A of its manual), upper-cased.
Two tables map foreign errors onto these: storage/sqlite/errors.py (SQLite result codes)
and common/errors.py (gRPC status codes).
"""
from __future__ import annotations

from sqld.v1 import common_pb2

# Class 01: warning
WARNING = "01000"
# Class 08: connection exception
CONNECTION_FAILURE = "08006"
TRANSACTION_RESOLUTION_UNKNOWN = "08007"   # a statement that could commit was sent, its answer lost
PROTOCOL_VIOLATION = "08P01"
# Class 0A: feature not supported
FEATURE_NOT_SUPPORTED = "0A000"
# Class 22: data exception
NUMERIC_VALUE_OUT_OF_RANGE = "22003"
DIVISION_BY_ZERO = "22012"
CHARACTER_NOT_IN_REPERTOIRE = "22021"
INVALID_PARAMETER_VALUE = "22023"
INVALID_TEXT_REPRESENTATION = "22P02"
INVALID_BINARY_REPRESENTATION = "22P03"
BAD_COPY_FILE_FORMAT = "22P04"
# Class 23: integrity constraint violation
INTEGRITY_CONSTRAINT_VIOLATION = "23000"
NOT_NULL_VIOLATION = "23502"
FOREIGN_KEY_VIOLATION = "23503"
UNIQUE_VIOLATION = "23505"
CHECK_VIOLATION = "23514"
# Class 25: invalid transaction state
ACTIVE_SQL_TRANSACTION = "25001"
READ_ONLY_SQL_TRANSACTION = "25006"
NO_ACTIVE_SQL_TRANSACTION = "25P01"
IN_FAILED_SQL_TRANSACTION = "25P02"
IDLE_IN_TRANSACTION_SESSION_TIMEOUT = "25P03"
TRANSACTION_TIMEOUT = "25P04"
# Class 26: invalid SQL statement name
INVALID_SQL_STATEMENT_NAME = "26000"
# Class 28: invalid authorization specification
INVALID_AUTHORIZATION_SPECIFICATION = "28000"
INVALID_PASSWORD = "28P01"
# Class 34: invalid cursor name
INVALID_CURSOR_NAME = "34000"
# Class 3B: savepoint exception
INVALID_SAVEPOINT_SPECIFICATION = "3B001"
# Class 3D: invalid catalog name
INVALID_CATALOG_NAME = "3D000"
# Class 40: transaction rollback
SERIALIZATION_FAILURE = "40001"
# Class 42: syntax error or access rule violation
SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION = "42000"
SYNTAX_ERROR = "42601"
INSUFFICIENT_PRIVILEGE = "42501"
UNDEFINED_COLUMN = "42703"
AMBIGUOUS_COLUMN = "42702"
UNDEFINED_OBJECT = "42704"
DATATYPE_MISMATCH = "42804"
UNDEFINED_FUNCTION = "42883"
UNDEFINED_TABLE = "42P01"
NAME_TOO_LONG = "42622"
INVALID_NAME = "42602"
DUPLICATE_CURSOR = "42P03"
DUPLICATE_DATABASE = "42P04"
DUPLICATE_PREPARED_STATEMENT = "42P05"
DUPLICATE_TABLE = "42P07"
INVALID_COLUMN_REFERENCE = "42P10"
# Class 53: insufficient resources
INSUFFICIENT_RESOURCES = "53000"
OUT_OF_MEMORY = "53200"
DISK_FULL = "53100"
TOO_MANY_CONNECTIONS = "53300"
# Class 54: program limit exceeded
PROGRAM_LIMIT_EXCEEDED = "54000"
TOO_MANY_ARGUMENTS = "54023"
# Class 55: object not in prerequisite state
OBJECT_NOT_IN_PREREQUISITE_STATE = "55000"
LOCK_NOT_AVAILABLE = "55P03"
OBJECT_IN_USE = "55006"
CANT_CHANGE_RUNTIME_PARAM = "55P02"
# Class 57: operator intervention
QUERY_CANCELED = "57014"
ADMIN_SHUTDOWN = "57P01"
CANNOT_CONNECT_NOW = "57P03"
# Class 58: system error (errors external to the server)
SYSTEM_ERROR = "58000"
IO_ERROR = "58030"
# Class XX: internal error
INTERNAL_ERROR = "XX000"
DATA_CORRUPTED = "XX001"


class SqlError(Exception):
    """An error a client should see as an ErrorResponse: a SQLSTATE and a message.

    Raise it anywhere below a handler; the handler turns it into the wire message (edge) or a
    StatementError (scheduler, storage). `fatal` ends the client's session after the error.
    """

    def __init__(self, sqlstate: str, message: str, *, sqlite_code: int = 0, fatal: bool = False) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.sqlite_code = sqlite_code
        self.fatal = fatal

    def to_proto(self) -> common_pb2.StatementError:
        return common_pb2.StatementError(sqlstate=self.sqlstate, message=self.message, sqlite_code=self.sqlite_code)

    @classmethod
    def from_proto(cls, err: common_pb2.StatementError) -> SqlError:
        return cls(err.sqlstate, err.message, sqlite_code=err.sqlite_code)

    def __repr__(self) -> str:
        return f"SqlError({self.sqlstate}, {self.message!r})"
