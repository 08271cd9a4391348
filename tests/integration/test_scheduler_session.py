"""The scheduler's Session driven directly, over the real DatabasePool, against storage
connections of this file's own: `FakeStorageConnection` has StorageConnection's interface
and answers from a real SQLite database (apsw, a WAL file in tmp_path). No process, no gRPC.

What storage does that matters here is done the same way: a batch stops at its first error,
a read-only batch runs under SQLite's own refusal to write (PRAGMA query_only: 25006), an
interrupt is sqlite3_interrupt (57014), a replica behind the session's last write answers
not_caught_up, a connection that now holds TEMP objects says so (session_state).
"""
from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Sequence

import apsw
import grpc
import pytest

from sqld.common import sqlstate, statement
from sqld.common.values import to_value
from sqld.scheduler import routing
from sqld.scheduler.pool import DatabasePool
from sqld.scheduler.session import FAILED, IDLE, IN_TRANSACTION, Replicas, Session
from sqld.scheduler.storage_client import PartSink, StorageUnavailable
from sqld.v1 import common_pb2

_SQLSTATE = [  # apsw's exception → what storage answers (storage maps SQLite's codes the same way)
    (apsw.ConstraintError, sqlstate.UNIQUE_VIOLATION), (apsw.ReadOnlyError, sqlstate.READ_ONLY_SQL_TRANSACTION),
    (apsw.BusyError, sqlstate.SERIALIZATION_FAILURE), (apsw.InterruptError, sqlstate.QUERY_CANCELED),
    (apsw.SQLError, sqlstate.SYNTAX_ERROR), (apsw.Error, sqlstate.INTERNAL_ERROR)]


@dataclasses.dataclass
class Call:
    sqls: list[str]
    read_only: bool
    take_writer: bool


class Storage:
    """One database file as the storage service holds it; what was asked of it."""

    def __init__(self, path: str, applied: int | None = None) -> None:
        self.path = path
        self.frame_no = 0                # bumped by every commit that changed something
        self.applied = applied           # a replica: the primary's frame it has applied (None: the primary)
        self.down = False                # every call fails as a broken stream
        self.calls: list[Call] = []
        self.running = threading.Event()  # a statement has started
        db = apsw.Connection(path)
        db.execute("PRAGMA journal_mode=WAL")
        db.close()

    def sqls(self) -> list[str]:
        return [sql for c in self.calls for sql in c.sqls]


