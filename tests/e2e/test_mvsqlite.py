"""The mvsqlite backend (pages in FoundationDB) with two storage processes on one database.

Runs on the FoundationDB TEST DOUBLE (testing/fdbdouble/server.py), or on a real cluster
when FDB_CLUSTER_FILE is set.
"""
from __future__ import annotations

import datetime
import os
import threading
import time

import grpc
import psycopg
import pytest

from sqld.storage.mvsqlite import keys
from sqld.storage.mvsqlite.kv import strinc
from sqld.storage.mvsqlite.setup import connect_kv
from sqld.testing.v1 import fdbdouble_pb2, fdbdouble_pb2_grpc
from sqld.v1 import common_pb2, query_pb2, query_pb2_grpc

ON_THE_DOUBLE = pytest.mark.skipif(bool(os.environ.get("FDB_CLUSTER_FILE")),
                                   reason="uses the FoundationDB test double's instrumentation")


@pytest.fixture
def pair(own_stack):
    a = own_stack(backend_name="mvsqlite")
    b = own_stack(share_with=a)
    for s in (a, b):
        s.allowed_errors.append(r"storage call failed")
    return a, b


def test_two_storage_processes_non_conflicting_writers_both_commit(pair):
    a, b = pair
    with psycopg.connect(a.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE ta (id INTEGER PRIMARY KEY, v INTEGER)")
        c.execute("CREATE TABLE tb (id INTEGER PRIMARY KEY, v INTEGER)")
        c.execute("INSERT INTO ta VALUES (1, 0)")
        c.execute("INSERT INTO tb VALUES (1, 0)")
    with psycopg.connect(a.dsn) as ca, psycopg.connect(b.dsn) as cb:
        ca.execute("UPDATE ta SET v = 1")
        cb.execute("UPDATE tb SET v = 2")  # both transactions are open now, on different processes
        ca.commit()
        cb.commit()
    with psycopg.connect(b.dsn, autocommit=True) as c:
        assert c.execute("SELECT ta.v, tb.v FROM ta, tb").fetchone() == (1, 2)
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_conflicting_writers_exactly_the_loser_gets_40001(pair):
    a, b = pair
    with psycopg.connect(a.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER)")
        c.execute("INSERT INTO acct VALUES (1, 100)")
    outcomes = []
    with psycopg.connect(a.dsn) as ca, psycopg.connect(b.dsn) as cb:
        ca.execute("UPDATE acct SET balance = balance + 10 WHERE id = 1")
        cb.execute("UPDATE acct SET balance = balance + 1 WHERE id = 1")
        for conn in (ca, cb):
            try:
                conn.commit()
                outcomes.append("ok")
            except psycopg.Error as exc:
                outcomes.append(exc.sqlstate)
                conn.rollback()
    assert outcomes == ["ok", "40001"]
    with psycopg.connect(b.dsn, autocommit=True) as c:
        assert c.execute("SELECT balance FROM acct").fetchone() == (110,)
        # The loser retries and commits.
        c.execute("UPDATE acct SET balance = balance + 1 WHERE id = 1")
    with psycopg.connect(a.dsn, autocommit=True) as c:
        assert c.execute("SELECT balance FROM acct").fetchone() == (111,)


def test_concurrent_writers_on_two_processes_lose_nothing(pair):
    """Many writers on both processes, retrying on 40001: every acknowledged row is there."""
    a, b = pair
    with psycopg.connect(a.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE log (k TEXT PRIMARY KEY)")
    acknowledged: list[str] = []
    conflicts = [0]

    def writer(dsn: str, tag: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            for i in range(25):
                for _ in range(50):  # bounded retries
                    try:
                        c.execute("INSERT INTO log VALUES (%s)", (f"{tag}-{i}",))
                        acknowledged.append(f"{tag}-{i}")
                        break
                    except psycopg.errors.SerializationFailure:
                        conflicts[0] += 1
    threads = [threading.Thread(target=writer, args=(s.dsn, f"{s.name}-{n}")) for s in (a, b) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(acknowledged) == 100
    for s in (a, b):
        with psycopg.connect(s.dsn, autocommit=True) as c:
            assert {r[0] for r in c.execute("SELECT k FROM log")} == set(acknowledged)
            assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    print(f"40001 retries: {conflicts[0]}")


def test_time_travel_reads_the_old_value(own_stack):
    s = own_stack(backend_name="mvsqlite")
    with psycopg.connect(s.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE tt (id INTEGER PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO tt VALUES (1, 'old')")
        before = int(time.time() * 1000)
        while int(time.time() * 1000) <= before:  # bounded: the clock moves within a millisecond
            pass
        c.execute("UPDATE tt SET v = 'new'")
        c.execute("UPDATE tt SET v = 'newer'")
    with s.query_channel() as ch:
        stub = query_pb2_grpc.QueryServiceStub(ch)
        sel = [common_pb2.Statement(sql="SELECT v FROM tt")]
        now = stub.Execute(query_pb2.ExecuteRequest(database="main", statements=sel))
        assert now.results[0].ok.rows[0].values[0].text == "newer"
        old = stub.Execute(query_pb2.ExecuteRequest(database="main", statements=sel,
                                                    read_at=common_pb2.ReadAt(unix_ms=before)))
        assert old.results[0].ok.rows[0].values[0].text == "old"
        write = stub.Execute(query_pb2.ExecuteRequest(database="main", read_at=common_pb2.ReadAt(unix_ms=before),
                                                      statements=[common_pb2.Statement(sql="DELETE FROM tt")]))
        assert write.results[0].error.sqlstate == "25006", write.results[0].error
        with pytest.raises(grpc.RpcError) as info:
            stub.Execute(query_pb2.ExecuteRequest(database="main", statements=sel,
                                                  read_at=common_pb2.ReadAt(unix_ms=1000)))
        assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_time_travel_needs_the_mvsqlite_backend(own_stack):
    s = own_stack(backend_name="sqlite")
    with s.query_channel() as ch:
        stub = query_pb2_grpc.QueryServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.Execute(query_pb2.ExecuteRequest(database="main", read_at=common_pb2.ReadAt(version=1),
                                                  statements=[common_pb2.Statement(sql="SELECT 1")]))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "mvsqlite" in info.value.details()


def test_50mb_import_and_create_index_commit_despite_fdb_limits(pair):
    """One SQLite transaction far above FoundationDB's 10 MB per transaction: the pages are
    uploaded in earlier FoundationDB transactions and the commit itself stays small. The
    index is built by the other storage process, whose caches are cold: it reads all 50 MiB
    from the page store in one SQLite transaction."""
    a, b = pair
    rows = 51_200  # 1,000-byte blobs: 50 MiB of row data in one transaction
    t0 = time.monotonic()
    with psycopg.connect(a.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, k TEXT, b BLOB)")
        c.execute(f"WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {rows}) "
                  "INSERT INTO big SELECT x, hex(randomblob(8)), randomblob(1000) FROM n")
    t1 = time.monotonic()
    with psycopg.connect(b.dsn, autocommit=True) as c:
        c.execute("CREATE INDEX big_k ON big (k)")  # reads all 50 MiB in one transaction
        t2 = time.monotonic()
        assert c.execute("SELECT count(*), sum(length(b)) FROM big").fetchone() == (rows, rows * 1000)
        pages = c.execute("PRAGMA page_count").fetchone()[0]
        assert pages * 4096 > 50 * 2**20  # far above FoundationDB's 10 MB per transaction
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    print(f"50 MiB import {t1 - t0:.1f}s, CREATE INDEX {t2 - t1:.1f}s, database {pages * 4096 / 2**20:.0f} MiB")


def _commits(stub) -> int:
    """How many FoundationDB transactions the test double committed (instrumentation)."""
    return stub.Stats(fdbdouble_pb2.StatsRequest()).commits


@pytest.mark.skipif(bool(__import__("os").environ.get("FDB_CLUSTER_FILE")),
                    reason="watches the test double's keys to kill storage mid-commit")
def test_kill_9_mid_commit_leaves_all_or_nothing_and_the_other_process_serves(pair):
    a, b = pair
    with psycopg.connect(a.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE before_kill (id INTEGER PRIMARY KEY)")
        c.execute("INSERT INTO before_kill VALUES (1)")
        c.execute("CREATE TABLE bulk (id INTEGER PRIMARY KEY, b BLOB)")
    channel = grpc.insecure_channel(f"127.0.0.1:{a.ports.fdb_double}")
    stub = fdbdouble_pb2_grpc.FdbDoubleStub(channel)
    baseline = _commits(stub)
    failure: list[BaseException] = []

    def big_commit() -> None:
        try:
            with psycopg.connect(a.dsn, autocommit=True) as c:
                c.execute("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20000) "
                          "INSERT INTO bulk SELECT x, randomblob(1000) FROM n")
        except psycopg.Error as exc:
            failure.append(exc)

    t = threading.Thread(target=big_commit)
    t.start()
    deadline = time.monotonic() + 60
    while _commits(stub) < baseline + 10 and time.monotonic() < deadline:
        pass  # polling the double: the commit's upload phase (100 pages per FDB transaction) is under way
    a.kill("storage")
    channel.close()
    t.join(60)
    with psycopg.connect(b.dsn, autocommit=True) as c:  # the other process serves at once
        count = c.execute("SELECT count(*) FROM bulk").fetchone()[0]
        assert count in (0, 20000)
        assert c.execute("SELECT id FROM before_kill").fetchall() == [(1,)]
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        c.execute("INSERT INTO before_kill VALUES (2)")
    print(f"kill -9 mid-commit: {count} rows present, client saw {failure[:1]}")


def test_time_travel_as_an_edge_session_setting(own_stack):
    s = own_stack(backend_name="mvsqlite")
    with psycopg.connect(s.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE hist (v TEXT)")
        c.execute("INSERT INTO hist VALUES ('then')")
        when = datetime.datetime.now(datetime.UTC)
        time.sleep(0.01)  # not a readiness wait: the next commit must be later than `when`
        c.execute("UPDATE hist SET v = 'now'")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            c.execute("SET sqld.read_at = '1'")
    options = f"-c sqld.read_at={when.isoformat()}"
    with psycopg.connect(s.dsn, autocommit=True, options=options) as c:
        assert c.execute("SELECT v FROM hist").fetchone() == ("then",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            c.execute("DELETE FROM hist")
    with psycopg.connect(s.dsn, autocommit=True) as c:
        assert c.execute("SELECT v FROM hist").fetchone() == ("now",)


@ON_THE_DOUBLE
def test_commit_answered_1021_after_it_was_applied_succeeds_once(own_stack):
    """FoundationDB may apply a commit and still answer commit_unknown_result (1021); the
    retry must see that it committed: no 40001, and the rows are there exactly once."""
    s = own_stack(backend_name="mvsqlite")
    with psycopg.connect(s.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE once (id INTEGER PRIMARY KEY, n INTEGER)")
        c.execute("INSERT INTO once VALUES (1, 0)")
        with grpc.insecure_channel(f"127.0.0.1:{s.ports.fdb_double}") as ch:
            stub = fdbdouble_pb2_grpc.FdbDoubleStub(ch)
            # The next two page-store commits (they write the `w` key) are applied, then answer 1021.
            stub.InjectUnknownResult(fdbdouble_pb2.InjectUnknownResultRequest(
                count=2, key_prefix=keys.write_marker(keys.namespace(s.prefix, "main")), apply=True))
            c.execute("INSERT INTO once (n) VALUES (100)")  # no rowid given: a second apply would add a row
            c.execute("UPDATE once SET n = n + 1")
            assert stub.Stats(fdbdouble_pb2.StatsRequest()).unknown_results == 2
        assert c.execute("SELECT id, n FROM once ORDER BY id").fetchall() == [(1, 1), (2, 101)]
        c.execute("UPDATE once SET n = n + 1 WHERE id = 1")  # the session goes on committing
    with psycopg.connect(s.dsn, autocommit=True) as c:
        assert c.execute("SELECT id, n FROM once ORDER BY id").fetchall() == [(1, 2), (2, 101)]
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _image_count(s) -> int:
    """Page images (keys under the namespace's `c` prefix), counted through the kv interface."""
    cluster = os.environ.get("FDB_CLUSTER_FILE", "")
    kv = connect_kv(cluster, "" if cluster else f"127.0.0.1:{s.ports.fdb_double}")
    begin = keys.namespace(s.prefix, "main") + keys.CONTENT
    end, n = strinc(begin), 0
    try:
        while True:
            kvs = kv.transaction().get_ranges([(begin, end, 500, False)], True)[0]
            n += len(kvs)
            if len(kvs) < 500:
                return n
            begin = kvs[-1][0] + b"\x00"
    finally:
        kv.close()


def test_gc_deletes_images_under_a_constant_write_load(own_stack):
    """Two storage processes, each with a writer committing without pause and GC rounds every
    0.2 s with a 1 s window: commits land during every sweep, yet each burst of garbage is
    collected, and nothing is lost."""
    gc_env = {"SQLD_STORAGE_FDB_GC_INTERVAL": "0.2", "SQLD_STORAGE_FDB_RETENTION_SECONDS": "1"}
    a = own_stack(backend_name="mvsqlite", env=gc_env)
    b = own_stack(share_with=a, env=gc_env)
    for site in (a, b):
        site.allowed_errors.append(r"storage call failed")
    with psycopg.connect(a.dsn, autocommit=True) as c:
        for tag in "ab":
            c.execute(f"CREATE TABLE steady_{tag} (id INTEGER PRIMARY KEY, b BLOB)")
        c.execute("CREATE TABLE churn (id INTEGER PRIMARY KEY, b BLOB)")
        c.execute("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 300) "
                  "INSERT INTO churn SELECT x, randomblob(1000) FROM n")  # about 80 pages
    acknowledged: dict[str, list[int]] = {"a": [], "b": []}
    failures: list[BaseException] = []
    stop = threading.Event()

    def writer(site, tag: str) -> None:
        try:
            with psycopg.connect(site.dsn, autocommit=True) as c:
                while not stop.is_set():
                    try:
                        row = c.execute(f"INSERT INTO steady_{tag} (b) VALUES (randomblob(100)) RETURNING id").fetchone()
                        acknowledged[tag].append(row[0])
                    except psycopg.errors.SerializationFailure:
                        pass  # both grew the file at once (page 1 conflicts): retry
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=writer, args=(site, tag)) for site, tag in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    try:
        rounds = []
        t0, n0 = time.monotonic(), sum(map(len, acknowledged.values()))
        for _ in range(3):
            if stop.is_set():
                break
            with psycopg.connect(a.dsn, autocommit=True) as c:
                updates = 0
                while updates < 30:  # a burst of garbage: every UPDATE rewrites every page of churn
                    try:
                        c.execute("UPDATE churn SET b = randomblob(1000)")
                        updates += 1
                    except psycopg.errors.SerializationFailure:
                        pass  # a writer grew the file meanwhile: retry
            counts, deadline = [_image_count(a)], time.monotonic() + 10
            while counts[-1] > counts[0] // 2 and time.monotonic() < deadline:
                time.sleep(0.2)  # polling interval while the writers and GC run
                counts.append(_image_count(a))
            rounds.append(counts)
            if counts[-1] > counts[0] // 2:
                break
        elapsed, commits = time.monotonic() - t0, sum(map(len, acknowledged.values())) - n0
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    print(f"writers: {commits} commits in {elapsed:.1f}s ({commits / elapsed:.0f}/s); image counts after "
          f"each burst: {rounds}")
    assert not failures, f"a writer failed: {failures}"
    assert commits / elapsed >= 5, "the writers must commit several times per second throughout"
    assert len(rounds) == 3 and all(r[-1] <= r[0] // 2 for r in rounds), \
        f"the image count did not fall under constant writes: {rounds}"
    for site in (a, b):
        with psycopg.connect(site.dsn, autocommit=True) as c:
            assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            for tag, ids in acknowledged.items():
                assert {r[0] for r in c.execute(f"SELECT id FROM steady_{tag}")} == set(ids)
            assert c.execute("SELECT count(*), sum(length(b)) FROM churn").fetchone() == (300, 300_000)
