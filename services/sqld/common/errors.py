"""gRPC status → SQLSTATE: the one place where transport failures get a PostgreSQL name.

SQL errors never pass through here: they travel as StatementError data. This table is
for a peer that is down, a deadline that passed, a database that does not exist.
"""
from __future__ import annotations

import grpc

from sqld.common import sqlstate
from sqld.v1 import common_pb2

BY_STATUS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: sqlstate.CANNOT_CONNECT_NOW,       # the peer is down or restarting
    grpc.StatusCode.DEADLINE_EXCEEDED: sqlstate.QUERY_CANCELED,
    grpc.StatusCode.CANCELLED: sqlstate.QUERY_CANCELED,
    grpc.StatusCode.NOT_FOUND: sqlstate.INVALID_CATALOG_NAME,       # no such database
    grpc.StatusCode.RESOURCE_EXHAUSTED: sqlstate.TOO_MANY_CONNECTIONS,
    grpc.StatusCode.INVALID_ARGUMENT: sqlstate.PROTOCOL_VIOLATION,
    grpc.StatusCode.FAILED_PRECONDITION: sqlstate.OBJECT_NOT_IN_PREREQUISITE_STATE,
    grpc.StatusCode.ABORTED: sqlstate.SERIALIZATION_FAILURE,
    grpc.StatusCode.UNIMPLEMENTED: sqlstate.FEATURE_NOT_SUPPORTED,
    grpc.StatusCode.PERMISSION_DENIED: sqlstate.INSUFFICIENT_PRIVILEGE,
    grpc.StatusCode.UNAUTHENTICATED: sqlstate.INVALID_AUTHORIZATION_SPECIFICATION,
    grpc.StatusCode.ALREADY_EXISTS: sqlstate.DUPLICATE_DATABASE,
    grpc.StatusCode.OUT_OF_RANGE: sqlstate.NUMERIC_VALUE_OUT_OF_RANGE,
    grpc.StatusCode.INTERNAL: sqlstate.INTERNAL_ERROR,
    grpc.StatusCode.UNKNOWN: sqlstate.INTERNAL_ERROR,
    grpc.StatusCode.DATA_LOSS: sqlstate.DATA_CORRUPTED,
}


def sqlstate_for_status(code: grpc.StatusCode | None) -> str:
    return BY_STATUS.get(code, sqlstate.INTERNAL_ERROR) if code is not None else sqlstate.INTERNAL_ERROR


def lost(code: grpc.StatusCode | None, message: str, in_doubt: bool) -> common_pb2.StatementError:
    """A call broke mid-statement. `in_doubt`: a COMMIT or an autocommit write had been sent,
    so it may have committed (transaction_resolution_unknown, check before retrying); otherwise
    nothing committed for certain and the client may simply retry (the status's own SQLSTATE,
    such as cannot_connect_now)."""
    if in_doubt:
        return error(sqlstate.TRANSACTION_RESOLUTION_UNKNOWN, f"{message}; the connection was lost after the statement was sent, so it may "
                     "or may not have committed: check before retrying")
    return error(sqlstate_for_status(code), f"{message}; the statement did not complete, retry")


def error(sqlstate: str, message: str, sqlite_code: int = 0) -> common_pb2.StatementError:
    return common_pb2.StatementError(sqlstate=sqlstate, message=message, sqlite_code=sqlite_code)


def from_rpc_error(exc: grpc.RpcError, operation: str) -> common_pb2.StatementError:
    """A StatementError for a failed call, its message starting with the operation."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return error(sqlstate_for_status(code), f"{operation}: {details}")
