"""Replication with real processes: convergence, torn reads, crashes, snapshots, routing, status, sync."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import apsw
import psycopg

from sqld.v1 import common_pb2, query_pb2, query_pb2_grpc, replication_pb2, replication_pb2_grpc

DBHASH = Path(apsw.__file__).parent / "sqlite_extra_binaries" / "sqlite3_dbhash"


def st(sql: str) -> common_pb2.Statement:
    return common_pb2.Statement(sql=sql)


def status(stack) -> replication_pb2.LogStatus:
    with stack.channel("replication", "admin") as ch:  # Status: scheduler or admin certificates
        logs = replication_pb2_grpc.ReplicationStub(ch).Status(replication_pb2.StatusRequest(database="main"), timeout=5).logs
    return logs[0]


def wait_converged(stack, names=("replica1", "replica2"), timeout=120) -> replication_pb2.LogStatus:
    deadline = time.monotonic() + timeout
    while True:
        s = status(stack)
        applied = {r.replica_id: r.applied_frame_no for r in s.replicas}
        if all(applied.get(n) == s.head_frame_no for n in names):
            return s
        assert time.monotonic() < deadline, f"replicas did not catch up with {s.head_frame_no}: {applied}"
        time.sleep(0.05)


def dbhash(path: Path) -> str:
    out = subprocess.run([str(DBHASH), str(path)], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.split()[0]


def integrity(path: Path) -> str:
    c = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return c.execute("PRAGMA integrity_check").fetchall()[0][0]
    finally:
        c.close()


class Session:
    """A QueryService session stream driven one batch at a time."""

    def __init__(self, stack, service: str = "scheduler", **open_args) -> None:
        import queue
        self._ch = stack.query_channel(service=service)
        self._q: queue.Queue = queue.Queue()
        self._q.put(query_pb2.SessionRequest(open=query_pb2.OpenSession(database="main", **open_args)))
        self._it = query_pb2_grpc.QueryServiceStub(self._ch).Session(iter(self._q.get, None))
        assert next(self._it).WhichOneof("kind") == "opened"
        self._n = 0

    def run(self, *sqls: str) -> query_pb2.BatchResult:
        self._n += 1
        self._q.put(query_pb2.SessionRequest(batch=query_pb2.Batch(id=self._n, statements=[st(s) for s in sqls])))
        return next(self._it).result

    def close(self) -> None:
        self._q.put(None)
        self._ch.close()


def _random_txn(rng: random.Random, tables: list[str], n: int) -> list[str]:
    """One random transaction's statements (without BEGIN/COMMIT)."""
    t = rng.choice(tables)
    roll = rng.random()
    if roll < 0.45:
        return [f"INSERT INTO {t} (k, v) VALUES ({rng.randrange(10**6)}, randomblob({rng.randrange(10, 400)}))"
                for _ in range(rng.randrange(1, 4))]
    if roll < 0.7:
        return [f"UPDATE {t} SET v = randomblob({rng.randrange(10, 600)}) WHERE k % 7 = {rng.randrange(7)}"]
    if roll < 0.9:
        return [f"DELETE FROM {t} WHERE k % 13 = {rng.randrange(13)} AND rowid % 3 = {n % 3}"]
    return [f"INSERT INTO {t} (k, v) SELECT k + {n}, v FROM {t} LIMIT 20"]


