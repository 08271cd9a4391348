"""The extended query protocol with real clients: psycopg 3 and asyncpg."""
from __future__ import annotations

import asyncio
import datetime
import decimal
import threading
import time
import uuid

import asyncpg
import psycopg
import pytest
from psycopg import errors as pgerr
from psycopg.types.json import Json, Jsonb


@pytest.fixture
def conn(stack):
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        yield c


def test_psycopg_parameters_of_every_type(conn):
    conn.execute("DROP TABLE IF EXISTS pt; CREATE TABLE pt (i2 INTEGER, i4 INTEGER, i8 INTEGER, f4 REAL, f8 REAL, "
                 "b BOOLEAN, n NUMERIC, t TEXT, by BLOB, d TEXT, ts TEXT, tz TEXT, u TEXT, j TEXT, jb TEXT)")
    values = (7, 70000, 2**40, 1.5, 0.1, True, decimal.Decimal("12.25"), "héllo", b"\x00\xff",
              datetime.date(2024, 2, 29), datetime.datetime(2024, 2, 29, 13, 14, 15, 123456),
              datetime.datetime(2024, 2, 29, 13, 14, 15, tzinfo=datetime.UTC), uuid.UUID(int=42),
              Json({"a": 1}), Jsonb([1, 2]))
    for binary in (False, True):
        conn.execute("DELETE FROM pt")
        with conn.cursor(binary=binary) as cur:
            cur.execute("INSERT INTO pt VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", values)
            row = cur.execute("SELECT * FROM pt WHERE i8 = %s AND t = %s", (2**40, "héllo")).fetchone()
        assert row[:9] == (7, 70000, 2**40, 1.5, 0.1, True, decimal.Decimal("12.25"), "héllo", b"\x00\xff")
        assert row[9] == "2024-02-29"
        assert row[10] == "2024-02-29 13:14:15.123456"
        assert row[11].startswith("2024-02-29 13:14:15")
        assert row[12] == str(uuid.UUID(int=42))
        assert row[13].replace(" ", "") == '{"a":1}' and row[14].replace(" ", "") == "[1,2]"


def test_psycopg_none_and_placeholders_order(conn):
    assert conn.execute("SELECT %s, %s", (None, 1)).fetchone() == (None, 1)
    assert conn.execute("SELECT %(b)s, %(a)s, %(b)s", {"a": 1, "b": 2}).fetchone() == (2, 1, 2)
    # $2 before $1: SQLite alone would bind these by first appearance
    cur = conn.cursor()
    cur.execute(psycopg.sql.SQL("SELECT $2::int, $1::int"), (1, 2)) if False else None
    with conn.cursor() as c2:
        c2.execute("SELECT %s::text || %s::text", ("a", "b"))
        assert c2.fetchone() == ("ab",)


def test_psycopg_prepared_past_threshold(conn):
    conn.execute("DROP TABLE IF EXISTS pp; CREATE TABLE pp (a INTEGER PRIMARY KEY, b TEXT)")
    for i in range(20):
        conn.execute("INSERT INTO pp VALUES (%s, %s)", (i, f"v{i}"), prepare=None)
    for i in range(20):
        assert conn.execute("SELECT b FROM pp WHERE a = %s", (i,)).fetchone() == (f"v{i}",)
    # psycopg has switched to named server-side statements by now
    assert conn.execute("SELECT count(*) FROM pp", prepare=True).fetchone() == (20,)
    assert conn.execute("SELECT count(*) FROM pp", prepare=True).fetchone() == (20,)


def test_psycopg_executemany_pipeline(conn):
    conn.execute("DROP TABLE IF EXISTS em; CREATE TABLE em (a INTEGER PRIMARY KEY, b TEXT)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO em VALUES (%s, %s)", [(i, str(i)) for i in range(500)])
    assert conn.execute("SELECT count(*), sum(a) FROM em").fetchone() == (500, sum(range(500)))
    with conn.pipeline():
        for i in range(500, 600):
            conn.execute("INSERT INTO em VALUES (%s, %s)", (i, str(i)))
        cur = conn.execute("SELECT count(*) FROM em")
    assert cur.fetchone() == (600,)
    with pytest.raises(pgerr.UniqueViolation):
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO em VALUES (%s, %s)", [(1000, "x"), (1, "dup"), (1001, "y")])
    # the implicit transaction of the failed pipeline was rolled back as a whole
    assert conn.execute("SELECT count(*) FROM em WHERE a >= 1000").fetchone() == (0,)


