"""Transactions that read first and then write are not starved by write-first ones.

SQLite has one writer: a transaction that read before another commit cannot write (40001).
The scheduler makes a session's next transaction after a 40001 take the writer token at
its first statement, and `SET sqld.begin_as_writer = on` does so for every transaction.
"""
from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest


def blocked_write(stack, sql: str) -> bool:
    """Whether an autocommit write has to wait for the writer token (cancelled after 300 ms)."""
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("SET statement_timeout = 300")
        try:
            c.execute(sql)
        except psycopg.errors.QueryCanceled:
            return True
        return False


def test_after_40001_and_when_asked_a_transaction_begins_as_writer(own_stack):
    stack = own_stack()
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE acc (id INTEGER PRIMARY KEY, bal INTEGER)")
        c.execute("INSERT INTO acc VALUES (1, 100), (2, 100)")
    with psycopg.connect(stack.dsn) as a:
        a.execute("SELECT bal FROM acc WHERE id = 1")  # reads first: no writer token yet
        assert not blocked_write(stack, "UPDATE acc SET bal = bal + 1 WHERE id = 2")
        with pytest.raises(psycopg.errors.SerializationFailure):
            a.execute("UPDATE acc SET bal = bal - 1 WHERE id = 1")
        a.rollback()
        a.execute("SELECT bal FROM acc WHERE id = 1")  # the retry begins as a writer
        assert blocked_write(stack, "UPDATE acc SET bal = bal + 1 WHERE id = 2")
        a.execute("UPDATE acc SET bal = bal - 1 WHERE id = 1")
        a.commit()
        a.execute("SELECT bal FROM acc WHERE id = 1")  # only the next one: back to reading first
        assert not blocked_write(stack, "UPDATE acc SET bal = bal + 1 WHERE id = 2")
        a.rollback()

        a.autocommit = True
        a.execute("SET sqld.begin_as_writer = on")
        assert a.execute("SHOW sqld.begin_as_writer").fetchone() == ("on",)
        a.autocommit = False
        for _ in range(2):
            a.execute("SELECT bal FROM acc WHERE id = 1")
            assert blocked_write(stack, "UPDATE acc SET bal = bal + 1 WHERE id = 2")
            a.execute("UPDATE acc SET bal = bal - 1 WHERE id = 1")
            a.commit()
        a.autocommit = True
        assert a.execute("SELECT bal FROM acc ORDER BY id").fetchall() == [(97,), (102,)]
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            a.execute("SET sqld.begin_as_writer = maybe")


def test_read_first_transfers_commit_under_steady_writes(own_stack):
    """A few write-first writers keep the writer busy; read-first transfers that retry on
    40001 still commit at least a tenth as often per client."""
    stack = own_stack()
    accounts = 20
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE bank (id INTEGER PRIMARY KEY, bal INTEGER)")
        c.execute("INSERT INTO bank VALUES " + ", ".join(f"({i}, 1000)" for i in range(accounts)))
    stop = threading.Event()
    commits = {"write_first": 0, "read_first": 0}
    retries = {"read_first": 0}
    lock = threading.Lock()

    def write_first() -> None:
        with psycopg.connect(stack.dsn) as c:
            rnd = random.Random()
            while not stop.is_set():
                c.execute("UPDATE bank SET bal = bal + 1 WHERE id = %s", (rnd.randrange(accounts),))
                c.commit()
                with lock:
                    commits["write_first"] += 1

    def read_first() -> None:
        with psycopg.connect(stack.dsn) as c:
            rnd = random.Random()
            while not stop.is_set():
                src, dst = rnd.sample(range(accounts), 2)
                while not stop.is_set():
                    try:
                        (bal,) = c.execute("SELECT bal FROM bank WHERE id = %s", (src,)).fetchone()
                        if bal > 0:
                            c.execute("UPDATE bank SET bal = bal - 1 WHERE id = %s", (src,))
                            c.execute("UPDATE bank SET bal = bal + 1 WHERE id = %s", (dst,))
                        c.commit()
                        with lock:
                            commits["read_first"] += 1
                        break
                    except psycopg.errors.SerializationFailure:
                        c.rollback()
                        with lock:
                            retries["read_first"] += 1

    writers = [threading.Thread(target=write_first) for _ in range(3)]
    readers = [threading.Thread(target=read_first) for _ in range(2)]
    for t in writers + readers:
        t.start()
    time.sleep(5)
    stop.set()
    for t in writers + readers:
        t.join(30)
    per_writer = commits["write_first"] / len(writers)
    per_reader = commits["read_first"] / len(readers)
    print(f"write-first {commits['write_first']} commits, read-first {commits['read_first']} "
          f"commits ({retries['read_first']} retries after 40001) in 5 s")
    assert per_writer > 20
    assert per_reader >= per_writer / 10, (commits, retries)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        assert c.execute("SELECT sum(bal) FROM bank").fetchone() == (accounts * 1000 + commits["write_first"],)
