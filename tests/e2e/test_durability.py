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
