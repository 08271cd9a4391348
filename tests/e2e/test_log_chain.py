"""The replication log cannot be forged or forked silently (real processes, a raw gRPC client as the forger).

A forger that does not know the log's chain is refused (LOG_FORKED). One that computes it (only
authentication stops that) gets its transactions in; then the primary's next commits are not
dropped as "already held": they fail loudly until the operator resets the log, and the new
history brings the replicas back to the primary's content.
"""
from __future__ import annotations

import threading
import time

import grpc
import psycopg
import pytest

from sqld.common import log_chain
from sqld.v1 import replication_pb2 as pb
from sqld.v1 import replication_pb2_grpc
from tests.e2e.test_mvsqlite_replication import rows
from tests.e2e.test_replication import dbhash, status, wait_converged

DIVERGED = "replication log diverged"


def _stub(stack) -> tuple[grpc.Channel, replication_pb2_grpc.ReplicationStub]:
    ch = stack.channel("replication", "storage")  # a primary's certificate: only the chain can tell a forgery
    return ch, replication_pb2_grpc.ReplicationStub(ch)


def _head_transaction(stack, hello: pb.HelloResponse) -> pb.Transaction:
    """The log's head transaction, read as a replica reads it (only replicas may)."""
    req = pb.FramesRequest(database="main", log_id=hello.log_id, from_frame_no=hello.head_frame_no,
                           replica_id="forger")
    with stack.channel("replication", "replica1") as ch:
        stream = replication_pb2_grpc.ReplicationStub(ch).Frames(req, timeout=10)
        try:
            return next(stream).transactions[-1]
        finally:
            stream.cancel()


def _renumbered(txn: pb.Transaction, first: int, commit_size: int) -> pb.Transaction:
    frames = [pb.Frame(frame_no=first + i, page_no=f.page_no, commit_size=0, page=f.page)
              for i, f in enumerate(txn.frames)]
    frames[-1].commit_size = commit_size
    return pb.Transaction(frames=frames, commit_time_ms=1)


def test_an_append_that_does_not_continue_the_chain_is_refused(own_stack):
    stack = own_stack(replicas=2, backend_name="sqlite")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE f (a INTEGER, b TEXT)")
        c.execute("INSERT INTO f VALUES (1, 'real')")
    wait_converged(stack)
    ch, stub = _stub(stack)
    with ch:
        hello = stub.Hello(pb.HelloRequest(database="main"), timeout=5)
        head = _head_transaction(stack, hello)
        forged = _renumbered(head, hello.head_frame_no + 1, head.frames[-1].commit_size)
        for prev in (b"", b"\0" * 32, log_chain.genesis(hello.log_id)):
            with pytest.raises(grpc.RpcError) as e:
                stub.Append(pb.AppendRequest(database="main", log_id=hello.log_id, page_size=hello.page_size,
                                             transactions=[forged], prev_chain=prev,
                                             primary_id=hello.primary_id), timeout=10)
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert e.value.details().startswith("LOG_FORKED"), e.value.details()
        after = stub.Hello(pb.HelloRequest(database="main"), timeout=5)
        assert (after.head_frame_no, after.head_chain) == (hello.head_frame_no, hello.head_chain)
    assert "LOG_FORKED" in status(stack).last_forked_append
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        for i in range(2, 12):
            c.execute("INSERT INTO f VALUES (%s, 'real')", (i,))
    wait_converged(stack)
    for name in ("replica1", "replica2"):
        assert dbhash(stack.db_path(name)) == dbhash(stack.db_path("storage")), name
    assert DIVERGED not in (stack.log_dir / "storage.log").read_text()


