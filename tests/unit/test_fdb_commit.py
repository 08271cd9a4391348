"""Page-store commits: when FoundationDB answers 1021 (commit_unknown_result), and page 1
rebased between concurrent writers; on the test double in process (its client with the
gRPC stub replaced by direct calls: no sockets)."""
from __future__ import annotations

import pytest

from sqld.storage.mvsqlite import gc, keys
from sqld.storage.mvsqlite.backend import open_databases
from sqld.testing.v1 import fdbdouble_pb2 as pb
from tests.unit.test_fdb_double import InProcessKv, _rows


@pytest.fixture
def db():
    return open_databases(InProcessKv(), ["main"], "unit-commit/", retention_seconds=3600, gc_interval=0)["main"]


def _inject(db, count: int, apply: bool) -> None:
    """The next `count` page-store commits (they write the `w` key) answer 1021."""
    db.store.kv.stub.InjectUnknownResult(pb.InjectUnknownResultRequest(
        count=count, key_prefix=keys.write_marker(db.store.ns), apply=apply))


def _unknown_results(db) -> int:
    return db.store.kv.stub.Stats(pb.StatsRequest()).unknown_results


@pytest.mark.parametrize("apply", [True, False], ids=["applied", "not-applied"])
def test_a_commit_answered_1021_commits_exactly_once_without_a_false_conflict(db, apply):
    conn = db.connect()
    _rows(conn, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    _rows(conn, "INSERT INTO t VALUES (1, 0)")
    _inject(db, 2, apply)
    _rows(conn, "INSERT INTO t VALUES (2, 0)")        # _rows fails the test on any error (40001)
    _rows(conn, "UPDATE t SET v = v + 1")
    assert _unknown_results(db) == 2
    # The connection's snapshot moved to the version that really committed: it goes on
    # committing without conflicting with itself.
    _rows(conn, "UPDATE t SET v = v + 10 WHERE id = 1")
    assert _rows(conn, "SELECT id, v FROM t ORDER BY id") == [(1, 11), (2, 1)]
    fresh = db.connect()
    assert _rows(fresh, "SELECT id, v FROM t ORDER BY id") == [(1, 11), (2, 1)]
    assert _rows(fresh, "PRAGMA integrity_check") == [("ok",)]
    conn.close()
    fresh.close()


def test_commit_ids_are_collected_behind_the_window(db, monkeypatch):
    conn = db.connect()
    _rows(conn, "CREATE TABLE t (v INTEGER)")
    for i in range(5):
        _rows(conn, f"INSERT INTO t VALUES ({i})")
    prefix = db.store.ns + b"i"

    def ids() -> int:
        tr = db.store.kv.transaction()
        return len(tr.get_ranges([(prefix, prefix + b"\xff", 0, False)])[0])
    assert ids() == 6
    gc.collect(db.store, retention_seconds=0)
    assert ids() == 6  # kept for CHANGELOG_MIN_SECONDS at least: a retry may still look for one
    monkeypatch.setattr(gc, "CHANGELOG_MIN_SECONDS", 0.0)
    gc.collect(db.store, retention_seconds=0)
    assert ids() <= 1  # only an id of the current millisecond may stay
    assert _rows(conn, "SELECT count(*) FROM t") == [(5,)]
    conn.close()



def test_a_rebased_commit_keeps_the_page_count_another_writer_left(db):
    """Page 1 is rebased between writers of different tables, also over another writer's
    growth of the file: the rebased commit must leave that page count, in its connection and
    in the changelog other connections follow, or they read past the end of the file they
    believe in ("database disk image is malformed")."""
    c1, c2 = db.connect(), db.connect()
    _rows(c1, "CREATE TABLE t1 (x)")
    _rows(c1, "CREATE TABLE t2 (x)")
    _rows(c2, "SELECT count(*) FROM t2")  # c2 follows the changelog from here on
    _rows(c1, "BEGIN")
    _rows(c1, "INSERT INTO t1 VALUES (1)")  # changes t1's page, and page 1's counter only
    _rows(c2, "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20) "
              "INSERT INTO t2 SELECT randomblob(1000) FROM n")  # grows the file
    _rows(c1, "COMMIT")  # rebased over c2's page 1
    for conn in (c1, c2, db.connect()):
        assert _rows(conn, "SELECT (SELECT count(*) FROM t1), (SELECT count(*) FROM t2)") == [(1, 20)]
        assert _rows(conn, "PRAGMA integrity_check") == [("ok",)]
        conn.close()
