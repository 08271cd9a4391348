"""One FIFO writer queue per database across both sites.

The replica site's scheduler sends writes to the primary's storage, as the primary site's
scheduler does; each has its own writer token, so the queue that every writer of a
database passes through is storage's (`Execute.take_writer`). Writers from both sites
queue there instead of meeting SQLite's busy timeout ('database is locked').
"""
from __future__ import annotations

import threading
import time

import psycopg


def test_writers_of_both_sites_queue_and_nothing_is_lost(own_stack):
    stack = own_stack(replicas=1)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, site TEXT, n INTEGER)")
        c.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, v INTEGER)")
        c.execute("INSERT INTO counter VALUES (1, 0)")
    acked = {"primary": 0, "replica": 0}
    failures: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + 12.0  # beyond SQLite's 10 s busy timeout

    def writer(site: str, dsn: str) -> None:
        try:
            with psycopg.connect(dsn) as conn:
                while time.monotonic() < stop:
                    try:
                        # a short write transaction with a little work inside
                        conn.execute("UPDATE counter SET v = v + 1 WHERE id = 1")
                        n = conn.execute("SELECT v FROM counter WHERE id = 1").fetchone()[0]
                        conn.execute("SELECT count(*) FROM (WITH RECURSIVE r(i) AS "
                                     "(SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 100000) SELECT i FROM r)")
                        conn.execute("INSERT INTO q (site, n) VALUES (%s, %s)", (site, n))
                        conn.commit()
                    except psycopg.Error as exc:
                        conn.rollback()
                        with lock:
                            failures.append(f"{site}: {exc.sqlstate} {exc}")
                        continue
                    with lock:
                        acked[site] += 1
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            with lock:
                failures.append(f"{site}: {exc!r}")

    threads = [threading.Thread(target=writer, args=(site, dsn))
               for site, dsn in [("primary", stack.dsn), ("replica", stack.replica_dsn)] for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures[:5]
    assert acked["primary"] > 0 and acked["replica"] > 0, acked
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        rows = c.execute("SELECT site, count(*) FROM q GROUP BY site ORDER BY site").fetchall()
        v = c.execute("SELECT v FROM counter").fetchone()[0]
        distinct = c.execute("SELECT count(DISTINCT n) FROM q").fetchone()[0]
    assert dict(rows) == {k: v for k, v in acked.items()}, (rows, acked)
    total = acked["primary"] + acked["replica"]
    assert v == total and distinct == total  # serial: every transaction saw the one before it


def test_a_replica_site_writer_waits_past_the_busy_timeout_for_the_primary_sites_transaction(own_stack):
    """SQLite alone would give up after its 10 s busy timeout ('database is locked', 55P03);
    the queue waits up to the scheduler's --wait-timeout (30 s)."""
    stack = own_stack(replicas=1)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (x INTEGER)")
    with psycopg.connect(stack.dsn) as holder, psycopg.connect(stack.replica_dsn, autocommit=True) as other:
        holder.execute("INSERT INTO t VALUES (1)")  # holds the writer
        done: list[float] = []

        def release() -> None:
            time.sleep(11.0)
            holder.commit()
            done.append(time.monotonic())

        t = threading.Thread(target=release)
        t.start()
        try:
            other.execute("INSERT INTO t VALUES (2)")
        finally:
            t.join()
        assert done and time.monotonic() >= done[0]
        # cancelling a wait in storage's queue answers 57014 and leaves the session usable
        holder.execute("INSERT INTO t VALUES (3)")
        other.execute("SET statement_timeout = 300")
        try:
            other.execute("INSERT INTO t VALUES (4)")
            raise AssertionError("the write did not wait for the writer")
        except psycopg.errors.QueryCanceled:
            pass
        holder.rollback()
        other.execute("INSERT INTO t VALUES (5)")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        assert c.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,), (5,)]
