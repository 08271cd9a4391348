"""Transactions and databases larger than any gRPC message, through real processes.

A 300 MiB row is logged, streamed and applied in parts (no message above a few MiB), deleted,
and storage restarts afterwards; a database over 1 GiB starts a new history (ResetLog) and the
replicas install it. Each process's peak memory (VmHWM) stays within the bounds the README
states for replication traffic, so none of them ever held a transaction or a database whole.
"""
from __future__ import annotations

import time

import apsw
import psycopg

from sqld.v1 import replication_pb2 as pb
from sqld.v1 import replication_pb2_grpc
from tests.e2e.test_replication import dbhash, status, wait_converged

MIB = 1 << 20
ROW = 300 * MIB
# VmHWM bounds (MiB). The primary's storage also runs SQLite, which holds a big value in memory
# itself (randomblob's result and the record it builds: ~2x the row), hence ROW-relative.
REPLICATION_MIB = 250
REPLICA_MIB = 250
PRIMARY_MIB = 2 * ROW // MIB + 250


def _peak_mib(stack, name: str) -> int:
    with open(f"/proc/{stack.procs[name].pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmHWM for {name}")


def _check_peaks(stack, primary_mib: int) -> dict[str, int]:
    peaks = {n: _peak_mib(stack, n) for n in ("replication", "storage", "replica1", "replica2")}
    assert peaks["replication"] < REPLICATION_MIB, peaks
    assert peaks["replica1"] < REPLICA_MIB and peaks["replica2"] < REPLICA_MIB, peaks
    assert peaks["storage"] < primary_mib, peaks
    return peaks


def _converged_equal(stack, timeout: float = 150) -> None:
    wait_converged(stack, timeout=timeout)
    primary = dbhash(stack.db_path("storage"))
    for name in ("replica1", "replica2"):
        assert dbhash(stack.db_path(name)) == primary, name


def test_a_300_mib_row_replicates_in_parts_is_deleted_and_storage_restarts(own_stack):
    stack = own_stack(replicas=2, backend_name="sqlite")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
        c.execute("INSERT INTO t VALUES (1, x'00')")
        # the query path's own message limit is another piece of work: the row is made in SQL
        c.execute(f"INSERT INTO t VALUES (2, randomblob({ROW}))")
        before = status(stack).head_frame_no
        assert c.execute("SELECT length(b) FROM t WHERE id = 2").fetchone()[0] == ROW
        c.execute("INSERT INTO t VALUES (3, 'after')")  # commits after it are acknowledged
    s = wait_converged(stack, timeout=150)
    assert s.head_frame_no > before > ROW // 4096  # one transaction of ~77,000 frames
    _converged_equal(stack)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("DELETE FROM t WHERE id = 2")
        c.execute("INSERT INTO t VALUES (4, 'after delete')")
    _converged_equal(stack)
    peaks = _check_peaks(stack, PRIMARY_MIB)

    stack.stop_one("storage")
    stack.start("storage")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("INSERT INTO t VALUES (5, 'after restart')")
        assert [r[0] for r in c.execute("SELECT id FROM t ORDER BY id")] == [1, 3, 4, 5]
    _converged_equal(stack)
    assert "replication of db main is broken" not in (stack.log_dir / "storage.log").read_text()
    print("peaks MiB", peaks)


def _build(path: str, mib: int) -> None:
    c = apsw.Connection(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE IF NOT EXISTS big (id INTEGER PRIMARY KEY, b BLOB)")
    for k in range(0, mib, 64):  # 64 rows of 1 MiB per transaction
        c.execute(f"INSERT INTO big (b) SELECT randomblob({MIB}) FROM (WITH RECURSIVE n(x) AS "
                  f"(SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {min(64, mib - k)}) SELECT x FROM n)")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def test_a_database_over_a_gib_starts_a_new_history_and_replicas_install_it(own_stack):
    stack = own_stack(replicas=2, backend_name="sqlite")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE small (a INTEGER)")
        c.execute("INSERT INTO small VALUES (1)")
    wait_converged(stack)
    old = status(stack).log_id
    stack.stop_one("storage")
    _build(str(stack.db_path("storage")), 1100)  # the primary's database grows to ~1.1 GiB offline
    with stack.channel("replication", "admin") as ch:
        stub = replication_pb2_grpc.ReplicationStub(ch)
        hello = stub.ResetLog(pb.ResetLogRequest(database="main", if_log_id=old), timeout=30)
    assert hello.log_id != old and hello.head_frame_no == 0
    t0 = time.monotonic()
    # A log id it does not know: a new history, the whole database its image, logged before it
    # serves (1.1 GiB: longer than the usual 30 s on a loaded two-core machine).
    stack.start("storage", health_timeout=180)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM big").fetchone()[0] == 1100
        c.execute("INSERT INTO small VALUES (2)")
    s = _converged_wait_and_check(stack)
    assert s.log_id not in (old, "") and s.head_frame_no > 1100 * MIB // 4096  # the primary resets once more
    print("new history of", s.head_frame_no, "frames converged in", round(time.monotonic() - t0, 1), "s",
          "peaks MiB", _check_peaks(stack, 250))


def _converged_wait_and_check(stack) -> pb.LogStatus:
    s = wait_converged(stack, timeout=150)
    _converged_equal(stack)
    return s