def test_ten_thousand_random_transactions_converge_through_crashes_and_compaction(own_stack):
    stack = own_stack(env={"SQLD_REPLICATION_COMPACT_FRAMES": "3000", "SQLD_REPLICATION_KEEP_FRAMES": "500",
                           "SQLD_REPLICATION_RETENTION_SECONDS": "0"},
                      replicas=2)
    rng = random.Random(4)
    s = Session(stack)
    tables = ["t0", "t1", "t2"]
    assert not any(r.HasField("error") for r in s.run(*[f"CREATE TABLE {t} (k INTEGER, v BLOB)" for t in tables]).results)
    started = time.monotonic()
    done = 0
    per_batch = 50
    replica2_stopped_at = None
    while done < 10_000:
        sqls: list[str] = []
        for _ in range(per_batch):
            done += 1
            if done % 1000 == 0:  # DDL: a table comes and goes, an index is built
                name = f"x{done}"
                sqls += ["BEGIN", f"CREATE TABLE {name} (a, b)", f"INSERT INTO {name} SELECT k, v FROM t0 LIMIT 50",
                         f"CREATE INDEX {name}_a ON {name} (a)", "COMMIT"]
                if done % 2000 == 0:
                    sqls += [f"DROP TABLE {name}"]
                continue
            sqls += ["BEGIN", *_random_txn(rng, tables, done), "COMMIT"]
        res = s.run(*sqls)
        assert not any(r.HasField("error") for r in res.results), [r.error for r in res.results if r.HasField("error")][:1]
        if done == 2000:
            stack.kill("replica1")  # kill -9 while frames stream and batches are applied
            stack.start("replica1")
        if done == 3000:
            stack.procs["replica2"].send_signal(signal.SIGTERM)
            stack.procs["replica2"].wait(30)
            replica2_stopped_at = status(stack).head_frame_no
        if done == 8000:
            assert status(stack).snapshot_frame_no > replica2_stopped_at, "the log was not compacted"
            stack.start("replica2")  # its position was compacted away: it must take a snapshot
    # a VACUUM that shrinks the file
    assert not any(r.HasField("error") for r in s.run("DROP TABLE t1", "DELETE FROM t2 WHERE k % 2 = 0").results)
    before = os.path.getsize(stack.db_path("storage")) + os.path.getsize(str(stack.db_path("storage")) + "-wal")
    assert not s.run("VACUUM").results[0].HasField("error")
    head = wait_converged(stack).head_frame_no
    elapsed = time.monotonic() - started
    s.close()
    sizes = {n: os.path.getsize(stack.db_path(n)) for n in ("replica1", "replica2")}
    print(f"10k transactions + convergence: {elapsed:.1f}s, head frame {head}, replica sizes {sizes}")
    primary = dbhash(stack.db_path("storage"))
    for name in ("replica1", "replica2"):
        assert integrity(stack.db_path(name)) == "ok", name
        assert dbhash(stack.db_path(name)) == primary, name
    assert max(sizes.values()) < before
    assert 'msg="installed snapshot" db=main ' in (stack.log_dir / "replica2.log").read_text()
    # replica1 took its first snapshot at start and resumed from its own position after kill -9
    assert (stack.log_dir / "replica1.log").read_text().count('msg="installed snapshot" db=main ') == 1


def test_readers_on_a_replica_never_see_a_torn_transaction(stack):
    s = Session(stack)
    setup = s.run("DROP TABLE IF EXISTS acct", "CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER)",
                  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500) "
                  "INSERT INTO acct SELECT x, 1000 FROM c")
    assert not any(r.HasField("error") for r in setup.results), setup
    total = 500 * 1000
    stop = threading.Event()
    problems: list[str] = []

    def transfers() -> None:
        w = Session(stack)
        rng = random.Random(7)
        try:
            while not stop.is_set():
                batch = []
                for _ in range(20):
                    a, b, x = rng.randrange(1, 501), rng.randrange(1, 501), rng.randrange(1, 50)
                    batch += ["BEGIN", f"UPDATE acct SET balance = balance - {x} WHERE id = {a}",
                              f"UPDATE acct SET balance = balance + {x} WHERE id = {b}", "COMMIT"]
                w.run(*batch)
        finally:
            w.close()

    writer = threading.Thread(target=transfers)
    writer.start()
    # read-your-writes across sessions: the reader starts from the setup's frame number
    reader = Session(stack, "replica-scheduler", min_frame_no=setup.frame_no)
    on_replica = 0
    try:
        for i in range(400):
            res = reader.run(f"SELECT sum(balance), count(*) FROM acct WHERE {i} = {i}")
            row = res.results[0].ok.rows[0].values
            if (row[0].integer, row[1].integer) != (total, 500):
                problems.append(f"read {i}: sum {row[0].integer} count {row[1].integer}")
            on_replica += res.served_by_replica
    finally:
        stop.set()
        writer.join(60)
        reader.close()
        s.close()
    assert not problems, (len(problems), problems[:5])
    assert on_replica >= 390, f"only {on_replica} of 400 reads ran on the replica"


