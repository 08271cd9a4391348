"""The storage servicer in process: real gRPC on 127.0.0.1:0, real SQLite files, no mocks.

Each test starts the servicer over a temporary database (storage.sqlite.backend) and talks
to it through the generated stub, as the scheduler does: Connect streams, Execute batches
answered by parts and an Executed, Interrupts, the writer queue. Every test runs twice: on
streams of their own (Connect) and on one shared stream (Multiplex, common.mux, what the
scheduler uses).
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from sqld.common import mux, sqlstate
from sqld.common.statement import classify
from sqld.common.values import to_python
from sqld.storage.servicer import StorageServicer
from sqld.storage.sqlite.backend import Database
from sqld.v1 import common_pb2, storage_pb2, storage_pb2_grpc

COUNT_FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
# a read of several seconds: stepped on the event loop to its end, it would finish before the point selects
LONG_READ = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000000) SELECT count(*) FROM c"


TRANSPORT = "Connect"


@pytest.fixture(params=["Connect", "Multiplex"], autouse=True)
def transport(request, monkeypatch) -> None:
    monkeypatch.setattr(f"{__name__}.TRANSPORT", request.param)


class SharedStream:
    """A stub whose Connect() opens a stream on one shared Multiplex call."""

    def __init__(self, stub: storage_pb2_grpc.StorageStub) -> None:
        self.channel = mux.Channel(stub.Multiplex, storage_pb2.ConnectRequestFrames, "test")

    def Connect(self) -> mux.Stream:  # noqa: N802
        return self.channel.stream()


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, max_connections: int = 8) -> AsyncIterator[storage_pb2_grpc.StorageStub]:
    """The servicer over databases "main" and "other" on a free port; a stub talking to it."""
    databases = {name: Database(name, str(tmp_path / f"{name}.db")) for name in ("main", "other")}
    servicer = StorageServicer(dict(databases), threads=2, max_connections=max_connections)
    server = grpc.aio.server()
    storage_pb2_grpc.add_StorageServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = storage_pb2_grpc.StorageStub(channel)
    shared = SharedStream(stub) if TRANSPORT == "Multiplex" else None
    try:
        yield shared or stub  # type: ignore[misc]
    finally:
        if shared is not None:
            await shared.channel.close()
        await channel.close()
        await servicer.close_streams()
        await server.stop(1)
        await servicer.shutdown()
        for db in databases.values():
            db.close()


class Conn:
    """One Connect stream, as the scheduler drives it."""

    def __init__(self, stub: storage_pb2_grpc.StorageStub) -> None:
        self.call = stub.Connect()
        self.ids = 0

    async def open(self, database: str = "main") -> None:
        await self.call.write(storage_pb2.ConnectRequest(open=storage_pb2.Open(database=database)))
        assert (await self.call.read()).WhichOneof("kind") == "opened"

    async def send(self, *sql: str, **execute) -> int:
        """Statements classified as the scheduler sends them (a batch of reads starts inline)."""
        self.ids += 1
        await self.call.write(storage_pb2.ConnectRequest(execute=storage_pb2.Execute(
            id=self.ids, statements=[common_pb2.Statement(sql=s, kind=classify(s).kind) for s in sql], **execute)))
        return self.ids

    async def answer(self) -> tuple[list[common_pb2.ResultPart], storage_pb2.Executed]:
        """The parts, then the Executed, of the batch sent last."""
        got = []
        while (resp := await self.call.read()).WhichOneof("kind") == "part":
            got.append(resp.part)
        assert resp.WhichOneof("kind") == "executed", resp
        assert resp.executed.id == self.ids
        return got, resp.executed

    async def execute(self, *sql: str, **execute) -> storage_pb2.Executed:
        await self.send(*sql, **execute)
        parts, executed = await self.answer()
        assert not parts
        return executed

    async def interrupt(self) -> None:
        await self.call.write(storage_pb2.ConnectRequest(interrupt=storage_pb2.Interrupt()))

    async def close(self) -> None:
        await self.call.done_writing()
        assert await self.call.read() is grpc.aio.EOF


def value(result: common_pb2.StatementResult):
    assert result.WhichOneof("result") == "ok", result
    return to_python(result.ok.rows[0].values[0])


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario, 60))


def test_execute_a_batch_and_keep_a_transaction(tmp_path):
    async def scenario() -> None:
        async with serving(tmp_path) as stub:
            c = Conn(stub)
            await c.open()
            done = await c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
                                   "INSERT INTO t (v) VALUES ('a'), ('b')", "SELECT count(*) AS n FROM t")
            assert [r.WhichOneof("result") for r in done.results] == ["ok", "ok", "ok"]
            assert done.results[1].ok.rows_affected == 2
            assert [r.ok.total_changes for r in done.results] == [0, 2, 0]
            assert done.results[2].ok.columns[0].name == "n" and value(done.results[2]) == 2
            assert not done.in_transaction
            assert (await c.execute("BEGIN", "DELETE FROM t")).in_transaction
            other = Conn(stub)
            await other.open()
            assert value((await other.execute("SELECT count(*) FROM t")).results[0]) == 2  # not committed
            assert not (await c.execute("ROLLBACK")).in_transaction
            await c.close()
            await other.close()
    run(scenario())


def test_a_large_result_streams_in_parts(tmp_path):
    async def scenario() -> None:
        async with serving(tmp_path) as stub:
            c = Conn(stub)
            await c.open()
            await c.send("SELECT 1 AS one", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                         "WHERE x < 20000) SELECT x, printf('%.40d', x) AS padded FROM c")
            parts, done = await c.answer()
            assert len(parts) > 2
            assert parts[0].statement == 0 and parts[0].result.ok.rows[0].values[0].integer == 1
            rows = [to_python(row.values[0]) for p in parts if p.statement == 1 for row in p.rows]
            assert rows == list(range(1, 20001))
            assert [col.name for col in parts[1].columns] == ["x", "padded"]
            assert parts[-1].result.WhichOneof("result") == "ok" and not parts[-1].continues
            assert len(done.results) == 2 and not done.results[1].ok.rows  # the rows went in parts
            await c.close()
    run(scenario())


def test_describe_only(tmp_path):
    async def scenario() -> None:
        async with serving(tmp_path) as stub:
            c = Conn(stub)
            await c.open()
            await c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            done = await c.execute("SELECT id, v FROM t WHERE id = ?", "INSERT INTO t (v) VALUES (?)",
                                   describe_only=True)
            select, insert = (r.description for r in done.results)
            assert [(col.name, col.decltype) for col in select.columns] == [("id", "INTEGER"), ("v", "TEXT")]
            assert len(select.parameters) == 1 and select.read_only
            assert not insert.columns and len(insert.parameters) == 1 and not insert.read_only
            assert value((await c.execute("SELECT count(*) FROM t")).results[0]) == 0  # nothing ran
            await c.close()
    run(scenario())


def test_sqlite_errors_come_back_as_sqlstates_and_stop_the_batch(tmp_path):
    async def scenario() -> None:
        async with serving(tmp_path) as stub:
            c = Conn(stub)
            await c.open()
            done = await c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (1)",
                                   "INSERT INTO t VALUES (1)", "SELECT 1")
            assert len(done.results) == 3  # stopped at the first error
            err = done.results[2].error
            assert err.sqlstate == sqlstate.UNIQUE_VIOLATION and "UNIQUE" in err.message
            assert (await c.execute("SELECT * FROM missing")).results[0].error.sqlstate == sqlstate.UNDEFINED_TABLE
            assert (await c.execute("SELEC 1")).results[0].error.sqlstate == sqlstate.SYNTAX_ERROR
            assert (await c.execute("SELECT 1; SELECT 2")).results[0].error.sqlstate == sqlstate.SYNTAX_ERROR
            await c.close()
    run(scenario())


def test_a_read_only_batch_refuses_to_write(tmp_path):
    async def scenario() -> None:
        async with serving(tmp_path) as stub:
            c = Conn(stub)
            await c.open()
            await c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            done = await c.execute("SELECT count(*) FROM t", "INSERT INTO t VALUES (1)", read_only=True)
            err = done.results[1].error
            assert (err.sqlstate, err.sqlite_code) == (sqlstate.READ_ONLY_SQL_TRANSACTION, 8)
            assert err.message == "cannot execute a statement that writes in a read-only transaction"
            assert value((await c.execute("SELECT count(*) FROM t")).results[0]) == 0
            await c.close()
    run(scenario())


def test_interrupt_cancels_the_running_statement_only(tmp_path):
    async def scenario() -> None:
        async with serving(tmp_path) as stub:
            c = Conn(stub)
            await c.open()
            await c.interrupt()  # between batches: meant for none of them
            assert value((await c.execute("SELECT 41 + 1")).results[0]) == 42
            await c.send(COUNT_FOREVER)
            await asyncio.sleep(0.2)  # let it start: an interrupt must stop a statement already running
            await c.interrupt()
            _, done = await c.answer()
            assert done.results[0].error.sqlstate == sqlstate.QUERY_CANCELED
            assert value((await c.execute("SELECT 1")).results[0]) == 1  # later batches run
            await c.close()
    run(scenario())


def test_a_long_read_does_not_hold_up_point_selects_on_other_connections(tmp_path):
    """A read starts on the event loop; one that runs on goes to a worker thread, so the loop
    keeps serving other connections (and reads the Interrupt that ends it)."""
    async def scenario() -> None:
        async with serving(tmp_path) as stub:
            setup = Conn(stub)
            await setup.open()
            await setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'one')")
            long = Conn(stub)
            await long.open()
            await long.send(LONG_READ)
            long_answer = asyncio.ensure_future(long.answer())
            point = Conn(stub)
            await point.open()
            for _ in range(20):
                assert value((await point.execute("SELECT v FROM t WHERE id = 1")).results[0]) == "one"
            assert not long_answer.done()  # the point selects all finished first
            await long.interrupt()
            _, done = await long_answer
            assert done.results[0].error.sqlstate == sqlstate.QUERY_CANCELED
            for c in (setup, long, point):
                await c.close()
    run(scenario())


def test_a_batch_of_a_read_then_writes_in_a_transaction(tmp_path):
    """The read runs inline, the write hands the batch to the worker thread; an interrupt sent
    right after a long read (no time to start) still cancels it."""
    async def scenario() -> None:
        async with serving(tmp_path) as stub:
            c = Conn(stub)
            await c.open()
            await c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)", "INSERT INTO t VALUES (1), (2)")
            done = await c.execute("BEGIN", "SELECT count(*) FROM t", "DELETE FROM t WHERE id = 1",
                                   "SELECT count(*) FROM t")
            assert value(done.results[1]) == 2 and done.results[2].ok.rows_affected == 1 and value(done.results[3]) == 1
            assert done.in_transaction
            done = await c.execute("SELECT count(*) FROM t", "SELECT id FROM t")
            assert value(done.results[0]) == 1 and value(done.results[1]) == 2 and done.in_transaction
            await c.send(COUNT_FOREVER)
            await c.interrupt()
            _, done = await c.answer()
            assert done.results[0].error.sqlstate == sqlstate.QUERY_CANCELED
            done = await c.execute("SELECT count(*) FROM t", "ROLLBACK", "SELECT count(*) FROM t")
            assert value(done.results[0]) == 1 and value(done.results[2]) == 2 and not done.in_transaction
            await c.close()
    run(scenario())


def test_the_writer_queue(tmp_path):
    async def scenario() -> None:
        async with serving(tmp_path) as stub:
            a, b = Conn(stub), Conn(stub)
            await a.open()
            await b.open()
            await a.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            assert (await a.execute("BEGIN", "INSERT INTO t VALUES (1)", take_writer=True)).in_transaction
            # b waits its turn, bounded by writer_wait_ms: 55P03, nothing ran
            done = await b.execute("INSERT INTO t VALUES (2)", take_writer=True, writer_wait_ms=100)
            err = done.results[0].error
            assert err.sqlstate == sqlstate.LOCK_NOT_AVAILABLE and "write lock on database main" in err.message
            # an Interrupt ends the wait: 57014
            await b.send("INSERT INTO t VALUES (2)", take_writer=True)
            await asyncio.sleep(0.1)
            await b.interrupt()
            _, done = await b.answer()
            assert done.results[0].error.sqlstate == sqlstate.QUERY_CANCELED
            # the writer's transaction ends: the next one in the queue writes (FIFO)
            await b.send("INSERT INTO t VALUES (3)", take_writer=True)
            await asyncio.sleep(0.1)
            assert not (await a.execute("COMMIT")).in_transaction
            _, done = await b.answer()
            assert done.results[0].WhichOneof("result") == "ok"
            assert value((await a.execute("SELECT group_concat(id) FROM t")).results[0]) == "1,3"
            # another database has a queue of its own
            c = Conn(stub)
            await c.open("other")
            await b.execute("BEGIN", take_writer=True)
            assert (await c.execute("CREATE TABLE u (x)", take_writer=True, writer_wait_ms=100)).results[0].ok
            for conn in (a, b, c):
                await conn.close()
    run(scenario())


def test_a_stream_that_ends_releases_the_writer_and_rolls_back(tmp_path):
    async def scenario() -> None:
        async with serving(tmp_path) as stub:
            a, b = Conn(stub), Conn(stub)
            await a.open()
            await b.open()
            await a.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            await a.execute("BEGIN", "INSERT INTO t VALUES (1)", take_writer=True)
            a.call.cancel()  # the client is gone mid-transaction
            done = await b.execute("INSERT INTO t VALUES (2)", take_writer=True, writer_wait_ms=5000)
            assert done.results[0].WhichOneof("result") == "ok"
            assert value((await b.execute("SELECT group_concat(id) FROM t")).results[0]) == "2"
            await b.close()
    run(scenario())


@pytest.mark.parametrize(("database", "code"), [("nope", grpc.StatusCode.NOT_FOUND)])
def test_open_refusals(tmp_path, database, code):
    async def scenario() -> None:
        async with serving(tmp_path) as stub:
            c = Conn(stub)
            await c.call.write(storage_pb2.ConnectRequest(open=storage_pb2.Open(database=database)))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await c.call.read()
            assert info.value.code() == code
            # time travel needs the mvsqlite backend
            c = Conn(stub)
            await c.call.write(storage_pb2.ConnectRequest(open=storage_pb2.Open(
                database="main", read_at=common_pb2.ReadAt(version=1))))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await c.call.read()
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    run(scenario())


def test_connections_are_bounded(tmp_path):
    async def scenario() -> None:
        async with serving(tmp_path, max_connections=1) as stub:
            a = Conn(stub)
            await a.open()
            b = Conn(stub)
            await b.call.write(storage_pb2.ConnectRequest(open=storage_pb2.Open(database="main")))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await b.call.read()
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await a.close()
    run(scenario())
