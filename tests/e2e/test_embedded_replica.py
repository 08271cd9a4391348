"""Embedded replicas (sqldclient replica=) against real processes: bootstrap, follow,
read-your-writes, lag bound, restart and resume, a new log id, kill -9 mid-apply, dbhash after
random transactions, an invariant under replicated transfers, and refusal without a token.

Each test makes a database of its own on the shared site, so its log (and a reset of it) is
its own."""
from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import psycopg
import pytest

import sqldclient
from sqld.v1 import replication_pb2, replication_pb2_grpc
from tests.e2e.test_replication import dbhash
from tests.fixtures.stack import ROOT


@pytest.fixture
def db(stack):
    name = f"emb_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    yield name
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def url(stack, db: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{stack.ports.pg}/{db}?connect_timeout=10"


def opts(stack, db: str, **kw):
    base = {"replication": f"127.0.0.1:{stack.ports.replication_public}",
            "token": stack.token(read_only=True, databases=[db]), "ca": str(stack.pki_dir / "ca.crt")}
    return {**base, **kw}


def primary(stack, db: str) -> psycopg.Connection:
    return psycopg.connect(stack.dsn.replace("dbname=main", f"dbname={db}"), autocommit=True)


def head(stack, db: str) -> replication_pb2.LogStatus:
    with stack.channel("replication", "admin") as ch:
        return replication_pb2_grpc.ReplicationStub(ch).Status(replication_pb2.StatusRequest(database=db),
                                                               timeout=5).logs[0]


def series(n: int) -> str:
    return f"(WITH RECURSIVE c(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM c WHERE value < {n}) SELECT value FROM c)"


def local_rows(path: Path, sql: str) -> list:
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()


def eventually(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            out = check()
            if out:
                return out
        except sqlite3.Error:
            pass
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.02)


def test_bootstrap_follow_and_read_your_writes(stack, db, tmp_path):
    with primary(stack, db) as p:
        p.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        p.execute("INSERT INTO t (v) SELECT 'row ' || value FROM " + series(100))
    path = tmp_path / "local.db"
    conn = sqldclient.connect(url(stack, db), **opts(stack, db, replica=str(path)))
    try:
        # bootstrap: the file holds the database before connect() returns
        assert local_rows(path, "SELECT count(*) FROM t") == [(100,)]
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)
        assert conn._local_reads == 1
        # follow: another session's commit reaches the file
        with primary(stack, db) as p:
            p.execute("INSERT INTO t (v) VALUES ('from elsewhere')")
        eventually(lambda: local_rows(path, "SELECT count(*) FROM t") == [(101,)])
        # read-your-writes: the connection's own write is read at once, on the replica
        for i in range(20):
            conn.execute("INSERT INTO t (v) VALUES (?)", (f"mine {i}",))
            conn.commit()
            reads = conn._local_reads
            assert conn.execute("SELECT v FROM t WHERE v = ?", (f"mine {i}",)).fetchone() == (f"mine {i}",)
            assert conn._local_reads == reads + 1, "the read went to the primary"
        # named parameters, text_factory, Row, an expression column: as with the server
        conn.row_factory = sqldclient.Row
        row = conn.execute("SELECT v, length(v) AS n FROM t WHERE id = :id", {"id": 1}).fetchone()
        assert (row["v"], row["n"]) == ("row 1", 5)
        conn.row_factory = None
        conn.text_factory = bytes
        assert conn.execute("SELECT v FROM t WHERE id = 1").fetchone() == (b"row 1",)
        conn.text_factory = str
        # what is not a plain read goes to the primary
        reads = conn._local_reads
        conn.execute("SELECT last_insert_rowid()").fetchone()
        assert conn.execute("PRAGMA table_info(t)").fetchall()
        assert conn._local_reads == reads
        # sync() returns the frame reached: the log's head
        assert conn.sync() == head(stack, db).head_frame_no
        # Status (pg_stat_replication) lists the stream under the token's subject, never as an
        # internal replica's id
        ids = [r.replica_id for r in head(stack, db).replicas if r.connected]
        assert any(i.startswith("embedded:test:") for i in ids), ids
        # in a transaction, reads see its own uncommitted writes: the primary answers
        conn.execute("INSERT INTO t (v) VALUES ('pending')")
        assert conn.execute("SELECT count(*) FROM t WHERE v = 'pending'").fetchone() == (1,)
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM t WHERE v = 'pending'").fetchone() == (0,)
    finally:
        conn.close()
    eventually(lambda: not any(r.replica_id.startswith("embedded:") for r in head(stack, db).replicas))
    # the file is written by the sync only: an application cannot write through it
    with pytest.raises(sqlite3.OperationalError):
        sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("INSERT INTO t (v) VALUES ('x')")


