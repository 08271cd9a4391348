"""What a caller's token lets a session do: which databases, and whether it may write.

A read-only token (claim a=ro) gets its database's pool behind `ReadOnlyPool`: asking for the
writer token fails at once with 25006 (read_only_sql_transaction, as a read-only transaction
and time travel answer), and every statement goes to storage flagged read-only, so SQLite
itself refuses any statement that would write (sqlite3_stmt_readonly), whatever the scheduler's
classifier thought of it. The refusal is a StatementError (data), never a gRPC status.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from sqld.common import sqlstate
from sqld.common.sqlstate import SqlError
from sqld.common.tokens import TokenError, Verifier
from sqld.scheduler.pool import DatabasePool
from sqld.scheduler.storage_client import StorageConnection
from sqld.v1 import common_pb2


class ReadOnlyConnection:
    """A storage connection whose every batch runs read-only."""

    def __init__(self, inner: StorageConnection) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def execute(self, statements: Sequence[common_pb2.Statement], read_only: bool,
                      *args: Any, **kwargs: Any) -> list[common_pb2.StatementResult]:
        return await self.inner.execute(statements, True, *args, **kwargs)


class ReadOnlyPool:
    """A database pool as a read-only token sees it."""

    def __init__(self, inner: DatabasePool) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def acquire_writer(self) -> None:
        raise SqlError(sqlstate.READ_ONLY_SQL_TRANSACTION, f"cannot write to database {self.inner.name}: "
                   "this session's token grants read-only access")

    async def acquire(self) -> ReadOnlyConnection:
        return ReadOnlyConnection(await self.inner.acquire())

    def release(self, conn: ReadOnlyConnection, reuse: bool = True) -> None:
        self.inner.release(conn.inner, reuse)


async def require_operator(verifier: Verifier | None, context: grpc.aio.ServicerContext, what: str) -> None:
    """The operators' APIs (DatabaseAdmin, SessionAdmin) want a token that may write to every
    database: else UNAUTHENTICATED (no valid token) or PERMISSION_DENIED naming `what`."""
    if verifier is None:
        return
    try:
        claims = verifier.from_metadata(context.invocation_metadata())
    except TokenError as exc:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        return
    if claims.read_only or claims.databases is not None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{what} needs a token that may write to every database")