def test_a_forged_chain_stops_commits_loudly_until_the_operator_resets_the_log(own_stack):
    stack = own_stack(replicas=2, backend_name="sqlite")
    stack.allowed_errors.append(DIVERGED)
    primary = psycopg.connect(stack.dsn, autocommit=True)
    try:
        primary.execute("CREATE TABLE f (a INTEGER, b TEXT)")
        primary.execute("INSERT INTO f VALUES (1, 'real')")
        ch, stub = _stub(stack)
        with ch:
            one_row = _head_transaction(stack, stub.Hello(pb.HelloRequest(database="main"), timeout=5))
            primary.execute("INSERT INTO f VALUES (2, 'real')")
            wait_converged(stack)
            # the forger knows the algorithm: it replays the table as it was with one row,
            # correctly chained, as the primary (its id is in Hello)
            hello = stub.Hello(pb.HelloRequest(database="main"), timeout=5)
            size = _head_transaction(stack, hello).frames[-1].commit_size
            forged = _renumbered(one_row, hello.head_frame_no + 1, size)
            stub.Append(pb.AppendRequest(
                database="main", log_id=hello.log_id, page_size=hello.page_size, transactions=[forged],
                wal_position=hello.wal_position, prev_chain=hello.head_chain, primary_id=hello.primary_id),
                timeout=10)
            forged_head = wait_converged(stack).head_frame_no
            assert rows(stack.db_path("replica1"), "SELECT a FROM f ORDER BY a") == [(1,)]  # forged content

            # the primary's next commits are not dropped as frames the log "already holds"
            for i in (3, 4, 5):
                with pytest.raises(psycopg.Error) as e:
                    primary.execute("INSERT INTO f VALUES (%s, 'real')", (i,))
                assert e.value.sqlstate == "58000" and DIVERGED in str(e.value), e.value
                assert "ResetLog" in str(e.value) and hello.log_id in str(e.value)
            # durable on the primary, not in the log, not claimed by any replica
            assert rows(stack.db_path("storage"), "SELECT a FROM f ORDER BY a") == [(1,), (2,), (3,), (4,), (5,)]
            s = status(stack)
            assert s.head_frame_no == forged_head and "LOG_FORKED" in s.last_forked_append
            storage_log = (stack.log_dir / "storage.log").read_text()
            assert sum(DIVERGED in line and "level=error" in line for line in storage_log.splitlines()) == 1

            # storage restarts while forked: it serves reads and remembers the fork
            stack.stop_one("storage")
            stack.start("storage")
            primary.close()
            primary = psycopg.connect(stack.dsn, autocommit=True)
            assert primary.execute("SELECT count(*) FROM f").fetchone() == (5,)
            with pytest.raises(psycopg.Error) as e:
                primary.execute("INSERT INTO f VALUES (6, 'real')")
            assert DIVERGED in str(e.value)
            assert status(stack).head_frame_no == forged_head

            # the documented way out: a new history, asked for by the operator
            with stack.channel("replication", "admin") as admin:
                replication_pb2_grpc.ReplicationStub(admin).ResetLog(
                    pb.ResetLogRequest(database="main", if_log_id=hello.log_id), timeout=10)
        primary.execute("INSERT INTO f VALUES (7, 'real')")
        s = wait_converged(stack)
        assert s.log_id != hello.log_id and not s.last_forked_append
        expected = [(i,) for i in range(1, 8)]
        assert rows(stack.db_path("storage"), "SELECT a FROM f ORDER BY a") == expected
        for name in ("replica1", "replica2"):
            assert dbhash(stack.db_path(name)) == dbhash(stack.db_path("storage")), name
        assert rows(stack.db_path("replica2"), "SELECT a FROM f ORDER BY a") == expected
        primary.execute("INSERT INTO f VALUES (8, 'real')")
        wait_converged(stack)
        assert dbhash(stack.db_path("replica1")) == dbhash(stack.db_path("storage"))
    finally:
        primary.close()
    storage_log = (stack.log_dir / "storage.log").read_text()
    assert "replication log follows this primary again" in storage_log


def test_kill_9_of_the_primary_mid_append_is_not_a_fork(own_stack):
    """Commits stream while storage is killed: after the restart it goes on with the same
    chain (re-appending what the log lacks), no fork is reported, and replicas equal it."""
    stack = own_stack(replicas=1, backend_name="sqlite")
    stack.allowed_errors.append(r"storage call failed")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE k9 (n INTEGER PRIMARY KEY, b BLOB)")
    acknowledged: list[int] = []

    def writer() -> None:
        with psycopg.connect(stack.dsn, autocommit=True) as c:
            for n in range(1, 100_000):
                try:
                    c.execute("INSERT INTO k9 VALUES (%s, randomblob(3000))", (n,))
                except psycopg.Error:
                    return
                acknowledged.append(n)
    t = threading.Thread(target=writer)
    t.start()
    while len(acknowledged) < 40:
        time.sleep(0.005)
    stack.kill("storage")
    t.join(30)
    stack.start("storage")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        for n in range(200_000, 200_020):
            c.execute("INSERT INTO k9 VALUES (%s, randomblob(100))", (n,))
    s = wait_converged(stack, names=("replica1",))
    assert s.last_forked_append == ""
    assert DIVERGED not in (stack.log_dir / "storage.log").read_text()
    assert dbhash(stack.db_path("replica1")) == dbhash(stack.db_path("storage"))
    present = {r[0] for r in rows(stack.db_path("replica1"), "SELECT n FROM k9")}
    assert set(acknowledged) <= present