def test_strong_consistency_and_the_lag_bound(stack, db, tmp_path):
    with primary(stack, db) as p:
        p.execute("CREATE TABLE t (v INTEGER)")
    strong = sqldclient.connect(url(stack, db), consistency="strong", **opts(stack, db, replica=str(tmp_path / "a.db")))
    try:
        assert strong.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert strong._local_reads == 0
    finally:
        strong.close()
    # manual sync, a 0.5 s bound: fresh after sync() it reads locally, stale it asks the primary
    conn = sqldclient.connect(url(stack, db), **opts(stack, db, replica=str(tmp_path / "b.db"), sync_interval=0,
                                                     max_lag=0.5))
    try:
        with primary(stack, db) as p:
            p.execute("INSERT INTO t VALUES (1)")
            conn.sync()
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
            assert conn._local_reads == 1
            p.execute("INSERT INTO t VALUES (2)")
        time.sleep(0.6)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)  # from the primary
        assert conn._local_reads == 1
        assert local_rows(tmp_path / "b.db", "SELECT count(*) FROM t") == [(1,)]  # no sync: not followed
        conn.sync()
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
        assert conn._local_reads == 2
    finally:
        conn.close()


def test_without_a_read_token_for_the_database_nothing_is_served(stack, db, tmp_path):
    with primary(stack, db) as p:
        p.execute("CREATE TABLE secret (v TEXT); INSERT INTO secret VALUES ('s3cr3t')")
    path = tmp_path / "x.db"
    cases = [(None, "UNAUTHENTICATED"), ("not-a-token", "UNAUTHENTICATED"),
             (stack.token(read_only=True, databases=["main"]), "PERMISSION_DENIED")]
    for token, code in cases:
        with pytest.raises(sqldclient.OperationalError, match=code):
            sqldclient.connect(url(stack, db), **opts(stack, db, replica=str(path), token=token))
    assert path.stat().st_size == 0 and b"s3cr3t" not in path.read_bytes()
    # the public port serves the read side of the log only, whatever the token
    token = stack.token(databases=[db])
    with grpc.secure_channel(f"127.0.0.1:{stack.ports.replication_public}", stack.credentials("", token)) as ch:
        stub = replication_pb2_grpc.ReplicationStub(ch)
        for call, req in [(stub.Append, replication_pb2.AppendRequest(database=db)),
                          (stub.ResetLog, replication_pb2.ResetLogRequest(database=db)),
                          (stub.Ack, replication_pb2.AckRequest(database=db)),
                          (stub.DropLog, replication_pb2.DropLogRequest(database=db))]:
            with pytest.raises(grpc.RpcError) as err:
                call(req, timeout=5)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Hello never makes a log appear for a name the log does not know
        with pytest.raises(grpc.RpcError) as err:
            replication_pb2_grpc.ReplicationStub(
                grpc.secure_channel(f"127.0.0.1:{stack.ports.replication_public}",
                                    stack.credentials("", stack.token()))).Hello(
                replication_pb2.HelloRequest(database="no_such_db"), timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # the internal port takes no token: without a client certificate the handshake fails
    with grpc.secure_channel(stack.addr("replication"), stack.credentials("", token)) as ch:
        with pytest.raises(grpc.RpcError) as err:
            replication_pb2_grpc.ReplicationStub(ch).Hello(replication_pb2.HelloRequest(database=db), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # with the token, the same database is served
    conn = sqldclient.connect(url(stack, db), **opts(stack, db, replica=str(tmp_path / "ok.db")))
    conn.close()
    assert local_rows(tmp_path / "ok.db", "SELECT v FROM secret") == [("s3cr3t",)]


def test_a_frames_stream_ends_when_its_token_expires(stack, db):
    """The public port checks the token when a stream opens and ends the stream when the
    token expires, sending or idle: a replica does not follow the log past its credential."""
    h = head(stack, db)
    with grpc.secure_channel(f"127.0.0.1:{stack.ports.replication_public}",
                             stack.credentials("", stack.token(read_only=True, databases=[db], ttl=3))) as ch:
        call = replication_pb2_grpc.ReplicationStub(ch).Frames(replication_pb2.FramesRequest(
            database=db, log_id=h.log_id, from_frame_no=h.head_frame_no + 1, replica_id="expiring"), timeout=60)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            for _ in call:  # nothing new is committed: the stream stays idle until the token ends it
                pass
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and "expired" in err.value.details()
        assert time.monotonic() - started < 10


def app(stack, db: str, path: Path, mode: str, **popen) -> subprocess.Popen:
    o = opts(stack, db)
    return subprocess.Popen([sys.executable, "-m", "tests.fixtures.embedded_app", url(stack, db), str(path),
                             o["replication"], o["token"], o["ca"], mode], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, **popen)


def run_app(stack, db: str, path: Path, logs: list[str] | None = None) -> tuple[list[str], list[str]]:
    proc = app(stack, db, path, "sync", stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    if logs is not None:
        logs.append(err)
    lines = [line.split() for line in out.splitlines()]
    return lines[0], lines[1]


def test_restart_resumes_and_a_new_log_id_takes_a_snapshot(stack, db, tmp_path):
    path = tmp_path / "app.db"
    with primary(stack, db) as p:
        p.execute("CREATE TABLE t (v INTEGER)")
        p.execute("INSERT INTO t VALUES (1)")
        opened, synced = run_app(stack, db, path)
        assert opened[2] != "0" and synced[1:] == opened[1:]  # bootstrapped at open: nothing more
        log_id, frame = synced[1], int(synced[2])
        p.execute("INSERT INTO t VALUES (2)")
        opened, synced = run_app(stack, db, path)  # a restart resumes where the file stood
        assert opened[1:] == [log_id, str(frame)]
        assert synced[1] == log_id and int(synced[2]) > frame
        # a new history (an operator's ResetLog; the primary logs an image at its next commit)
        with stack.channel("replication", "admin") as ch:
            replication_pb2_grpc.ReplicationStub(ch).ResetLog(
                replication_pb2.ResetLogRequest(database=db, if_log_id=log_id), timeout=10)
        p.execute("INSERT INTO t VALUES (3)")
        opened, synced = run_app(stack, db, path)
        assert opened[1] == log_id and synced[1] != log_id
    assert local_rows(path, "SELECT v FROM t ORDER BY v") == [(1,), (2,), (3,)]
    assert dbhash(path) == dbhash(stack.data_dir / f"{db}.db")


def test_a_position_compacted_away_takes_a_new_snapshot(own_stack, tmp_path):
    stack = own_stack(replicas=1, extra_args={"replication": ["--compact-frames", "40", "--keep-frames", "10",
                                                              "--retention-seconds", "0"]})
    path = tmp_path / "behind.db"
    logs: list[str] = []
    with primary(stack, "main") as p:
        p.execute("CREATE TABLE t (v INTEGER)")
        opened, synced = run_app(stack, "main", path, logs)
        assert "snapshot installed" in logs[-1]  # the bootstrap
        log_id, frame = synced[1], int(synced[2])
        for i in range(100):
            p.execute(f"INSERT INTO t VALUES ({i})")
        assert head(stack, "main").first_frame_no > frame + 1  # our position is gone from the log
        opened, synced = run_app(stack, "main", path, logs)
    assert opened[1:] == [log_id, str(frame)]
    assert "snapshot installed" in logs[-1]
    assert synced[1] == log_id and int(synced[2]) == head(stack, "main").head_frame_no
    assert local_rows(path, "SELECT count(*), sum(v) FROM t") == [(100, 4950)]
    assert dbhash(path) == dbhash(stack.db_path("storage"))


def test_kill_9_mid_apply_repairs_and_catches_up(stack, db, tmp_path):
    path = tmp_path / "crash.db"
    with primary(stack, db) as p:
        p.execute("CREATE TABLE t (v INTEGER, b BLOB)")
        p.execute("INSERT INTO t VALUES (0, randomblob(1000))")
        proc = app(stack, db, path, "crash")
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("open")
            # a transaction of ~200 pages: the application stalls after writing 20 of them
            p.execute("INSERT INTO t SELECT value, randomblob(3000) FROM " + series(250))
            line = proc.stdout.readline()
            assert line.strip() == "midway", line
        finally:
            proc.kill()  # SIGKILL: no chance to finish or clean up
            proc.wait()
        p.execute("INSERT INTO t VALUES (-1, NULL)")
    # the file opens consistent (the half-applied batch is replayed) and catches up
    conn = sqldclient.connect(url(stack, db), **opts(stack, db, replica=str(path)))
    try:
        conn.sync()
        assert local_rows(path, "PRAGMA integrity_check") == [("ok",)]
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (252,)
        assert conn._local_reads == 1
    finally:
        conn.close()
    assert dbhash(path) == dbhash(stack.data_dir / f"{db}.db")


def test_dbhash_equals_the_primary_after_1000_random_transactions(stack, db, tmp_path):
    path = tmp_path / "hash.db"
    rnd = random.Random(17)
    with primary(stack, db) as p:
        p.execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v BLOB, n INTEGER)")
        p.execute("CREATE INDEX kv_n ON kv (n)")
        conn = sqldclient.connect(url(stack, db), **opts(stack, db, replica=str(path)))
        try:
            for _ in range(1000):
                op = rnd.random()
                k = rnd.randrange(500)
                if op < 0.5:
                    p.execute(f"INSERT OR REPLACE INTO kv VALUES ({k}, randomblob({rnd.randrange(1, 3000)}), "
                              f"{rnd.randrange(100)})")
                elif op < 0.8:
                    p.execute(f"UPDATE kv SET n = n + 1, v = randomblob({rnd.randrange(1, 300)}) WHERE k >= {k} AND k < {k + 20}")
                elif op < 0.95:
                    p.execute(f"DELETE FROM kv WHERE k >= {k} AND k < {k + 5}")
                else:
                    p.execute("BEGIN; INSERT INTO kv (v, n) VALUES (zeroblob(70000), -1); "
                              "DELETE FROM kv WHERE n = -1 AND k % 2 = 0; COMMIT")
            reached = conn.sync()
            assert reached == head(stack, db).head_frame_no
        finally:
            conn.close()
    assert local_rows(path, "PRAGMA integrity_check") == [("ok",)]
    assert dbhash(path) == dbhash(stack.data_dir / f"{db}.db")


def test_a_local_reader_never_sees_a_broken_invariant_while_transfers_replicate(stack, db, tmp_path):
    # ~9 accounts a page: a transfer's two updates usually land on two pages, which a reader
    # between the two page writes of an unlocked apply would see half of
    accounts, total = 2000, 2000 * 1000
    path = tmp_path / "bank.db"
    with primary(stack, db) as p:
        p.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, pad BLOB)")
        p.execute(f"INSERT INTO accounts SELECT value, 1000, randomblob(400) FROM {series(accounts)}")
    conn = sqldclient.connect(url(stack, db), **opts(stack, db, replica=str(path)))
    stop = threading.Event()
    transfers = [0]

    def transfer() -> None:
        rnd = random.Random(3)
        with primary(stack, db) as w:
            while not stop.is_set():
                a, b = rnd.sample(range(1, accounts + 1), 2)
                x = rnd.randrange(1, 200)
                w.execute(f"BEGIN; UPDATE accounts SET balance = balance - {x} WHERE id = {a}; "
                          f"UPDATE accounts SET balance = balance + {x} WHERE id = {b}; COMMIT")
                transfers[0] += 1

    writer = threading.Thread(target=transfer)
    writer.start()
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    raw.execute("PRAGMA cache_size = 0")  # every scan reads the file again, not a cached old copy
    checks, seen_frames = 0, set()
    try:
        deadline = time.monotonic() + 120
        while (checks < 3000 or len(seen_frames) < 20) and time.monotonic() < deadline:
            # through the client (its reads run locally) and straight on the file
            assert conn.execute("SELECT sum(balance), count(*) FROM accounts").fetchone() == (total, accounts)
            assert raw.execute("SELECT sum(balance) FROM accounts").fetchone() == (total,)
            checks += 1
            seen_frames.add(conn._replica.frame_no)
        stop.set()
        writer.join()
        assert checks >= 3000 and len(seen_frames) >= 20, (checks, len(seen_frames), transfers[0])
        assert conn._local_reads >= checks
        conn.sync()
        assert conn.execute("SELECT sum(balance) FROM accounts").fetchone() == (total,)
    finally:
        stop.set()
        writer.join()
        raw.close()
        conn.close()
    assert dbhash(path) == dbhash(stack.data_dir / f"{db}.db")


def test_the_example_application_prints_the_same_with_an_embedded_replica(stack, db, tmp_path):
    import os
    example = ROOT / "client" / "examples" / "notes.py"
    local = subprocess.run([sys.executable, str(example), str(tmp_path / "notes.db")],
                           capture_output=True, text=True, timeout=60, check=True)
    o = opts(stack, db)
    env = {**os.environ, "SQLD_REPLICATION": o["replication"], "SQLD_TOKEN": o["token"], "SQLD_CA": o["ca"]}
    with primary(stack, db) as p:
        p.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")  # the replica needs a history to start from
        p.execute("DROP TABLE notes")
    embedded = subprocess.run([sys.executable, str(example), "--sqld", url(stack, db), "--replica",
                               str(tmp_path / "replica.db")], capture_output=True, text=True, timeout=120,
                              check=True, env=env)
    assert embedded.stdout == local.stdout
    assert local_rows(tmp_path / "replica.db", "SELECT count(*) FROM notes") == [(3,)]
