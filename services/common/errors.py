"""gRPC status → SQLSTATE: the one place where transport failures get a PostgreSQL name.

SQL errors never pass through here: they travel as StatementError data. This table is
for a peer that is down, a deadline that passed, a database that does not exist.
"""
from __future__ import annotations

import grpc

from sqld.v1 import common_pb2

BY_STATUS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: "57P03",          # cannot_connect_now: the peer is down or restarting
    grpc.StatusCode.DEADLINE_EXCEEDED: "57014",    # query_canceled
    grpc.StatusCode.CANCELLED: "57014",
    grpc.StatusCode.NOT_FOUND: "3D000",            # invalid_catalog_name: no such database
    grpc.StatusCode.RESOURCE_EXHAUSTED: "53300",   # too_many_connections
    grpc.StatusCode.INVALID_ARGUMENT: "08P01",     # protocol_violation
    grpc.StatusCode.FAILED_PRECONDITION: "55000",  # object_not_in_prerequisite_state
    grpc.StatusCode.ABORTED: "40001",              # serialization_failure
    grpc.StatusCode.UNIMPLEMENTED: "0A000",        # feature_not_supported
    grpc.StatusCode.PERMISSION_DENIED: "42501",    # insufficient_privilege
    grpc.StatusCode.UNAUTHENTICATED: "28000",      # invalid_authorization_specification
    grpc.StatusCode.ALREADY_EXISTS: "42P04",       # duplicate_database
    grpc.StatusCode.OUT_OF_RANGE: "22003",
    grpc.StatusCode.INTERNAL: "XX000",
    grpc.StatusCode.UNKNOWN: "XX000",
    grpc.StatusCode.DATA_LOSS: "XX001",
}


# transaction_resolution_unknown: a statement that could commit was sent, and its answer lost.
IN_DOUBT = "08007"


def sqlstate_for_status(code: grpc.StatusCode | None) -> str:
    return BY_STATUS.get(code, "XX000") if code is not None else "XX000"


def lost(code: grpc.StatusCode | None, message: str, in_doubt: bool) -> common_pb2.StatementError:
    """A call broke mid-statement. `in_doubt`: a COMMIT or an autocommit write had been sent,
    so it may have committed (08007, check before retrying); otherwise nothing committed for
    certain and the client may simply retry (the status's own SQLSTATE, such as 57P03)."""
    if in_doubt:
        return error(IN_DOUBT, f"{message}; the connection was lost after the statement was sent, so it may "
                     "or may not have committed: check before retrying")
    return error(sqlstate_for_status(code), f"{message}; the statement did not complete, retry")


def error(sqlstate: str, message: str, sqlite_code: int = 0) -> common_pb2.StatementError:
    return common_pb2.StatementError(sqlstate=sqlstate, message=message, sqlite_code=sqlite_code)


def from_rpc_error(exc: grpc.RpcError, operation: str) -> common_pb2.StatementError:
    """A StatementError for a failed call, its message starting with the operation."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return error(sqlstate_for_status(code), f"{operation}: {details}")
