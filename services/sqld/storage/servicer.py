"""gRPC adapter for the storage service: one Connect stream = one SQLite connection.

The servicer only translates; the backend decides (storage.backend, the interface it needs;
`storage.__main__` hands it the databases of the configured backend). SQLite work runs on a
thread pool so the event loop keeps reading (an Interrupt can arrive mid-statement), except
the first step of a batch that starts with a read: it runs inline on the event loop (no
thread hand-off), and the `Watchdog` stops it after a tick or two (a few ms), when it goes on
the pool from the start of the statement it was in (Connection.set_inline).

However a stream ends (the client half-closes or cancels, its process dies, the service
stops), `_end` interrupts the statement still running, waits for its worker thread to
finish it, then rolls back and closes the connection on a worker thread: an apsw
connection is used by one thread at a time, and closing it under a running statement
would fail and leave the transaction, and SQLite's write lock, held.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import threading
import time
from collections.abc import Callable

import grpc

from sqld.common import mux
from sqld.common.sqlstate import FEATURE_NOT_SUPPORTED, INVALID_CATALOG_NAME, QUERY_CANCELED, SqlError
from sqld.common.statement import READ
from sqld.storage.backend import Connection, Database, TimeTravelError
from sqld.storage.registry import Registry
from sqld.storage.writers import WriterQueue
from sqld.v1 import admin_pb2, common_pb2, storage_pb2, storage_pb2_grpc

log = logging.getLogger(__name__)

BACKUP_CHUNK = 1 << 20  # bytes of a database file per BackupChunk


def _step(steps):
    """The next ResultPart of a running batch, or its results (a list) once it is over."""
    try:
        return next(steps)
    except StopIteration as stop:
        return stop.value


class Watchdog:
    """Bounds the inline step (`step`) on the event loop: a thread that, while something ran
    inline lately, looks every TICK and stops (Connection.overrun) a step it already saw at
    its last look, so no step holds the loop for much more than 2 × TICK. The lock makes the
    overrun reach only the step it was meant for, never a statement on a worker thread; the
    thread sleeps when nothing ran inline for IDLE_TICKS."""

    TICK = 0.002
    IDLE_TICKS = 100

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: Connection | None = None  # the connection stepping inline now
        self._steps = 0  # inline steps begun
        self._wake = threading.Event()
        self._stopped = False
        threading.Thread(target=self._watch, name="sqlite-watchdog", daemon=True).start()

    def step(self, conn: Connection, steps):
        """The first step of a batch, on the event loop: what _step returns (None: go on on
        a worker thread)."""
        conn.set_inline(True)
        with self._lock:
            self._current = conn
            self._steps += 1
        if not self._wake.is_set():
            self._wake.set()
        try:
            return _step(steps)
        finally:
            with self._lock:
                self._current = None
            conn.set_inline(False)

    def _watch(self) -> None:
        seen, idle = -1, 0
        while not self._stopped:
            time.sleep(self.TICK)
            with self._lock:
                if self._current is None:
                    idle += 1
                else:
                    idle = 0
                    if self._steps == seen:
                        self._current.overrun()
                seen = self._steps
            if idle > self.IDLE_TICKS:
                idle = 0
                self._wake.clear()
                if self._current is None:  # step() sets it before it looks at _wake
                    self._wake.wait()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()


class StorageServicer(storage_pb2_grpc.StorageServicer):
    def __init__(self, databases: dict[str, Database], threads: int, max_connections: int = 256,
                 registry: Registry | None = None) -> None:
        self.databases = databases
        self.registry = registry  # None: a fixed set (tests); CreateDatabase and DropDatabase refuse
        # Fair admission: a worker for every connection (each runs one batch at a time), plus
        # `threads` for opening and closing, so a short statement never waits behind another
        # connection's long one; the bound is on connections (RESOURCE_EXHAUSTED, 53300).
        self.max_connections = max_connections
        self.executor = concurrent.futures.ThreadPoolExecutor(max_connections + threads, thread_name_prefix="sqlite")
        self.open_connections = 0
        self._admitted = 0  # Connect streams opening or open
        self._queues: dict[asyncio.Queue, Connection] = {}  # each open stream's requests, its connection
        self._open: set[Connection] = set()      # connections not closed yet
        self._ending: set[asyncio.Task] = set()  # connections being interrupted and closed
        self._writers: dict[str, WriterQueue] = {}  # each database's writer queue (storage/writers.py)
        self.watchdog = Watchdog()
        self.multiplexed = mux.Server(self.Connect, storage_pb2.ConnectResponseFrames, "connections")

    async def close_streams(self) -> None:
        """The service is stopping: every Connect stream ends after its running statement
        (an open transaction rolls back), so none is left for the server to cancel."""
        for q in self._queues:
            q.put_nowait(None)
        self.multiplexed.close()

    async def Connect(self, request_iterator, context: grpc.aio.ServicerContext):  # noqa: N802
        # The Open is read before a refusal: an abort with the client's first message unread
        # sometimes reached the client as INTERNAL ("Internal error from Core") instead.
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        if self._admitted >= self.max_connections:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"too many storage connections ({self.max_connections}, storage --max-connections); "
                                "try again later")
        self._admitted += 1
        try:
            await self._serve(context, first)
        finally:
            self._admitted -= 1

    async def Multiplex(self, request_iterator, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        """Many connections on one stream (storage.proto): each runs `Connect` (common.mux)."""
        await self.multiplexed.serve(context)

    async def _serve(self, context: grpc.aio.ServicerContext, first: storage_pb2.ConnectRequest) -> None:
        if first.WhichOneof("kind") != "open":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "connect: the first message must be Open")
        # (context.abort raises; the returns after it are for the type checker)
        db = self.databases.get(first.open.database)
        if db is None and self.registry is not None:  # the page store: perhaps created by another process
            db = await self.registry.discover(first.open.database)
        if db is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f'database "{first.open.database}" does not exist')
            return
        name = first.open.database
        connect: Callable[[], Connection] = db.connect
        if first.open.HasField("read_at"):
            if db.connect_at is None:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    "time travel needs the mvsqlite backend (storage --backend mvsqlite)")
                return
            connect = functools.partial(db.connect_at, first.open.read_at.version, first.open.read_at.unix_ms)
        opening = self.executor.submit(connect)
        try:
            conn = await asyncio.wrap_future(opening)
        except TimeTravelError as exc:  # the backend refused the time-travel target
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, str(exc))
            return
        except asyncio.CancelledError:  # the client left while the connection opened
            opening.add_done_callback(self._close_orphan)
            raise
        if self.databases.get(name) is not db:  # dropped while it opened
            await asyncio.get_running_loop().run_in_executor(self.executor, conn.close)
            await context.abort(grpc.StatusCode.NOT_FOUND, f'database "{name}" does not exist')
            return
        self.open_connections += 1
        self._open.add(conn)
        writer = self._writers.setdefault(first.open.database, WriterQueue(first.open.database))
        loop = asyncio.get_running_loop()
        # A batch's closing commit hands the writer on before it waits for the log (group
        # commit). Scheduled from the worker thread, it runs before the batch's own answer.
        def release_writer() -> None:
            loop.call_soon_threadsafe(writer.release, conn)
        conn.release_writer = release_writer
        waiting: asyncio.Task | None = None  # this stream's wait for the writer
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
                        if outstanding and waiting is not None:  # queued for the writer: stop waiting
                            waiting.cancel()
                        elif outstanding:  # an interrupt between batches is meant for none of them
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
        running: concurrent.futures.Future | None = None  # the batch's current step on a worker thread
        steps = None  # the running batch (Connection.run), until it returns its results
        self._queues[pending] = conn
        try:
            await context.write(storage_pb2.ConnectResponse(opened=storage_pb2.Opened()))
            follower = db.follower
            while (ex := await pending.get()) is not None:
                if follower is not None and not await follower.admit(ex.min_frame_no, ex.wait_ms,
                                                                     ex.max_staleness_ms):
                    done()
                    await context.write(storage_pb2.ConnectResponse(executed=storage_pb2.Executed(
                        id=ex.id, not_caught_up=True, frame_no=follower.frame_no)))
                    continue
                if ex.take_writer and follower is None:
                    waiting = asyncio.ensure_future(writer.take(conn, ex.writer_wait_ms))
                    try:
                        refused = await waiting
                    except asyncio.CancelledError:
                        if (task := asyncio.current_task()) is not None and task.cancelling():
                            raise  # the stream itself is being cancelled
                        refused = SqlError(QUERY_CANCELED, "canceling statement due to user request").to_proto()
                    finally:
                        waiting = None
                    if refused is not None:
                        done()
                        await context.write(storage_pb2.ConnectResponse(executed=storage_pb2.Executed(
                            id=ex.id, results=[common_pb2.StatementResult(error=refused)],
                            in_transaction=conn.in_transaction, frame_no=conn.frame_no,
                            session_state=conn.session_state)))
                        continue
                # SQLite steps on a worker thread one part at a time, one part ahead of the
                # write: a stream that does not drain pauses the statement, holding no thread.
                # A batch that starts with a read takes its first step inline (Watchdog).
                steps = conn.run(ex.statements, ex.read_only or follower is not None, ex.describe_only,
                                 ex.synchronous_commit)
                item = None
                if conn.may_inline and not ex.describe_only and ex.statements and ex.statements[0].kind == READ:
                    item = self.watchdog.step(conn, steps)
                while not isinstance(item, list):
                    running = self.executor.submit(_step, steps)
                    if item is not None:
                        await context.write(storage_pb2.ConnectResponse(part=item))
                    item = await asyncio.wrap_future(running)
                results, running, steps = item, None, None
                done()
                if not conn.in_transaction:  # its transaction ended: the next writer's turn
                    writer.release(conn)
                await context.write(storage_pb2.ConnectResponse(executed=storage_pb2.Executed(
                    id=ex.id, results=results, in_transaction=conn.in_transaction,
                    frame_no=follower.frame_no if follower is not None else conn.frame_no,
                    session_state=conn.session_state)))
        finally:
            self._queues.pop(pending, None)
            reader.cancel()
            self.open_connections -= 1
            # In a task of its own: a cancelled stream (client gone) must not cut it short.
            if waiting is not None:
                waiting.cancel()
            ending = asyncio.ensure_future(self._end(conn, running, steps, writer))
            self._ending.add(ending)
            ending.add_done_callback(self._ending.discard)
            await asyncio.shield(ending)

    async def end_database(self, name: str) -> None:
        """Every stream on database `name` ends: its running batch is interrupted, its
        transaction rolled back, its connection closed (DropDatabase; it left the registry
        first, so no new one opens). Returns once they are all closed."""
        for pending, conn in list(self._queues.items()):
            if conn.name == name:
                pending.put_nowait(None)
                conn.interrupt()
        while any(conn.name == name for conn in self._open):
            await asyncio.sleep(0.01)
        self._writers.pop(name, None)

    # -- the registry (storage.proto; the scheduler's DatabaseAdmin calls these) ----------------
    async def CreateDatabase(self, request: admin_pb2.CreateDatabaseRequest,  # noqa: N802
                             context: grpc.aio.ServicerContext) -> admin_pb2.DatabaseResponse:
        try:
            if self.registry is None:
                raise SqlError(FEATURE_NOT_SUPPORTED, "this storage serves a fixed set of databases")
            await self.registry.create(request.name, request.template, request.as_of_frame_no, request.as_of_unix_ms)
        except SqlError as exc:
            return admin_pb2.DatabaseResponse(error=exc.to_proto())
        return admin_pb2.DatabaseResponse()

    async def DropDatabase(self, request: admin_pb2.DropDatabaseRequest,  # noqa: N802
                           context: grpc.aio.ServicerContext) -> admin_pb2.DatabaseResponse:
        try:
            if self.registry is None:
                raise SqlError(FEATURE_NOT_SUPPORTED, "this storage serves a fixed set of databases")
            if not await self.registry.drop(request.name, self.end_database):
                if not request.if_exists:
                    raise SqlError(INVALID_CATALOG_NAME, f'database "{request.name}" does not exist')
                return admin_pb2.DatabaseResponse(notices=[common_pb2.Notice(
                    sqlstate="00000", message=f'database "{request.name}" does not exist, skipping')])
        except SqlError as exc:
            return admin_pb2.DatabaseResponse(error=exc.to_proto())
        return admin_pb2.DatabaseResponse()

    async def ListDatabases(self, request: admin_pb2.ListDatabasesRequest,  # noqa: N802
                            context: grpc.aio.ServicerContext) -> admin_pb2.ListDatabasesResponse:
        return admin_pb2.ListDatabasesResponse(
            databases=[admin_pb2.DatabaseInfo(name=n) for n in sorted(self.databases)])

    async def Backup(self, request: admin_pb2.BackupRequest,  # noqa: N802
                     context: grpc.aio.ServicerContext):
        try:
            if self.registry is None:
                raise SqlError(FEATURE_NOT_SUPPORTED, "this storage serves a fixed set of databases")
            tmp = await asyncio.get_running_loop().run_in_executor(self.executor, self.registry.backup_copy,
                                                                   request.name)
        except SqlError as exc:
            yield admin_pb2.BackupChunk(error=exc.to_proto())
            return
        try:
            with open(tmp, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                while data := f.read(BACKUP_CHUNK):
                    yield admin_pb2.BackupChunk(data=data, size=size)
                if not size:
                    yield admin_pb2.BackupChunk(size=0)
        finally:
            os.remove(tmp)

    async def _end(self, conn: Connection, running: concurrent.futures.Future | None, steps,
                   writer: WriterQueue) -> None:
        """Stop the batch still running, wait for its thread, then close a statement paused
        between parts, roll back and close; only then may the next writer write."""
        if running is not None and not running.done():
            conn.interrupt()
            await asyncio.wait([asyncio.wrap_future(running)])

        def close() -> None:
            if steps is not None:
                steps.close()  # a statement paused between parts: its cursor closes
            conn.close()
        try:
            await asyncio.get_running_loop().run_in_executor(self.executor, close)
        except RuntimeError:  # the executor is shutting down: no thread uses the connection any more
            close()
        finally:
            writer.release(conn)
        self._open.discard(conn)

    def _close_orphan(self, opening: concurrent.futures.Future) -> None:
        """A connection opened for a client that is gone: close it (on the opening thread)."""
        if not opening.cancelled() and opening.exception() is None:
            opening.result().close()

    async def shutdown(self, wait: float = 5.0) -> None:
        """After the server stopped: interrupt what still runs (a stream the server has not
        ended yet), let every connection close, then stop the threads. The event loop keeps
        running meanwhile, so the streams' own endings can run."""
        for conn in list(self._open):
            conn.interrupt()
        deadline = asyncio.get_running_loop().time() + wait
        while self._open and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        self.watchdog.stop()
        await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=False)