def test_read_your_writes_through_the_replica_site(stack):
    with psycopg.connect(stack.replica_dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS ryw; CREATE TABLE ryw (n INTEGER)")
        for i in range(30):
            c.execute(f"INSERT INTO ryw VALUES ({i})")
            assert c.execute(f"SELECT max(n), {i} FROM ryw").fetchone() == (i, i)
    # the reads ran on the replica, which had applied the write (not on the primary)
    s = Session(stack, "replica-scheduler")
    try:
        for i in range(10):
            w = s.run(f"INSERT INTO ryw VALUES ({100 + i})")
            assert w.frame_no > 0 and not w.served_by_replica
            r = s.run(f"SELECT count(*) FROM ryw WHERE n = {100 + i}")
            assert r.results[0].ok.rows[0].values[0].integer == 1
            assert r.served_by_replica
        strong = Session(stack, "replica-scheduler", consistency=query_pb2.CONSISTENCY_STRONG)
        assert not strong.run("SELECT count(*) FROM ryw").served_by_replica
        strong.close()
    finally:
        s.close()
    # other sessions' writes appear on the replica within milliseconds
    with psycopg.connect(stack.dsn, autocommit=True) as primary:
        primary.execute("INSERT INTO ryw VALUES (-1)")
    started = time.monotonic()
    reader = Session(stack, "replica-scheduler", consistency=query_pb2.CONSISTENCY_BOUNDED_STALENESS,
                     max_staleness_ms=60_000)
    try:
        for i in range(1000):
            r = reader.run(f"SELECT count(*), {i} FROM ryw WHERE n = -1")
            if r.results[0].ok.rows[0].values[0].integer == 1:
                break
        lag = time.monotonic() - started
        print(f"another session's write visible on the replica after {lag * 1000:.1f} ms")
        assert r.served_by_replica and r.results[0].ok.rows[0].values[0].integer == 1
        assert lag < 2
    finally:
        reader.close()


def test_pg_stat_replication_over_pg_wire(stack):
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS stat_probe (a)")
        c.execute("INSERT INTO stat_probe VALUES (1)")
    wait_converged(stack)
    with psycopg.connect(stack.replica_dsn, autocommit=True) as c:
        rows = c.execute("SELECT application_name, state, sent_lsn, write_lsn, replay_lsn, replay_lag, sync_state "
                         "FROM pg_stat_replication ORDER BY application_name").fetchall()
    assert [r[0] for r in rows] == ["replica1", "replica2"]
    for name, state, sent, written, replayed, lag, sync in rows:
        assert state == "streaming" and sent == written == replayed > 0 and lag == 0 and sync == "async", name


def test_replication_metrics_endpoint(stack):
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS metrics_probe (a)")
        c.execute("INSERT INTO metrics_probe VALUES (1)")
    wait_converged(stack)
    url = f"http://127.0.0.1:{stack.ports.replication_metrics}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read().decode()
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    head = values['sqld_replication_head_frame{db="main"}']
    assert head > 0
    for replica in ("replica1", "replica2"):
        labels = f'{{db="main",replica="{replica}"}}'
        assert values[f"sqld_replication_replica_applied_frame{labels}"] == head
        assert values[f"sqld_replication_replica_lag_frames{labels}"] == 0
        assert values[f"sqld_replication_replica_connected{labels}"] == 1


def test_synchronous_commit_waits_for_a_replica_to_apply(stack):
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS syncw; CREATE TABLE syncw (n INTEGER)")
    wait_converged(stack)
    for name in ("replica1", "replica2"):
        stack.procs[name].send_signal(signal.SIGSTOP)
    result: list[float] = []
    try:
        def commit() -> None:
            with psycopg.connect(stack.dsn, autocommit=True) as c:
                c.execute("SET synchronous_commit = remote_apply")
                c.execute("INSERT INTO syncw VALUES (1)")
                result.append(time.monotonic())
        t = threading.Thread(target=commit)
        t.start()
        t.join(1.0)
        assert not result, "a synchronous commit was acknowledged while no replica could apply it"
        resumed = time.monotonic()
        stack.procs["replica1"].send_signal(signal.SIGCONT)
        t.join(30)
        assert result and result[0] >= resumed
        c = apsw.Connection(str(stack.db_path("replica1")), flags=apsw.SQLITE_OPEN_READONLY)
        assert c.execute("SELECT count(*) FROM syncw").fetchall() == [(1,)]
        c.close()
    finally:
        for name in ("replica1", "replica2"):
            stack.procs[name].send_signal(signal.SIGCONT)


def test_a_new_log_id_makes_replicas_take_a_snapshot(own_stack):
    stack = own_stack(replicas=2)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE hist (a); INSERT INTO hist VALUES (1)")
    old = wait_converged(stack).log_id
    # history restarts: the replication service loses its logs, the primary starts a new one
    stack.stop_one("scheduler")
    stack.stop_one("replica-scheduler")
    stack.stop_one("storage")
    stack.stop_one("replication")
    shutil.rmtree(stack.data_dir / "replication")
    for name in ("replication", "storage", "scheduler", "replica-scheduler"):
        stack.start(name)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("INSERT INTO hist VALUES (2)")
    new = wait_converged(stack)
    assert new.log_id != old
    for name in ("replica1", "replica2"):
        assert "installed snapshot" in (stack.log_dir / f"{name}.log").read_text()
        assert dbhash(stack.db_path(name)) == dbhash(stack.db_path("storage"))
    with psycopg.connect(stack.replica_dsn, autocommit=True) as c:
        assert c.execute("SELECT a FROM hist ORDER BY a").fetchall() == [(1,), (2,)]


def test_a_running_primary_starts_a_new_history_when_the_log_is_lost(own_stack):
    """The replication service loses its log (wiped, then restored from a backup) while the
    primary runs with a reader open on it: commits go on being acknowledged, no storage restart.
    The file backend's capturer (mvsqlite's: test_mvsqlite_replication.py)."""
    stack = own_stack(replicas=2, backend_name="sqlite")
    storage_pid = stack.procs["storage"].pid
    primary = psycopg.connect(stack.dsn, autocommit=True)
    reader = psycopg.connect(stack.dsn, autocommit=True)
    try:
        _lose_the_log_twice(stack, primary, reader)
    finally:
        reader.close()
        primary.close()
    assert stack.procs["storage"].pid == storage_pid and stack.procs["storage"].poll() is None
    # at start-up, after the wipe, after the restore
    assert (stack.log_dir / "storage.log").read_text().count('msg="new history" db=main ') == 3


def _lose_the_log_twice(stack, primary: psycopg.Connection, reader: psycopg.Connection) -> None:
    primary.execute("CREATE TABLE lost (a INTEGER, b BLOB); INSERT INTO lost VALUES (1, randomblob(100))")
    old = wait_converged(stack).log_id
    # a reader on the primary keeps an old snapshot: SQLite cannot checkpoint the frames after it,
    # so the database file alone lacks them
    reader.execute("SET sqld.consistency = strong")
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM lost").fetchone() == (1,)
    for i in range(2, 40):
        primary.execute(f"INSERT INTO lost VALUES ({i}, randomblob(3000))")
    replication_dir = stack.data_dir / "replication"

    def check_converged(values: list[int]) -> str:
        s = wait_converged(stack)
        for name in ("replica1", "replica2"):
            assert dbhash(stack.db_path(name)) == dbhash(stack.db_path("storage")), name
        with psycopg.connect(stack.replica_dsn, autocommit=True) as c:
            assert [r[0] for r in c.execute("SELECT a FROM lost ORDER BY a")] == values
        return s.log_id

    # 1. the service's folder is wiped; a commit waits in Append meanwhile
    stack.stop_one("replication")
    outcome: list = []

    def commit() -> None:
        try:
            with psycopg.connect(stack.dsn, autocommit=True) as c:
                c.execute("INSERT INTO lost VALUES (40, randomblob(5000))")
            outcome.append("ok")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome.append(exc)
    pending = threading.Thread(target=commit)
    pending.start()
    shutil.rmtree(replication_dir)
    stack.start("replication")
    pending.join(60)
    assert outcome == ["ok"], outcome
    for i in range(41, 50):
        primary.execute(f"INSERT INTO lost VALUES ({i}, randomblob(2000))")
    first = check_converged(list(range(1, 50)))
    assert first != old
    for name in ("replica1", "replica2"):
        assert (stack.log_dir / f"{name}.log").read_text().count("installed snapshot") >= 2, name

    # 2. the service is restored from a backup: the same log id, but a shorter log (FRAME_GAP)
    stack.stop_one("replication")
    backup = stack.data_dir.parent / "replication-backup"
    shutil.copytree(replication_dir, backup)
    stack.start("replication")
    primary.execute("INSERT INTO lost VALUES (50, randomblob(100))")
    wait_converged(stack)
    stack.stop_one("replication")
    shutil.rmtree(replication_dir)
    shutil.copytree(backup, replication_dir)
    stack.start("replication")
    primary.execute("UPDATE lost SET b = randomblob(4000) WHERE a % 3 = 0")
    primary.execute("INSERT INTO lost VALUES (51, randomblob(100))")
    second = check_converged(list(range(1, 52)))
    assert second not in (old, first)

    # the reader's snapshot was left alone
    assert reader.execute("SELECT count(*) FROM lost").fetchone() == (1,)
    reader.execute("COMMIT")
