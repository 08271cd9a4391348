"""Many writers at once: no 'database is locked', no lost row."""
from __future__ import annotations

import threading

import psycopg

WRITERS = 8
ROWS = 500  # per writer: 2,000 autocommit commits and 20 transactions of 100 rows race


def test_eight_concurrent_writers_lose_nothing(stack):
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS conc; CREATE TABLE conc (writer INTEGER, n INTEGER, PRIMARY KEY (writer, n))")
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            if w % 2 == 0:  # autocommit: one commit per row
                with psycopg.connect(stack.dsn, autocommit=True) as c:
                    for n in range(ROWS):
                        c.execute(f"INSERT INTO conc VALUES ({w}, {n})")
            else:  # explicit transactions of 100 rows, with reads inside
                with psycopg.connect(stack.dsn) as c:
                    for start in range(0, ROWS, 100):
                        with c.transaction():
                            for n in range(start, start + 100):
                                c.execute(f"INSERT INTO conc VALUES ({w}, {n})")
                            assert c.execute(f"SELECT count(*) FROM conc WHERE writer = {w}").fetchone() == (start + 100,)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*), count(DISTINCT writer) FROM conc").fetchone() == (WRITERS * ROWS, WRITERS)
        assert c.execute(f"SELECT writer, count(*) FROM conc GROUP BY writer HAVING count(*) != {ROWS}").fetchall() == []


def test_reads_proceed_while_a_transaction_holds_the_writer(stack):
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS rw; CREATE TABLE rw (a INTEGER); INSERT INTO rw VALUES (1)")
    with psycopg.connect(stack.dsn) as holder, psycopg.connect(stack.dsn, autocommit=True) as reader:
        holder.execute("INSERT INTO rw VALUES (2)")  # holds the writer token, uncommitted
        for i in range(20):
            assert reader.execute(f"SELECT count(*) FROM rw WHERE {i} >= 0").fetchone() == (1,)
        holder.commit()
        assert reader.execute("SELECT count(*) FROM rw").fetchone() == (2,)
