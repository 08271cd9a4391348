"""The edge's side of a scheduler session: one bidirectional stream per client connection."""
from __future__ import annotations

import asyncio
import itertools
from typing import Callable, Sequence

import grpc

from common import errors
from sqld.v1 import common_pb2, query_pb2, query_pb2_grpc


class SessionEnded(Exception):
    """The scheduler ended the session (or could not start it); `error` says why."""

    def __init__(self, error: common_pb2.StatementError) -> None:
        super().__init__(error.message)
        self.error = error


class SchedulerSession:
    """Sends batches and receives their results; reports a server-side close via `on_closed`."""

    def __init__(self, stub: query_pb2_grpc.QueryServiceStub,
                 on_closed: Callable[[common_pb2.StatementError], None]) -> None:
        self._stub = stub
        self._on_closed = on_closed
        self._call: grpc.aio.StreamStreamCall | None = None
        self._ids = itertools.count(1)
        self._waiting: asyncio.Future | None = None
        self._reader: asyncio.Task | None = None
        self._ended: common_pb2.StatementError | None = None
        self._closing = False

    async def open(self, database: str, user: str, application_name: str,
                   read_at: common_pb2.ReadAt | None = None) -> None:
        self._call = self._stub.Session()
        try:
            await self._call.write(query_pb2.SessionRequest(open=query_pb2.OpenSession(
                database=database, user=user, application_name=application_name, read_at=read_at)))
            resp = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise SessionEnded(errors.from_rpc_error(exc, "open session")) from exc
        if resp is grpc.aio.EOF or resp.WhichOneof("kind") != "opened":
            raise SessionEnded(errors.error("08006", "open session: the scheduler closed the stream"))
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._call is not None
        try:
            while (resp := await self._call.read()) is not grpc.aio.EOF:
                kind = resp.WhichOneof("kind")
                if kind == "result":
                    if self._waiting is not None and not self._waiting.done():
                        self._waiting.set_result(resp.result)
                elif kind == "closed":
                    self._ended = resp.closed.reason
                    break
            if self._ended is None:
                self._ended = errors.error("57P01", "terminating connection: the scheduler ended the session")
        except grpc.aio.AioRpcError as exc:
            self._ended = errors.from_rpc_error(exc, "session")
        except asyncio.CancelledError:
            self._ended = errors.error("57P01", "terminating connection: session closed")
            raise
        finally:
            if self._waiting is not None and not self._waiting.done():
                self._waiting.set_exception(SessionEnded(self._ended))  # type: ignore[arg-type]
            elif self._ended is not None and not self._closing:
                self._on_closed(self._ended)

    async def run(self, statements: Sequence[common_pb2.Statement], implicit_transaction: bool,
                  describe_only: bool = False, fail_transaction: bool = False) -> query_pb2.BatchResult:
        if self._ended is not None or self._call is None:
            raise SessionEnded(self._ended or errors.error("08006", "session is not open"))
        batch_id = next(self._ids)
        self._waiting = asyncio.get_running_loop().create_future()
        try:
            await self._call.write(query_pb2.SessionRequest(batch=query_pb2.Batch(
                id=batch_id, statements=statements, implicit_transaction=implicit_transaction,
                describe_only=describe_only, fail_transaction=fail_transaction)))
        except grpc.aio.AioRpcError as exc:
            raise SessionEnded(errors.from_rpc_error(exc, "session")) from exc
        try:
            return await self._waiting
        finally:
            self._waiting = None

    async def cancel(self) -> None:
        if self._call is not None and self._ended is None:
            try:
                await self._call.write(query_pb2.SessionRequest(cancel=query_pb2.Cancel()))
            except grpc.aio.AioRpcError:
                pass

    async def close(self) -> None:
        self._closing = True
        if self._call is not None:
            try:
                # Half-close: the scheduler rolls back and ends the stream; the reader then stops.
                await self._call.done_writing()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                self._call.cancel()
