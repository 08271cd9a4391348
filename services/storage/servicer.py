"""gRPC adapter for the storage service: one Connect stream = one SQLite connection.

The servicer only translates; `storage.sqlite.backend` decides. SQLite work runs on a
thread pool so the event loop keeps reading (an Interrupt can arrive mid-statement).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging

import grpc

from sqld.v1 import storage_pb2, storage_pb2_grpc
from storage.sqlite.backend import Connection, Database

log = logging.getLogger(__name__)


def _step(steps):
    """The next ResultPart of a running batch, or its results (a list) once it is over."""
    try:
        return next(steps)
    except StopIteration as stop:
        return stop.value


class StorageServicer(storage_pb2_grpc.StorageServicer):
    def __init__(self, databases: dict, threads: int) -> None:
        self.databases = databases
        self.executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="sqlite")
        self.open_connections = 0
        self._queues: set[asyncio.Queue] = set()

    async def close_streams(self) -> None:
        """The service is stopping: every Connect stream ends after its running statement
        (an open transaction rolls back), so none is left for the server to cancel."""
        for q in self._queues:
            q.put_nowait(None)

    async def Connect(self, request_iterator, context: grpc.aio.ServicerContext):  # noqa: N802
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        if first.WhichOneof("kind") != "open":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "connect: the first message must be Open")
        db = self.databases.get(first.open.database)
        if db is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f'database "{first.open.database}" does not exist')
        loop = asyncio.get_running_loop()
        connect = db.connect
        if first.open.HasField("read_at"):
            connect_at = getattr(db, "connect_at", None)
            if connect_at is None:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    "time travel needs the mvsqlite backend (storage --backend mvsqlite)")
            connect = functools.partial(connect_at, first.open.read_at.version, first.open.read_at.unix_ms)
        try:
            conn: Connection = await loop.run_in_executor(self.executor, connect)
        except ValueError as exc:  # the backend refused the time-travel target
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, str(exc))
        self.open_connections += 1
        pending: asyncio.Queue[storage_pb2.Execute | None] = asyncio.Queue()
        outstanding = 0  # Executes received and not answered yet

        async def read_requests() -> None:
            nonlocal outstanding
            try:
                while True:
                    req = await context.read()
                    if req is grpc.aio.EOF:
                        break
                    kind = req.WhichOneof("kind")
                    if kind == "interrupt":
                        if outstanding:  # an interrupt between batches is meant for none of them
                            conn.interrupt()
                    elif kind == "execute":
                        outstanding += 1
                        pending.put_nowait(req.execute)
            finally:
                pending.put_nowait(None)

        def done() -> None:
            """A batch is answered. On the event loop, as interrupts are taken: one taken
            before this was meant for this batch, one after it for none."""
            nonlocal outstanding
            outstanding -= 1
            if not outstanding:
                conn.reset_interrupt()

        reader = asyncio.create_task(read_requests())
        running: asyncio.Future | None = None
        steps = None  # the running batch (Connection.run), until it returns its results
        self._queues.add(pending)
        try:
            await context.write(storage_pb2.ConnectResponse(opened=storage_pb2.Opened()))
            follower = getattr(db, "follower", None)
            while (ex := await pending.get()) is not None:
                if follower is not None and not await follower.admit(ex.min_frame_no, ex.wait_ms,
                                                                     ex.max_staleness_ms):
                    done()
                    await context.write(storage_pb2.ConnectResponse(executed=storage_pb2.Executed(
                        id=ex.id, not_caught_up=True, frame_no=follower.frame_no)))
                    continue
                # SQLite steps on a worker thread one part at a time, one part ahead of the
                # write: a stream that does not drain pauses the statement, holding no thread.
                steps = conn.run(ex.statements, ex.read_only or follower is not None, ex.describe_only,
                                 ex.synchronous_commit)
                running = loop.run_in_executor(self.executor, _step, steps)
                # shield: if this stream is cancelled, `running` still tells when the thread is done
                while not isinstance(item := await asyncio.shield(running), list):
                    running = loop.run_in_executor(self.executor, _step, steps)
                    await context.write(storage_pb2.ConnectResponse(part=item))
                results, running, steps = item, None, None
                done()
                await context.write(storage_pb2.ConnectResponse(executed=storage_pb2.Executed(
                    id=ex.id, results=results, in_transaction=conn.in_transaction,
                    frame_no=follower.frame_no if follower is not None else conn.frame_no,
                    session_state=conn.session_state)))
        finally:
            self._queues.discard(pending)
            reader.cancel()
            if running is not None and not running.done():
                conn.interrupt()
                await asyncio.wait([running])
            if steps is not None:
                steps.close()  # a statement paused between parts: its cursor closes
            self.open_connections -= 1
            conn.close()  # quick (a rollback at most); also runs after the executor has shut down

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=False)
