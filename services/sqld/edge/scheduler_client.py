"""The edge's side of a scheduler session: one stream per client connection, on the stream
every session shares (common.mux).

A batch's answer is its ResultParts (a large result, common.proto) and then its BatchResult.
They pass from the stream reader to the batch through a queue of PARTS_AHEAD: when the client
socket is slow the reader stops reading, the stream's flow control stops the scheduler, and storage
stops stepping the statement.
"""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence

import grpc

from sqld.common import errors, mux, sqlstate
from sqld.v1 import common_pb2, query_pb2

PARTS_AHEAD = 4  # parts received and not yet written to the client (~1 MiB)

PartSink = Callable[[common_pb2.ResultPart], Awaitable[None]]


class SessionEnded(Exception):
    """The scheduler ended the session (or could not start it); `error` says why."""

    def __init__(self, error: common_pb2.StatementError) -> None:
        super().__init__(error.message)
        self.error = error


class SchedulerSession:
    """Sends batches and receives their results; reports a server-side close via `on_closed`."""

    def __init__(self, sessions: mux.Channel,
                 on_closed: Callable[[common_pb2.StatementError], None]) -> None:
        self._sessions = sessions
        self._on_closed = on_closed
        self._call: mux.Stream | None = None
        self._ids = itertools.count(1)
        self._answers: asyncio.Queue = asyncio.Queue(PARTS_AHEAD)  # parts, then the BatchResult
        self._running = False
        self._broken = False  # a batch ended before its BatchResult was read
        self._reader: asyncio.Task | None = None
        self._ended: common_pb2.StatementError | None = None
        self._closing = False
        self.pid = 0  # the scheduler's process id for this session (SessionOpened.pid)

    async def open(self, database: str, user: str, application_name: str,
                   read_at: common_pb2.ReadAt | None = None, client: tuple[str, int] = ("", 0),
                   cancel_key: int = 0) -> None:
        self._call = self._sessions.stream()
        try:
            await self._call.write(query_pb2.SessionRequest(open=query_pb2.OpenSession(
                database=database, user=user, application_name=application_name, read_at=read_at,
                client_addr=client[0], client_port=client[1], cancel_key=cancel_key)))
            resp = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            raise SessionEnded(errors.from_rpc_error(exc, "open session")) from exc
        if resp is grpc.aio.EOF or resp.WhichOneof("kind") != "opened":
            raise SessionEnded(errors.error(sqlstate.CONNECTION_FAILURE,
                                            "open session: the scheduler closed the stream"))
        self.pid = resp.opened.pid
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._call is not None
        try:
            while (resp := await self._call.read()) is not grpc.aio.EOF:
                kind = resp.WhichOneof("kind")
                if kind == "result":
                    await self._answers.put(resp.result)
                elif kind == "part":
                    await self._answers.put(resp.part)
                elif kind == "closed":
                    self._ended = resp.closed.reason
                    break
            if self._ended is None:
                self._ended = errors.error(sqlstate.ADMIN_SHUTDOWN,
                                           "terminating connection: the scheduler ended the session")
        except grpc.aio.AioRpcError as exc:
            self._ended = errors.from_rpc_error(exc, "session")
        except asyncio.CancelledError:
            self._ended = errors.error(sqlstate.ADMIN_SHUTDOWN, "terminating connection: session closed")
            raise
        finally:
            if self._running:
                while self._answers.full():  # the batch is gone with the session
                    self._answers.get_nowait()
                self._answers.put_nowait(SessionEnded(self._ended or errors.error(
                    sqlstate.ADMIN_SHUTDOWN, "terminating connection: the scheduler ended the session")))
            elif self._ended is not None and not self._closing:
                self._on_closed(self._ended)

    async def run(self, statements: Sequence[common_pb2.Statement], implicit_transaction: bool,
                  describe_only: bool = False, fail_transaction: bool = False,
                  on_part: PartSink | None = None, query: str = "") -> query_pb2.BatchResult:
        """Run a batch: its ResultParts are awaited in `on_part` as they come (a caller without
        one gets none: it must only send batches without large results), then its result."""
        if self._ended is not None or self._call is None:
            raise SessionEnded(self._ended or errors.error(sqlstate.CONNECTION_FAILURE, "session is not open"))
        batch_id = next(self._ids)
        self._running = True
        try:
            await self._call.write(query_pb2.SessionRequest(batch={  # a dict: the statements copied once
                "id": batch_id, "statements": statements, "implicit_transaction": implicit_transaction,
                "describe_only": describe_only, "fail_transaction": fail_transaction, "query": query}))
            while True:
                answer = await self._answers.get()
                if isinstance(answer, SessionEnded):
                    raise answer
                if isinstance(answer, query_pb2.BatchResult):
                    return answer
                if on_part is not None:
                    await on_part(answer)
        except grpc.aio.AioRpcError as exc:
            self._broken = True
            raise SessionEnded(errors.from_rpc_error(exc, "session")) from exc
        except asyncio.InvalidStateError as exc:
            # The scheduler ended the stream (e.g. pg_terminate_backend) as this batch was sent,
            # before the reader saw why: the reason it reads, or 57P01.
            self._broken = True
            if self._reader is not None:
                await asyncio.wait([self._reader], timeout=1.0)
            raise SessionEnded(self._ended or errors.error(
                sqlstate.ADMIN_SHUTDOWN, "terminating connection: the scheduler ended the session")) from exc
        except BaseException:
            self._broken = True  # e.g. the client went away while its rows streamed
            raise
        finally:
            self._running = False

    async def cancel(self) -> None:
        if self._call is not None and self._ended is None:
            try:
                await self._call.write(query_pb2.SessionRequest(cancel=query_pb2.Cancel()))
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass  # the session has ended: nothing left to cancel

    async def update(self, application_name: str) -> None:
        """Tell the scheduler what pg_stat_activity shows now (SessionUpdate)."""
        if self._call is not None and self._ended is None and not self._closing:
            try:
                await self._call.write(query_pb2.SessionRequest(update=query_pb2.SessionUpdate(
                    application_name=application_name)))
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass  # the session is ending: nothing left to show

    async def close(self) -> None:
        self._closing = True
        if self._call is not None and self._broken:
            # A batch was left midway: its answer would never be read, so end the call (the
            # scheduler stops the statement and rolls back) instead of waiting on it.
            self._call.cancel()
        elif self._call is not None:
            try:
                # Half-close: the scheduler rolls back and ends the stream; the reader then stops.
                await self._call.done_writing()
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                self._call.cancel()