class FakeStorageConnection:
    """scheduler.storage_client.StorageConnection's interface over a real SQLite connection."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.db: apsw.Connection | None = None
        self.in_transaction = False
        self.frame_no = 0
        self.not_caught_up = False
        self.session_state = False
        self.closed = False
        self._dirty = False

    async def open(self, timeout: float) -> None:
        self.db = apsw.Connection(self.storage.path)
        self.db.set_busy_timeout(1000)

    @property
    def alive(self) -> bool:
        return self.db is not None and not self.closed

    async def execute(self, statements: Sequence[common_pb2.Statement], read_only: bool,
                      describe_only: bool = False, on_part: PartSink | None = None, *,
                      min_frame_no: int = 0, wait_ms: int = 0, max_staleness_ms: int = 0,
                      synchronous_commit: bool = False, take_writer: bool = False,
                      writer_wait_ms: int = 0) -> list[common_pb2.StatementResult]:
        assert not describe_only
        if self.storage.down:
            self.close()
            raise StorageUnavailable(grpc.StatusCode.UNAVAILABLE, "storage: stream ended", sent=True)
        self.storage.calls.append(Call([s.sql for s in statements], read_only, take_writer))
        self.not_caught_up = self.storage.applied is not None and min_frame_no > self.storage.applied
        if self.not_caught_up:
            return []
        results = await asyncio.to_thread(self._run, statements, read_only)
        assert self.db is not None
        self.in_transaction = self.db.in_transaction
        self.frame_no = self.storage.frame_no
        return results

    def _run(self, statements: Sequence[common_pb2.Statement], read_only: bool) -> list[common_pb2.StatementResult]:
        assert self.db is not None
        self.db.execute(f"PRAGMA query_only = {int(read_only)}")
        out = []
        for st in statements:
            before = self.db.total_changes()
            self.storage.running.set()
            try:
                rows = list(self.db.execute(st.sql))
            except apsw.Error as exc:
                code = next(code for cls, code in _SQLSTATE if isinstance(exc, cls))
                out.append(common_pb2.StatementResult(error=common_pb2.StatementError(sqlstate=code, message=str(exc))))
                break
            finally:
                self.storage.running.clear()
            if "TEMP" in st.sql.upper():
                self.session_state = True
            self._dirty = (self._dirty or self.db.total_changes() != before) and \
                statement.kind_of(st) != statement.ROLLBACK
            if self._dirty and self.db.get_autocommit():
                self.storage.frame_no += 1
                self._dirty = False
            out.append(common_pb2.StatementResult(ok=common_pb2.ResultSet(
                rows=[common_pb2.Row(values=[to_value(v) for v in row]) for row in rows])))
        return out

    async def interrupt(self) -> None:
        if self.db is not None:
            self.db.interrupt()

    def close(self) -> None:
        self.closed = True


class FakePool(DatabasePool):
    """The real pool (slots, the writer token, their bounded waits) handing out fake connections."""

    def __init__(self, storage: Storage, max_connections: int = 4, wait_timeout: float = 2.0) -> None:
        super().__init__("main", None, max_connections, wait_timeout, open_timeout=1.0)
        self.storage = storage

    def _connection(self) -> FakeStorageConnection:
        return FakeStorageConnection(self.storage)


class ReplicaPools:
    def __init__(self, pool: FakePool) -> None:
        self.pool = pool

    async def get(self, name: str) -> FakePool:
        return self.pool


def st(sql: str, kind: int = 0) -> common_pb2.Statement:
    return common_pb2.Statement(sql=sql, kind=kind)


async def run(session: Session, *sqls: str, **kw) -> list[common_pb2.StatementResult]:
    return await session.run([st(s) for s in sqls], **kw)


def rows(result: common_pb2.StatementResult) -> list[tuple]:
    assert not result.HasField("error"), result.error
    return [tuple(getattr(v, v.WhichOneof("value")) for v in r.values) for r in result.ok.rows]


def error(results: list[common_pb2.StatementResult]) -> str:
    assert results and results[-1].HasField("error"), results
    return results[-1].error.sqlstate


@pytest.fixture
def storage(tmp_path):
    s = Storage(str(tmp_path / "main.db"))
    db = apsw.Connection(s.path)
    db.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
    db.close()
    return s


def session_on(storage: Storage, **kw) -> Session:
    return Session(FakePool(storage), **kw)


def test_transaction_states_and_the_lazy_begin(storage):
    async def main():
        s = session_on(storage)
        assert (await run(s, "BEGIN"))[0].HasField("ok") and s.status == IN_TRANSACTION
        assert not s.pinned and storage.calls == []  # BEGIN is lazy: no storage connection yet
        notice = (await run(s, "BEGIN"))[0].notices[0]
        assert notice.sqlstate == sqlstate.ACTIVE_SQL_TRANSACTION
        await run(s, "INSERT INTO t VALUES (1)")
        assert s.pinned and s.holds_writer and storage.calls[0].sqls[0] == "BEGIN IMMEDIATE"
        assert rows((await run(s, "SELECT count(*) FROM t"))[0]) == [(1,)]
        await run(s, "COMMIT")
        assert s.status == IDLE and not s.pinned and not s.holds_writer and s.frame_no == 1
        notice = (await run(s, "COMMIT"))[0].notices[0]
        assert notice.sqlstate == sqlstate.NO_ACTIVE_SQL_TRANSACTION
        # a transaction that starts by reading runs deferred, and takes the token at its first write
        await run(s, "BEGIN", "SELECT 1")
        assert storage.calls[-1].sqls[0] == "BEGIN" and not s.holds_writer
        await run(s, "INSERT INTO t VALUES (2)")
        assert s.holds_writer and storage.calls[-1].take_writer
        await run(s, "ROLLBACK")
        assert rows((await run(s, "SELECT count(*) FROM t"))[0]) == [(1,)]
        await s.close()
    asyncio.run(main())


def test_an_error_fails_the_transaction_until_its_end(storage):
    async def main():
        s = session_on(storage)
        results = await run(s, "BEGIN", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (1)", "SELECT 1")
        assert len(results) == 3 and error(results) == sqlstate.UNIQUE_VIOLATION and s.status == FAILED
        assert error(await run(s, "SELECT 1")) == sqlstate.IN_FAILED_SQL_TRANSACTION
        assert error(await run(s, "BEGIN")) == sqlstate.IN_FAILED_SQL_TRANSACTION
        assert error(await run(s, "SAVEPOINT a")) == sqlstate.IN_FAILED_SQL_TRANSACTION
        await run(s, "COMMIT")  # COMMIT of a failed transaction rolls back
        assert s.status == IDLE and rows((await run(s, "SELECT count(*) FROM t"))[0]) == [(0,)]
        # the client's own error (fail_transaction) fails it the same way
        await run(s, "BEGIN", "INSERT INTO t VALUES (5)")
        s.fail()
        assert error(await run(s, "SELECT 1")) == sqlstate.IN_FAILED_SQL_TRANSACTION
        await run(s, "ROLLBACK")
        # an implicit transaction (several statements in one Query) is all or nothing
        results = await run(s, "INSERT INTO t VALUES (7)", "INSERT INTO t VALUES (7)", implicit_transaction=True)
        assert error(results) == sqlstate.UNIQUE_VIOLATION and s.status == IDLE
        assert rows((await run(s, "SELECT count(*) FROM t"))[0]) == [(0,)]
        await s.close()
    asyncio.run(main())


def test_savepoints(storage):
    async def main():
        s = session_on(storage)
        results = await run(s, "SAVEPOINT a")
        assert error(results) == sqlstate.NO_ACTIVE_SQL_TRANSACTION
        assert results[0].error.message == "SAVEPOINT can only be used in transaction blocks"
        assert error(await run(s, "release a")) == sqlstate.NO_ACTIVE_SQL_TRANSACTION
        await run(s, "BEGIN", "SAVEPOINT a")  # nothing ran yet: the savepoint opens the real transaction
        assert s.pinned
        await run(s, "INSERT INTO t VALUES (1)", "SAVEPOINT b")
        assert error(await run(s, "INSERT INTO t VALUES (1)")) == sqlstate.UNIQUE_VIOLATION
        assert s.status == FAILED
        assert not (await run(s, "ROLLBACK TO SAVEPOINT b"))[0].HasField("error")
        assert s.status == IN_TRANSACTION  # ROLLBACK TO recovers a failed transaction
        await run(s, "INSERT INTO t VALUES (2)", "RELEASE a", "COMMIT")
        assert rows((await run(s, "SELECT a FROM t ORDER BY a"))[0]) == [(1,), (2,)]
        await s.close()
    asyncio.run(main())


def test_read_only_transactions_and_kinds_set_by_the_sender(storage):
    async def main():
        s = session_on(storage)
        await run(s, "BEGIN READ ONLY")
        assert s.read_only
        assert error(await run(s, "INSERT INTO t VALUES (1)")) == sqlstate.READ_ONLY_SQL_TRANSACTION
        assert not storage.calls[-1].take_writer and storage.calls[-1].read_only
        await run(s, "ROLLBACK")
        # a kind the edge set is trusted: this read takes the writer token, as a write
        await s.run([st("SELECT 1", statement.WRITE)])
        assert storage.calls[-1].take_writer and not storage.calls[-1].read_only
        # a script from a QueryService caller is split and classified here
        results = await run(s, "BEGIN; INSERT INTO t VALUES (3); COMMIT")
        assert len(results) == 3 and s.status == IDLE and storage.frame_no == 1
        err = await s.run([common_pb2.Statement(sql="SELECT ?; SELECT 2", params=[common_pb2.Value(integer=1)])])
        assert error(err) == sqlstate.SYNTAX_ERROR
        # settings are answered by the scheduler itself
        assert not (await run(s, "SET sqld.consistency = strong"))[0].HasField("error")
        assert s.policy.consistency == routing.STRONG
        assert error(await run(s, "SET sqld.consistency = maybe")) == sqlstate.INVALID_PARAMETER_VALUE
        assert error(await run(s, "SELECT * FROM pg_stat_replication")) == sqlstate.FEATURE_NOT_SUPPORTED
        await s.close()
    asyncio.run(main())


def test_the_writer_token_orders_writers(storage):
    async def main():
        pool = FakePool(storage)
        a, b, c = Session(pool), Session(pool), Session(pool)
        await run(a, "BEGIN", "INSERT INTO t VALUES (1)")
        assert a.holds_writer and pool.writer.locked()
        waiting = asyncio.ensure_future(run(b, "INSERT INTO t VALUES (2)"))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert rows((await run(c, "SELECT count(*) FROM t"))[0]) == [(0,)]  # reads do not wait
        await run(a, "COMMIT")
        assert not (await waiting)[0].HasField("error")
        # held too long: the next writer gives up with 55P03
        pool.wait_timeout = 0.2
        await run(a, "BEGIN", "INSERT INTO t VALUES (3)")
        results = await run(b, "INSERT INTO t VALUES (4)")
        assert error(results) == sqlstate.LOCK_NOT_AVAILABLE and "write lock" in results[0].error.message
        await run(a, "COMMIT")
        for x in (a, b, c):
            await x.close()
    asyncio.run(main())


def test_a_transaction_sent_whole_commits_in_one_storage_call(storage):
    async def main():
        pool = FakePool(storage)
        s, other = Session(pool), Session(pool)
        results = await run(s, "BEGIN", "INSERT INTO t VALUES (1)", "SELECT count(*) FROM t", "COMMIT")
        assert len(results) == 4 and all(r.HasField("ok") for r in results) and rows(results[2]) == [(1,)]
        assert [c.sqls for c in storage.calls] == [["BEGIN IMMEDIATE", "INSERT INTO t VALUES (1)",
                                                     "SELECT count(*) FROM t", "COMMIT"]]
        assert storage.calls[0].take_writer
        assert s.status == IDLE and not s.pinned and not s.holds_writer and not pool.writer.locked()
        assert s.frame_no == 1
        # it fails before its COMMIT: the transaction is failed and open, as without the merge
        results = await run(s, "BEGIN", "INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (1)", "COMMIT")
        assert len(results) == 3 and error(results) == sqlstate.UNIQUE_VIOLATION and s.status == FAILED
        assert error(await run(s, "SELECT 1")) == sqlstate.IN_FAILED_SQL_TRANSACTION
        await run(s, "ROLLBACK")
        assert s.status == IDLE and rows((await run(other, "SELECT count(*) FROM t"))[0]) == [(1,)]
        # a transaction begun earlier: its last group and COMMIT still go together
        await run(s, "BEGIN", "INSERT INTO t VALUES (3)")
        calls = len(storage.calls)
        results = await run(s, "INSERT INTO t VALUES (4)", "COMMIT")
        assert len(storage.calls) == calls + 1 and storage.calls[-1].sqls == ["INSERT INTO t VALUES (4)", "COMMIT"]
        assert s.status == IDLE and not s.holds_writer and not pool.writer.locked()
        assert rows((await run(other, "SELECT count(*) FROM t"))[0]) == [(3,)]
        for x in (s, other):
            await x.close()
    asyncio.run(main())


def test_a_serialization_failure_makes_the_next_transaction_a_writer(storage):
    async def main():
        pool = FakePool(storage)
        a, b = Session(pool), Session(pool)
        await run(a, "BEGIN", "SELECT count(*) FROM t")  # a deferred read: a snapshot
        await run(b, "INSERT INTO t VALUES (1)")         # another writer commits
        assert error(await run(a, "INSERT INTO t VALUES (2)")) == sqlstate.SERIALIZATION_FAILURE
        await run(a, "ROLLBACK")
        assert a.turn.retry_as_writer
        await run(a, "BEGIN", "SELECT count(*) FROM t")
        assert storage.calls[-1].sqls[0] == "BEGIN IMMEDIATE" and a.holds_writer
        await run(a, "INSERT INTO t VALUES (2)", "COMMIT")
        assert not a.turn.retry_as_writer
        await a.close()
        await b.close()
    asyncio.run(main())


def test_cancel_a_running_statement_and_a_wait(storage):
    async def main():
        pool = FakePool(storage, wait_timeout=5.0)
        s, other = Session(pool), Session(pool)
        endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        running = asyncio.ensure_future(run(s, endless))
        await asyncio.to_thread(storage.running.wait, 5)
        while not running.done():  # until the interrupt lands inside the statement
            await s.interrupt()
            await asyncio.sleep(0.02)
        assert error(running.result()) == sqlstate.QUERY_CANCELED and s.status == IDLE
        # waiting for the writer token: the cancel ends the wait
        await run(other, "BEGIN", "INSERT INTO t VALUES (1)")
        waiting = asyncio.ensure_future(run(s, "INSERT INTO t VALUES (2)"))
        await asyncio.sleep(0.05)
        await s.interrupt()
        results = await asyncio.wait_for(waiting, 1)
        assert error(results) == sqlstate.QUERY_CANCELED
        assert results[0].error.message == "canceling statement due to user request"
        await run(other, "ROLLBACK")
        # inside a transaction, a cancelled statement fails the transaction
        await run(s, "BEGIN", "SELECT 1")
        running = asyncio.ensure_future(run(s, endless))
        await asyncio.to_thread(storage.running.wait, 5)
        while not running.done():
            await s.interrupt()
            await asyncio.sleep(0.02)
        assert error(running.result()) == sqlstate.QUERY_CANCELED and s.status == FAILED
        await s.close()
        await other.close()
    asyncio.run(main())


def test_reads_go_to_the_replica_when_the_policy_allows(tmp_path, storage):
    async def main():
        replica = Storage(storage.path, applied=0)  # the same data; how far it has applied is ours to say
        s = Session(FakePool(storage), Replicas(pools=ReplicaPools(FakePool(replica))))
        await run(s, "SELECT 1")
        assert s.served_by_replica and len(replica.calls) == 1 and replica.calls[0].read_only
        await run(s, "INSERT INTO t VALUES (1)")  # writes: always the primary
        assert not s.served_by_replica and s.frame_no == 1 and len(replica.calls) == 1
        # read your writes: the replica has not applied frame 1, so the primary answers
        assert rows((await run(s, "SELECT count(*) FROM t"))[0]) == [(1,)]
        assert not s.served_by_replica and replica.calls[-1].sqls == ["SELECT count(*) FROM t"]
        replica.applied = 1
        await run(s, "SELECT count(*) FROM t")
        assert s.served_by_replica
        # a transaction reads on the primary
        await run(s, "BEGIN", "SELECT 1", "COMMIT")
        assert not s.served_by_replica
        # STRONG never uses the replica
        await run(s, "SET sqld.consistency = strong")
        calls = len(replica.calls)
        await run(s, "SELECT 1")
        assert not s.served_by_replica and len(replica.calls) == calls
        await run(s, "SET sqld.consistency = read_your_writes")
        # a replica that fails is skipped for a while: the primary answers
        replica.down = True
        assert rows((await run(s, "SELECT 1"))[0]) == [(1,)] and not s.served_by_replica
        replica.down = False
        calls = len(replica.calls)
        await run(s, "SELECT 1")
        assert not s.served_by_replica and len(replica.calls) == calls  # still skipped
        await s.close()
    asyncio.run(main())


def test_a_connection_with_session_state_stays_with_the_session(storage):
    async def main():
        pool = FakePool(storage)
        s = Session(pool)
        await run(s, "CREATE TEMP TABLE scratch (x)")
        assert s.own is not None
        await run(s, "INSERT INTO scratch VALUES (1)")
        assert rows((await run(s, "SELECT x FROM scratch"))[0]) == [(1,)]  # only that connection has it
        await run(s, "BEGIN", "INSERT INTO scratch VALUES (2)", "COMMIT")
        assert rows((await run(s, "SELECT count(*) FROM scratch"))[0]) == [(2,)]
        own = s.own
        await s.close()
        assert own.closed and own not in pool._idle  # closed, never pooled
    asyncio.run(main())


def test_a_broken_stream_at_commit_is_in_doubt(storage):
    async def main():
        s = session_on(storage)
        await run(s, "BEGIN", "INSERT INTO t VALUES (1)")
        storage.down = True
        results = await run(s, "COMMIT")
        assert error(results) == sqlstate.TRANSACTION_RESOLUTION_UNKNOWN and s.status == IDLE
        # a read that breaks certainly did not commit: retry
        results = await run(s, "SELECT 1")
        assert error(results) == sqlstate.CANNOT_CONNECT_NOW and "retry" in results[0].error.message
        storage.down = False
        await s.close()
    asyncio.run(main())
