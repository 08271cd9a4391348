"""Page-store commits when FoundationDB answers 1021 (commit_unknown_result), on the test
double in process (its client with the gRPC stub replaced by direct calls: no sockets)."""
from __future__ import annotations

import pytest

from sqld.v1 import fdbdouble_pb2 as pb
from storage.fdb import gc, keys
from storage.fdb.backend import open_databases
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

