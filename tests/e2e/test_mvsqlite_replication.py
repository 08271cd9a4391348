"""Replication of an mvsqlite database: page-store commits become frames in the same log.

Replicas are the same local SQLite files as for the file backend; what differs is the feed
(storage/mvsqlite/capture.py): the changelog of the page store, from every storage process.
Runs on the FoundationDB TEST DOUBLE, or on a real cluster when FDB_CLUSTER_FILE is set.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time

import apsw
import psycopg
import pytest

from sqld.storage.mvsqlite import keys
from sqld.storage.mvsqlite.pagestore import PageStore
from sqld.storage.mvsqlite.setup import connect_kv
from sqld.v1 import replication_pb2, replication_pb2_grpc
from tests.e2e.test_replication import Session, dbhash, integrity, status, wait_converged


def page_store_copy(stack, dest) -> None:
    """The page store's database as of now, written out as a plain SQLite file."""
    double = "" if os.environ.get("FDB_CLUSTER_FILE") else stack.addr("fdbdouble")
    kv = connect_kv(os.environ.get("FDB_CLUSTER_FILE", ""), double)
    try:
        store = PageStore(kv, keys.namespace(stack.prefix, "main"))
        version = store.current_version()
        count = store.page_count(version)
        images = store.pages_at(list(range(1, count + 1)), version)
        with open(dest, "wb") as f:
            f.write(b"".join(images[p] for p in range(1, count + 1)))
    finally:
        kv.close()


def rows(path, sql: str) -> list[tuple]:
    c = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()


def test_replicas_of_an_mvsqlite_primary_converge(own_stack, tmp_path):
    stack = own_stack(backend_name="mvsqlite", replicas=2)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        c.execute("CREATE INDEX t_v ON t (v)")
        for i in range(40):
            c.execute("INSERT INTO t (v) VALUES (randomblob(%s))", (50 + i * 97,))
        with c.transaction():
            c.execute("INSERT INTO t (v) SELECT randomblob(3000) FROM t")  # a multi-page commit
            c.execute("DELETE FROM t WHERE id % 5 = 0")
        c.execute("DROP INDEX t_v")
        c.execute("VACUUM")  # rewrites the database and shrinks it: the commit frame carries the size
        primary = c.execute("SELECT id, hex(v) FROM t ORDER BY id").fetchall()
    s = wait_converged(stack)
    assert s.head_frame_no > 0
    page_store_copy(stack, tmp_path / "primary.db")
    for name in ("replica1", "replica2"):
        assert integrity(stack.db_path(name)) == "ok"
        assert rows(stack.db_path(name), "SELECT id, hex(v) FROM t ORDER BY id") == primary
        assert dbhash(stack.db_path(name)) == dbhash(tmp_path / "primary.db")
    # reads through the replica site are served by replica1 and see the writes just made there
    with psycopg.connect(stack.replica_dsn, autocommit=True) as c:
        for i in range(10):
            c.execute("INSERT INTO t (v) VALUES (x'00')")
            assert c.execute("SELECT count(*) FROM t").fetchone()[0] == len(primary) + i + 1


@pytest.fixture
def pair(own_stack):
    """Two storage processes on one mvsqlite database, both feeding a's log; a has replica1."""
    a = own_stack(backend_name="mvsqlite", replicas=1)
    b = own_stack(share_with=a)
    for s in (a, b):
        s.allowed_errors.append(r"storage call failed|capture failed")
    return a, b


