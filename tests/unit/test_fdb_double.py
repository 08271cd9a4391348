"""The FoundationDB test double's semantics, and the page store on top of it (in process).

The double's Store is driven through the same client (testing.fdbdouble.client.DoubleTransaction) that
storage uses, with its gRPC stub replaced by direct calls: no sockets.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from sqld.storage.mvsqlite import gc, keys
from sqld.storage.mvsqlite.backend import TimeTravelError, open_databases
from sqld.storage.mvsqlite.kv import KvError, get, run
from sqld.storage.mvsqlite.vfs import Commits
from sqld.testing.fdbdouble import server as double_server
from sqld.testing.fdbdouble.client import DoubleTransaction
from sqld.v1 import common_pb2


class InProcessStub:
    """The FdbDouble stub's calls, answered by a DoubleServicer in this process."""

    def __init__(self) -> None:
        self.servicer = double_server.DoubleServicer()

    def GetReadVersion(self, req, timeout=None):  # noqa: N802
        return asyncio.run(self.servicer.GetReadVersion(req, None))

    def Read(self, req, timeout=None):  # noqa: N802
        return asyncio.run(self.servicer.Read(req, None))

    def Commit(self, req, timeout=None):  # noqa: N802
        return asyncio.run(self.servicer.Commit(req, None))

    def Stats(self, req, timeout=None):  # noqa: N802
        return asyncio.run(self.servicer.Stats(req, None))

    def InjectUnknownResult(self, req, timeout=None):  # noqa: N802
        return asyncio.run(self.servicer.InjectUnknownResult(req, None))


class InProcessKv:
    def __init__(self) -> None:
        self.stub = InProcessStub()

    def transaction(self) -> DoubleTransaction:
        return DoubleTransaction(self.stub)  # type: ignore[arg-type]

    def close(self) -> None:
        pass


def test_read_conflict_fails_the_later_commit_with_1020():
    kv = InProcessKv()
    t1, t2 = kv.transaction(), kv.transaction()
    assert get(t1, b"k") is None and get(t2, b"k") is None
    t1.set(b"k", b"1")
    t2.set(b"k", b"2")
    t1.commit()
    with pytest.raises(KvError) as info:
        t2.commit()
    assert info.value.code == 1020 and info.value.retryable


def test_snapshot_reads_and_limits_conflict_only_on_what_was_read():
    kv = InProcessKv()
    run(kv, lambda tr: [tr.set(b"a", b"1"), tr.set(b"c", b"3")])
    t1 = kv.transaction()
    assert t1.get_ranges([(b"a", b"z", 1, False)])[0] == [(b"a", b"1")]  # conflicts on [a, a\0)
    assert get(t1, b"c", snapshot=True) == b"3"
    run(kv, lambda tr: tr.set(b"c", b"x"))  # outside what t1 read serializably
    t1.set(b"out", b"")
    t1.commit()


def test_versionstamped_keys_and_reads_at_a_version():
    kv = InProcessKv()

    def write(value: bytes):
        return lambda tr: tr.set_versionstamped_key(b"v" + keys.PLACEHOLDER, 1, value)
    from sqld.storage.mvsqlite.kv import run_stamped
    _, s1 = run_stamped(kv, write(b"one"))
    _, s2 = run_stamped(kv, write(b"two"))
    assert keys.stamp_version(s1) < keys.stamp_version(s2)
    tr = kv.transaction()
    upto_s1 = tr.get_ranges([(b"v", b"v" + keys.version_bound(keys.stamp_version(s1)), 1, True)])[0]
    assert upto_s1 == [(b"v" + s1, b"one")]


def test_too_old_and_too_large(monkeypatch):
    kv = InProcessKv()
    tr = kv.transaction()
    tr.read_version()
    monkeypatch.setattr(double_server, "MVCC_WINDOW", -1_000_000)  # every read version is now too old
    with pytest.raises(KvError) as info:
        get(tr, b"k")
    assert info.value.code == 1007
    monkeypatch.undo()
    big = kv.transaction()
    for i in range(110):
        big.set(b"k%d" % i, b"x" * 100_000)
    with pytest.raises(KvError) as info:
        big.commit()
    assert info.value.code == 2101 and not info.value.retryable


def test_the_double_forgets_values_no_read_may_ask_for(monkeypatch):
    """Old values leave memory once they are behind the MVCC window (as in FoundationDB):
    a key keeps its newest value, a cleared key is forgotten; reads inside the window hold."""
    monkeypatch.setattr(double_server, "MVCC_WINDOW", 1_000_000)  # 1 s of versions
    kv = InProcessKv()
    store = kv.stub.servicer.store
    for i in range(5):
        run(kv, lambda tr, i=i: tr.set(b"k", b"%d" % i))
    run(kv, lambda tr: [tr.set(b"x%04d" % i, b"v" * 100) for i in range(2000)])
    run(kv, lambda tr: tr.clear_range(b"x", b"y"))
    assert len(store.history[b"k"]) == 5
    time.sleep(1.1)
    run(kv, lambda tr: tr.set(b"later", b""))  # commits compact what fell behind the window
    assert [v for _, v in store.history[b"k"]] == [b"4"]
    assert get(kv.transaction(), b"k") == b"4"
    assert not any(k.startswith(b"x") for k in store.keys) and b"x0001" not in store.history
    assert kv.transaction().get_ranges([(b"", b"\xff", 0, False)])[0] == [(b"k", b"4"), (b"later", b"")]


