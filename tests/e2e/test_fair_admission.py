"""Slow statements do not starve short ones, and the limits answer clearly.

Storage gives every open connection a worker thread of its own (PostgreSQL's backend per
connection), up to `--max-connections`: sixteen endless queries take sixteen threads, not
all of them, and a point select still runs at once. Past the limit an Open answers 53300.
`--statement-timeout` on the edge is the server's default for `statement_timeout`.
"""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

ENDLESS = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"


def test_point_selects_keep_answering_while_sixteen_queries_run_forever(own_stack):
    stack = own_stack()
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)")
        c.execute("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 100) "
                  "INSERT INTO kv SELECT i, 'v' || i FROM s")
    slow = [psycopg.connect(stack.dsn, autocommit=True) for _ in range(16)]
    outcomes: list[str] = []

    def endless(conn: psycopg.Connection) -> None:
        try:
            conn.execute(ENDLESS)
            outcomes.append("finished")
        except psycopg.errors.QueryCanceled:
            outcomes.append("canceled")
        except psycopg.Error as exc:
            outcomes.append(f"{exc.sqlstate} {exc}")

    threads = [threading.Thread(target=endless, args=(c,)) for c in slow]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)  # let them all reach storage
        worst = 0.0
        with psycopg.connect(stack.dsn, autocommit=True, connect_timeout=10) as c:
            for k in range(1, 21):
                start = time.monotonic()
                assert c.execute("SELECT v FROM kv WHERE k = %s", (k,)).fetchone() == (f"v{k}",)
                worst = max(worst, time.monotonic() - start)
        assert worst < 1.0, f"a point select took {worst:.2f}s"
        assert not outcomes, outcomes  # the endless ones still run
    finally:
        _stop(slow, threads)
    assert outcomes == ["canceled"] * 16, outcomes


def _stop(slow, threads):
    """Cancel the endless statements, wait for their threads, close their connections."""
    for c in slow:
        c.cancel()
    for t in threads:
        t.join(30)
    for c in slow:
        c.close()


def test_storage_refuses_connections_past_its_limit_with_53300(own_stack):
    stack = own_stack(env={"SQLD_STORAGE_MAX_CONNECTIONS": "3"})
    slow = [psycopg.connect(stack.dsn, autocommit=True) for _ in range(3)]
    threads = [threading.Thread(target=lambda c=c: pytest.raises(psycopg.errors.QueryCanceled, c.execute, ENDLESS))
               for c in slow]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        with psycopg.connect(stack.dsn, autocommit=True) as c:
            with pytest.raises(psycopg.errors.TooManyConnections, match="storage connections"):
                c.execute("SELECT 1")
    finally:
        _stop(slow, threads)
    with psycopg.connect(stack.dsn, autocommit=True) as c:  # free again once they ended
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_a_server_wide_statement_timeout(own_stack):
    stack = own_stack(env={"SQLD_EDGE_STATEMENT_TIMEOUT": "500ms"})
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        assert c.execute("SHOW statement_timeout").fetchone() == ("500ms",)
        start = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="canceling statement due to statement timeout"):
            c.execute(ENDLESS)
        assert time.monotonic() - start < 5
        c.execute("SET statement_timeout = 0")  # a session may lift it, as in PostgreSQL
        c.execute("RESET statement_timeout")
        assert c.execute("SHOW statement_timeout").fetchone() == ("500ms",)
        assert c.execute("SELECT 1").fetchone() == (1,)