def test_two_storage_processes_feed_one_log_each_commit_once(pair, tmp_path):
    a, b = pair
    with psycopg.connect(a.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE ta (id INTEGER PRIMARY KEY, site TEXT)")
        c.execute("CREATE TABLE tb (id INTEGER PRIMARY KEY, site TEXT)")
    before = wait_converged(a, names=("replica1",)).appended_transactions
    per_writer = 60
    failures: list[BaseException] = []

    def write(dsn: str, table: str) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                for _i in range(per_writer):
                    for _ in range(20):  # a page-1 conflict with the other process is retried
                        try:
                            c.execute(f"INSERT INTO {table} (site) VALUES (%s)", (dsn,))
                            break
                        except psycopg.errors.SerializationFailure:
                            continue
                    else:
                        raise AssertionError("a commit kept conflicting")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
    threads = [threading.Thread(target=write, args=(a.dsn, "ta")), threading.Thread(target=write, args=(b.dsn, "tb"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    for dsn in (a.dsn, b.dsn):  # both processes see one sound database with every row
        with psycopg.connect(dsn, autocommit=True) as c:
            assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert c.execute("SELECT (SELECT count(*) FROM ta), (SELECT count(*) FROM tb)").fetchone() \
                == (per_writer, per_writer)
    s = wait_converged(a, names=("replica1",))
    # every commit of both processes entered the log exactly once
    assert s.appended_transactions - before == 2 * per_writer
    # as one primary, the page store: their racing appends of the same commits never looked forked
    assert s.primary_id.startswith("pagestore-") and s.last_forked_append == ""
    path = a.db_path("replica1")
    assert integrity(path) == "ok"
    page_store_copy(a, tmp_path / "primary.db")
    assert dbhash(path) == dbhash(tmp_path / "primary.db")
    assert rows(path, "SELECT count(*) FROM ta") == [(per_writer,)]
    assert rows(path, "SELECT count(*) FROM tb") == [(per_writer,)]


def _commit_unacknowledged(dsn: str, sql: str) -> None:
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(sql)
    except psycopg.Error:
        pass  # its storage process is killed before it answers


def test_a_commit_whose_process_died_before_logging_it_reaches_the_replicas(pair):
    a, b = pair
    with psycopg.connect(a.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE k (n INTEGER)")
    wait_converged(a, names=("replica1",))
    # The replication service is down: a's next commit lands in FoundationDB, then a retries its
    # Append (it never reaches the service) until a is killed.
    a.kill("replication")
    t = threading.Thread(target=_commit_unacknowledged, args=(a.dsn, "INSERT INTO k VALUES (42)"))
    t.start()
    deadline = time.monotonic() + 20
    with psycopg.connect(b.dsn, autocommit=True) as c:  # the other process sees the commit
        while c.execute("SELECT count(*) FROM k").fetchone()[0] != 1:
            assert time.monotonic() < deadline, "the commit never reached the page store"
            time.sleep(0.05)
    a.kill("storage")
    a.start("replication")
    t.join(30)
    # nobody commits any more: b's capturer finds the commit in the changelog and logs it
    deadline = time.monotonic() + 20
    while rows(a.db_path("replica1"), "SELECT count(*) FROM k") != [(1,)]:
        assert time.monotonic() < deadline, "the dead process's commit never reached the replica"
        time.sleep(0.1)
    assert rows(a.db_path("replica1"), "SELECT n FROM k") == [(42,)]
    del a.procs["storage"]  # already dead


def test_a_log_that_follows_another_page_store_gets_a_new_history(own_stack):
    stack = own_stack(backend_name="mvsqlite", replicas=1)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE h (a INTEGER); INSERT INTO h VALUES (1)")
    old = wait_converged(stack, names=("replica1",)).log_id
    # the FoundationDB data is replaced (a new namespace): the log's history is not this store's
    for name in ("replica-edge", "replica-scheduler", "edge", "scheduler", "storage"):
        stack.stop_one(name)
    svc = stack.services["storage"]
    stack.services["storage"] = dataclasses.replace(svc, argv=[x if not x.startswith(stack.prefix) else stack.prefix + "v2/"
                                                               for x in svc.argv])
    for name in ("storage", "scheduler", "edge", "replica-scheduler", "replica-edge"):
        stack.start(name)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE h2 (b INTEGER); INSERT INTO h2 VALUES (2)")
    new = wait_converged(stack, names=("replica1",))
    assert new.log_id != old
    assert "installed snapshot" in (stack.log_dir / "replica1.log").read_text()
    path = stack.db_path("replica1")
    assert rows(path, "SELECT name FROM sqlite_schema WHERE type = 'table'") == [("h2",)]
    assert rows(path, "SELECT b FROM h2") == [(2,)]


def test_replication_status_over_grpc_names_the_page_store(own_stack):
    stack = own_stack(backend_name="mvsqlite", replicas=1)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE s (a INTEGER); INSERT INTO s VALUES (1)")
    wait_converged(stack, names=("replica1",))
    with stack.channel("replication", "storage") as ch:  # Hello: a storage certificate
        hello = replication_pb2_grpc.ReplicationStub(ch).Hello(replication_pb2.HelloRequest(database="main"), timeout=5)
    assert hello.wal_position.page_store_version > 0 and hello.wal_position.page_store_id != 0
    assert hello.head_frame_no == status(stack).head_frame_no
    # a commit answers with the frame number that holds it (replica reads wait for that frame)
    session = Session(stack)
    try:
        for i in range(5):
            w = session.run(f"INSERT INTO s VALUES ({i})")
            assert w.frame_no == status(stack).head_frame_no > hello.head_frame_no
    finally:
        session.close()


def test_a_log_restored_from_before_the_gc_horizon_gets_a_new_history(own_stack, tmp_path):
    """The replication service's folder comes back from a backup older than the retention
    window: the changelog and page versions after its position are gone, so the capturer
    cannot continue the log; it starts a new history and the replica takes a snapshot."""
    stack = own_stack(backend_name="mvsqlite", replicas=1,
                      extra_args={"storage": ["--fdb-retention-seconds", "1", "--fdb-gc-interval", "0.2"]})
    stack.allowed_errors.append(r"capture failed")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE g (n INTEGER); INSERT INTO g VALUES (1)")
    old = wait_converged(stack, names=("replica1",)).log_id
    stack.stop_one("replication")
    shutil.copytree(stack.data_dir / "replication", tmp_path / "backup")
    stack.start("replication")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        for n in (2, 3):
            c.execute("INSERT INTO g VALUES (%s)", (n,))
    wait_converged(stack, names=("replica1",))
    time.sleep(2)  # past the retention window: GC moves its horizon past those commits
    stack.stop_one("storage")
    stack.stop_one("replication")
    shutil.rmtree(stack.data_dir / "replication")
    shutil.copytree(tmp_path / "backup", stack.data_dir / "replication")
    stack.start("replication")
    stack.start("storage")
    new = wait_converged(stack, names=("replica1",))
    assert new.log_id != old
    assert "new history" in (stack.log_dir / "storage.log").read_text()
    assert rows(stack.db_path("replica1"), "SELECT n FROM g ORDER BY n") == [(1,), (2,), (3,)]
