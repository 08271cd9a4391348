"""The page store's list of databases (storage/mvsqlite/catalog.py) on the FoundationDB test
double in process: create, fork of a version while the source takes writes, drop (every key
gone), a commit into a dropped database refused, two spaces on one store."""
from __future__ import annotations

import threading

import pytest

from sqld.storage.mvsqlite import catalog
from sqld.storage.mvsqlite.backend import MvDatabase, open_databases
from sqld.storage.mvsqlite.kv import strinc
from sqld.v1 import common_pb2
from tests.unit.test_fdb_double import InProcessKv, _rows


def _space(kv, prefix="unit-catalog/"):
    main = open_databases(kv, ["main"], prefix, retention_seconds=3600, gc_interval=0)["main"]
    assert isinstance(main, MvDatabase) and main.space is not None
    return main.space


def _keys(kv, ns: bytes) -> int:
    return len(kv.transaction().get_ranges([(ns, strinc(ns), 0, False)], True)[0])


def test_create_fork_and_drop():
    kv = InProcessKv()
    space = _space(kv)
    assert set(space.listed()) == {"main"}
    src = space.create("src")
    conn = src.connect()
    _rows(conn, "CREATE TABLE a (id INTEGER PRIMARY KEY, pad BLOB)")
    _rows(conn, "CREATE TABLE b (id INTEGER PRIMARY KEY)")
    _rows(conn, "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 2000) "
                "INSERT INTO a SELECT n, randomblob(300) FROM s")
    _rows(conn, "INSERT INTO b SELECT id FROM a")
    stop = threading.Event()

    def writer() -> None:  # one row into a and b per transaction: a fork sees equal counts
        w = src.connect()
        n = 2000
        while not stop.is_set():
            n += 1
            _rows(w, "BEGIN")
            _rows(w, f"INSERT INTO a VALUES ({n}, randomblob(300))")
            _rows(w, f"INSERT INTO b VALUES ({n})")
            _rows(w, "COMMIT")
        w.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        forks = [space.create(f"fork{i}", src) for i in range(3)]
    finally:
        stop.set()
        thread.join()
    for fork in forks:
        f = fork.connect()
        a, b = _rows(f, "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)")[0]
        assert a == b >= 2000
        assert _rows(f, "PRAGMA integrity_check") == [("ok",)]
        _rows(f, "INSERT INTO a VALUES (-1, x'00')")  # a database of its own
        f.close()
    assert _rows(conn, "SELECT count(*) FROM a WHERE id = -1") == [(0,)]
    with pytest.raises(catalog.Exists):
        space.create("src")
    ns = src.store.ns
    assert _keys(kv, ns) > 0
    assert space.drop("src") and not space.drop("src")
    assert _keys(kv, ns) == 0 and "src" not in space.listed()
    # a connection still open on it cannot write into the dropped namespace (58030), and what
    # its commit uploaded before it found out is cleared
    result = conn.execute([common_pb2.Statement(sql="INSERT INTO b VALUES (-5)")], False)[-1]
    assert result.HasField("error") and result.error.sqlstate == "58030", result
    assert _keys(kv, ns) == 0


def test_another_space_on_the_same_store_sees_the_list():
    kv = InProcessKv()
    first, second = _space(kv), _space(kv)
    made = first.create("shared")
    _rows(made.connect(), "CREATE TABLE t (x)")
    assert catalog.lookup(kv, "unit-catalog/", "shared") == made.store.ns
    assert second.listed()["shared"] == made.store.ns
    other = second.open("shared", second.listed()["shared"])
    assert _rows(other.connect(), "SELECT count(*) FROM sqlite_schema") == [(1,)]
    assert _space(kv, "other-prefix/").listed().keys() == {"main"}  # another prefix, another list