def test_psycopg_binary_results(conn):
    with conn.cursor(binary=True) as cur:
        row = cur.execute("SELECT 1, 2.5, 'x', x'00ff', NULL, 1e300, 12345678901234").fetchone()
    assert row == (1, 2.5, "x", b"\x00\xff", None, 1e300, 12345678901234)


def test_psycopg_transaction_with_savepoints(stack):
    with psycopg.connect(stack.dsn) as c:
        c.execute("DROP TABLE IF EXISTS sp; CREATE TABLE sp (a INTEGER UNIQUE)")
        c.commit()
        with c.transaction():
            c.execute("INSERT INTO sp VALUES (1)")
            with pytest.raises(pgerr.UniqueViolation):
                with c.transaction():  # SAVEPOINT
                    c.execute("INSERT INTO sp VALUES (2)")
                    c.execute("INSERT INTO sp VALUES (1)")
            with c.transaction():
                c.execute("INSERT INTO sp VALUES (3)")
        assert c.execute("SELECT a FROM sp ORDER BY a").fetchall() == [(1,), (3,)]


def test_psycopg_cancel(stack, conn):
    errors = []

    def slow():
        try:
            with psycopg.connect(stack.dsn) as c:
                holder.append(c)
                c.execute("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    holder: list = []
    t = threading.Thread(target=slow)
    t.start()
    deadline = time.monotonic() + 10
    while not holder and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    holder[0].cancel()
    t.join(20)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], pgerr.QueryCanceled), errors
    assert "user request" in str(errors[0])


def test_statement_timeout(conn):
    conn.execute("SET statement_timeout = 200")
    started = time.monotonic()
    with pytest.raises(pgerr.QueryCanceled) as info:
        conn.execute("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r")
    assert "statement timeout" in str(info.value)
    assert time.monotonic() - started < 5
    conn.execute("RESET statement_timeout")
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_set_show_reset(conn):
    conn.execute("SET application_name = 'tests'")
    assert conn.execute("SHOW application_name").fetchone() == ("tests",)
    assert conn.info.parameter_status("application_name") == "tests"
    assert conn.execute("SELECT current_setting('application_name')").fetchone() == ("tests",)
    conn.execute("RESET ALL")
    assert conn.execute("SHOW application_name").fetchone() == ("",)
    assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)
    assert conn.execute("select current_schema()").fetchone() == ("public",)
    with pytest.raises(pgerr.UndefinedObject):
        conn.execute("SHOW no_such_setting")


async def _asyncpg_main(stack):
    conn = await asyncpg.connect(host="127.0.0.1", port=stack.ports.pg, user="postgres", database="main")
    try:
        await conn.execute("DROP TABLE IF EXISTS ap; CREATE TABLE ap (id INTEGER PRIMARY KEY, name TEXT, v REAL, b BLOB)")
        await conn.executemany("INSERT INTO ap VALUES ($1, $2, $3, $4)",
                               [(i, f"n{i}", i / 2, bytes([i])) for i in range(10)])
        assert await conn.fetchval("SELECT count(*) FROM ap") == 10
        row = await conn.fetchrow("SELECT id, name, v, b FROM ap WHERE id = $1", 3)
        assert tuple(row) == (3, "n3", 1.5, b"\x03")
        rows = await conn.fetch("SELECT id FROM ap WHERE id >= $1 ORDER BY id LIMIT $2", 5, 3)
        assert [r["id"] for r in rows] == [5, 6, 7]
        assert await conn.fetchval("SELECT $1::text || $2::text", "a", "b") == "ab"
        stmt = await conn.prepare("SELECT name FROM ap WHERE id = $1")
        assert [await stmt.fetchval(i) for i in range(3)] == ["n0", "n1", "n2"]
        async with conn.transaction():
            await conn.execute("UPDATE ap SET name = $1 WHERE id = $2", "changed", 1)
            assert await conn.fetchval("SELECT name FROM ap WHERE id = 1") == "changed"
        try:
            async with conn.transaction():
                await conn.execute("DELETE FROM ap")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert await conn.fetchval("SELECT count(*) FROM ap") == 10
        with pytest.raises(asyncio.TimeoutError):
            await conn.fetchval("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
                                "SELECT count(*) FROM r", timeout=0.3)
        assert await conn.fetchval("SELECT 41 + 1") == 42  # usable after the cancel
        async with asyncpg.create_pool(host="127.0.0.1", port=stack.ports.pg, user="postgres",
                                       database="main", min_size=2, max_size=2) as pool:
            for _ in range(5):
                async with pool.acquire() as c:
                    assert await c.fetchval("SELECT count(*) FROM ap WHERE id < $1", 5) == 5
    finally:
        await conn.close()


def test_asyncpg(stack):
    asyncio.run(_asyncpg_main(stack))
