"""kill -9 of storage: every acknowledged commit is there after restart."""
from __future__ import annotations

import threading
import time

import psycopg


def test_acknowledged_commit_survives_kill_9(own_stack):
    stack = own_stack()
    stack.allowed_errors.append(r"storage call failed")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE durable (a INTEGER PRIMARY KEY, b TEXT)")
        c.execute("INSERT INTO durable VALUES (1, 'acknowledged')")
    stack.kill("storage")  # right after the commit was acknowledged
    stack.start("storage")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        assert c.execute("SELECT a, b FROM durable").fetchall() == [(1, "acknowledged")]


def test_commits_acknowledged_during_kill_are_all_kept(own_stack):
    stack = own_stack()
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE stream (n INTEGER PRIMARY KEY)")
    acknowledged: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(stack.dsn, autocommit=True) as c:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    c.execute(f"INSERT INTO stream VALUES ({n})")
                except psycopg.Error:
                    return  # the kill interrupted this commit: it may or may not be there
                acknowledged.append(n)

    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    stack.kill("storage")
    stop.set()
    t.join(30)
    assert len(acknowledged) >= 50
    stack.start("storage")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        present = {r[0] for r in c.execute("SELECT n FROM stream").fetchall()}
        assert set(acknowledged) <= present
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_failed_answers_during_kill_tell_retry_from_in_doubt(own_stack):
    """kill -9 of storage under a stream of autocommit INSERTs: a statement answered "did not
    complete, retry" (57P03) must not be in the table, or following the advice writes twice;
    one whose commit was sent and whose answer was lost is in doubt (08007): either way."""
    stack = own_stack()
    stack.allowed_errors.append(r"storage call failed")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE doubt (n INTEGER PRIMARY KEY)")
    acknowledged: list[int] = []
    failed: list[tuple[int, str, str]] = []  # id, SQLSTATE, message
    stop = threading.Event()

    def writer(k: int) -> None:
        c = psycopg.connect(stack.dsn, autocommit=True)
        n = k * 1_000_000
        while not stop.is_set():
            n += 1
            try:
                c.execute(f"INSERT INTO doubt VALUES ({n})")
                acknowledged.append(n)
            except psycopg.Error as exc:
                failed.append((n, exc.sqlstate or "", str(exc)))
                if c.closed:
                    c = psycopg.connect(stack.dsn, autocommit=True)
        c.close()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            before = len(acknowledged)
            deadline = time.monotonic() + 30
            while len(acknowledged) < before + 40 and time.monotonic() < deadline:
                time.sleep(0.01)
            stack.kill("storage")
            time.sleep(0.2)
            stack.start("storage")
    finally:
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(60)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        present = {r[0] for r in c.execute("SELECT n FROM doubt").fetchall()}
    assert failed, "the kills failed no statement"
    assert {state for _, state, _ in failed} <= {"57P03", "08007"}, failed
    retry = [n for n, state, msg in failed if state == "57P03"]
    assert all("retry" in msg for n, state, msg in failed if state == "57P03")
    assert not set(retry) & present, f"answered 'retry' yet committed: {sorted(set(retry) & present)}"
    assert set(acknowledged) <= present
    doubt = [n for n, state, _ in failed if state == "08007"]
    print(f"acknowledged={len(acknowledged)} retry={len(retry)} in_doubt={len(doubt)} "
          f"in_doubt_committed={len(set(doubt) & present)}")


def test_a_reader_process_on_the_primary_file_cannot_delete_its_wal(own_stack):
    """Another process opening the primary's database (sqlite3, dbhash, a backup tool) and
    closing it must not find itself the last connection: that one checkpoints and deletes the
    WAL, and the primary's later commits would go to the deleted file and vanish at restart.
    Our own reads of the database file and the -shm (a new history's image, the wal-index
    header) used to close descriptors of those files, which drops every POSIX lock the process
    holds on them (SQLite's shared lock included)."""
    from tests.e2e.test_replication import dbhash, wait_converged
    stack = own_stack(replicas=1, backend_name="sqlite")  # a replicated primary: its capturer reads the files
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE kept (a INTEGER PRIMARY KEY)")
        c.execute("INSERT INTO kept VALUES (1)")
    wait_converged(stack, names=("replica1",))
    wal = stack.db_path("storage").with_name("main.db-wal")
    assert wal.exists()
    dbhash(stack.db_path("storage"))  # a separate process opens and closes the live database
    assert wal.exists(), "another process's close deleted the primary's WAL"
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("INSERT INTO kept VALUES (2)")
    stack.stop_one("storage")
    stack.start("storage")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        assert [r[0] for r in c.execute("SELECT a FROM kept ORDER BY a")] == [1, 2]
