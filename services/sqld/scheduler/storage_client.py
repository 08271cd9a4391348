"""Client side of the storage API: one StorageConnection per stream on the stream every
connection to one storage process shares (common.mux, Storage.Multiplex)."""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence

import grpc

from sqld.common import mux
from sqld.v1 import common_pb2, storage_pb2

PartSink = Callable[[common_pb2.ResultPart], Awaitable[None]]


class StorageUnavailable(Exception):
    """The storage stream failed; the connection (and any transaction on it) is gone.

    `sent`: the request had been sent when the stream broke, so storage may have run it
    (and committed it); otherwise it certainly did not run."""

    def __init__(self, code: grpc.StatusCode | None, message: str, sent: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.sent = sent


class StorageConnection:
    """One SQLite connection inside the storage service. One call at a time."""

    def __init__(self, connections: mux.Channel, database: str,
                 read_at: common_pb2.ReadAt | None = None) -> None:
        self._connections = connections
        self.database = database
        self.read_at = read_at
        self._call: mux.Stream | None = None
        self._ids = itertools.count(1)
        self.in_transaction = False
        self.frame_no = 0             # from the last Executed
        self.not_caught_up = False    # the last Execute was refused by a replica
        self.session_state = False    # carries a session's settings or TEMP objects (never shared)
        # A call ended before its Executed was read (cancelled, or its part sink failed): the
        # rest of its answer is still on the stream, so the connection is never used again.
        self._abandoned = False

    async def open(self, timeout: float) -> None:
        self._call = self._connections.stream()
        try:
            await self._call.write(storage_pb2.ConnectRequest(open=storage_pb2.Open(database=self.database,
                                                                                  read_at=self.read_at)))
            resp = await asyncio.wait_for(self._call.read(), timeout)
        except TimeoutError:
            self.close()
            raise StorageUnavailable(grpc.StatusCode.UNAVAILABLE,
                                     f"open {self.database}: storage did not answer within {timeout:.0f}s") from None
        except grpc.aio.AioRpcError as exc:
            raise StorageUnavailable(exc.code(), f"open {self.database}: {exc.details()}") from exc
        if resp is grpc.aio.EOF or resp.WhichOneof("kind") != "opened":
            self.close()
            raise StorageUnavailable(grpc.StatusCode.UNAVAILABLE, f"open {self.database}: stream ended")

    @property
    def alive(self) -> bool:
        """Usable for the next call: the stream is open and no call was left midway."""
        return self._call is not None and not self._call.done() and not self._abandoned

    async def execute(self, statements: Sequence[common_pb2.Statement], read_only: bool,
                      describe_only: bool = False, on_part: PartSink | None = None, *,
                      min_frame_no: int = 0, wait_ms: int = 0, max_staleness_ms: int = 0,
                      synchronous_commit: bool = False, take_writer: bool = False,
                      writer_wait_ms: int = 0) -> list[common_pb2.StatementResult]:
        """Run (or describe) a batch; the keywords are Execute's fields (storage.proto). A large
        result arrives in ResultParts before the results (rows left out of those): each is
        awaited in `on_part` as it comes."""
        assert self._call is not None
        if self._call.done():  # the stream ended between calls (storage restarted): writing would raise
            self.in_transaction = False
            raise StorageUnavailable(grpc.StatusCode.UNAVAILABLE, "storage: the connection was lost")
        req = storage_pb2.ConnectRequest(execute={  # a dict: built in place, the statements copied once
            "id": next(self._ids), "statements": statements, "read_only": read_only, "describe_only": describe_only,
            "min_frame_no": min_frame_no, "wait_ms": wait_ms, "max_staleness_ms": max_staleness_ms,
            "synchronous_commit": synchronous_commit, "take_writer": take_writer, "writer_wait_ms": writer_wait_ms})
        if self._abandoned:
            raise StorageUnavailable(grpc.StatusCode.UNAVAILABLE, "storage: the connection was left midway")
        self._abandoned = True
        sent = False
        try:
            await self._call.write(req)
            sent = True
            while (resp := await self._call.read()) is not grpc.aio.EOF and resp.WhichOneof("kind") == "part":
                # A large result in pieces: each is handed on before the next is read, so a
                # slow reader downstream slows the statement in storage (back-pressure).
                if on_part is not None:
                    await on_part(resp.part)
        except grpc.aio.AioRpcError as exc:
            self.in_transaction = False
            raise StorageUnavailable(exc.code(), f"storage: {exc.details()}", sent) from exc
        except BaseException:
            # Cancelled midway (the session is ending): the answer will never be read, so
            # end the stream; storage interrupts the statement and rolls back.
            self.in_transaction = False
            self.close()
            raise
        if resp is grpc.aio.EOF:
            self.in_transaction = False
            raise StorageUnavailable(grpc.StatusCode.UNAVAILABLE, "storage: stream ended", sent)
        self._abandoned = False
        self.in_transaction = resp.executed.in_transaction
        self.frame_no = resp.executed.frame_no
        self.not_caught_up = resp.executed.not_caught_up
        self.session_state = resp.executed.session_state
        return list(resp.executed.results)

    async def interrupt(self) -> None:
        if self._call is not None and not self._call.done():
            assert self._call is not None
            await self._call.write(storage_pb2.ConnectRequest(interrupt=storage_pb2.Interrupt()))

    def close(self) -> None:
        """End the stream; storage rolls back whatever is open."""
        if self._call is not None:
            self._call.cancel()