def _rows(conn, sql: str):
    result = conn.execute([common_pb2.Statement(sql=sql)], False)[-1]
    assert not result.HasField("error"), result.error
    return [tuple(getattr(v, v.WhichOneof("value")) for v in r.values) for r in result.ok.rows]


@pytest.fixture(scope="module")
def gcdb():
    return open_databases(InProcessKv(), ["gcdb"], "unit/", retention_seconds=3600, gc_interval=0)["gcdb"]


def test_gc_keeps_the_retention_window_and_drops_what_is_behind_it(gcdb):
    conn = gcdb.connect()
    _rows(conn, "CREATE TABLE t (v TEXT)")
    _rows(conn, "INSERT INTO t VALUES ('v0')")
    t_old = int(time.time() * 1000)
    while int(time.time() * 1000) <= t_old:
        pass
    for i in range(1, 6):
        _rows(conn, f"UPDATE t SET v = 'v{i}'")
    old = gcdb.connect_at(unix_ms=t_old)
    assert _rows(old, "SELECT v FROM t") == [("v0",)]
    old.close()
    assert gc.collect(gcdb.store, retention_seconds=3600) == {"index": 0, "images": 0}
    removed = gc.collect(gcdb.store, retention_seconds=0)
    assert removed["index"] >= 5 and removed["images"] >= 5
    assert _rows(conn, "SELECT v FROM t") == [("v5",)]
    fresh = gcdb.connect()
    assert _rows(fresh, "SELECT v FROM t") == [("v5",)]
    assert _rows(fresh, "PRAGMA integrity_check") == [("ok",)]
    # The old version is gone: its page index entries were collected.
    assert gcdb.store.read_pages([2], gcdb.store.version_at(t_old)) == {}
    gcdb.retention_seconds = 0.001
    with pytest.raises(TimeTravelError):
        gcdb.connect_at(unix_ms=t_old)
    conn.close()
    fresh.close()


def test_gc_keeps_what_restore_needs_from_the_cutoff_on_and_nothing_older():
    """The frame notes of restore AS_OF_FRAME: those of versions behind GC's cutoff go, the
    cutoff's own stays (the state as of it is still whole), as do later ones and other histories'."""
    db = open_databases(InProcessKv(), ["notes"], "unit/", retention_seconds=3600, gc_interval=0)["notes"]
    conn = db.connect()
    _rows(conn, "CREATE TABLE t (v INTEGER)")
    versions = []
    for i in range(4):
        _rows(conn, f"INSERT INTO t VALUES ({i})")
        versions.append(db.store.version_at(int(time.time() * 1000) + 1))
        if i == 1:
            edge = time.time()
            time.sleep(0.2)  # the window's edge falls between the 2nd and 3rd insert
    db.store.record_frames("log-a", [(10 * (i + 1), v) for i, v in enumerate(versions)])
    db.store.record_frames("log-b", [(5, versions[0])])
    assert [db.store.version_of_frame("log-a", f) for f in (9, 10, 25, 45)] == [0, versions[0], versions[1], versions[3]]
    gc.collect(db.store, retention_seconds=time.time() - edge - 0.05)
    assert db.store.horizon() == versions[1]
    assert [db.store.version_of_frame("log-a", f) for f in (15, 25, 35)] == [0, versions[1], versions[2]]
    assert db.store.version_of_frame("log-b", 5) == 0
    old = db.connect_at(version=versions[1])
    assert _rows(old, "SELECT v FROM t ORDER BY v") == [(0,), (1,)]
    old.close()
    conn.close()


def test_a_connection_is_told_of_its_own_commits_only():
    """The VFS notes each page-store commit in the Commits of the connection that made it
    (taken after each statement, so the commit is logged before it is acknowledged); a second
    VFS in the process (another open_databases) has a name of its own."""
    first = open_databases(InProcessKv(), ["main"], "unit/", retention_seconds=3600, gc_interval=0)["main"]
    second = open_databases(InProcessKv(), ["main"], "unit/", retention_seconds=3600, gc_interval=0)["main"]
    assert first.vfs.vfs_name != second.vfs.vfs_name
    a_commits, b_commits = Commits(), Commits()
    a = first.vfs.open("main", None, a_commits)
    b = first.vfs.open("main", None, b_commits)
    for conn in (a, b):
        conn.execute("PRAGMA journal_mode=MEMORY")  # as the backend sets it: no journal file
    a.execute("CREATE TABLE t (x)")
    assert a_commits.take() > 0 and a_commits.take() == 0 and b_commits.take() == 0
    b.execute("SELECT count(*) FROM t").fetchall()  # a read commits nothing
    assert b_commits.take() == 0
    b.execute("INSERT INTO t VALUES (1)")
    assert b_commits.take() > 0 and a_commits.take() == 0
    other = second.vfs.open("main", None, Commits())
    assert other.execute("SELECT count(*) FROM sqlite_schema").fetchall() == [(0,)]  # its own store
    for conn in (a, b, other):
        conn.close()


def test_retention_is_24_hours_on_a_cluster_and_600_s_on_the_double_unless_given():
    from sqld.storage import config
    from sqld.storage.mvsqlite import setup
    assert setup.retention(config.load([], {})) == 86400
    assert setup.retention(config.load(["--fdb-double", "127.0.0.1:1"], {})) == 600
    env = {"SQLD_STORAGE_FDB_RETENTION_SECONDS": "4"}
    assert setup.retention(config.load(["--fdb-double", "127.0.0.1:1"], env)) == 4
    assert setup.retention(config.load(["--fdb-retention-seconds", "0"], {})) == 0
