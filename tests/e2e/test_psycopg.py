"""psycopg 3 against the edge: CRUD, types, errors with their SQLSTATEs, transactions."""
from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pgerr


@pytest.fixture
def conn(stack):
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        yield c


def test_crud_round_trip(conn):
    conn.execute("DROP TABLE IF EXISTS crud")
    conn.execute("CREATE TABLE crud (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, data BLOB)")
    cur = conn.execute("INSERT INTO crud VALUES (1, 'ann', 1.5, x'00ff'), (2, 'bob', 2, NULL), (3, 'cy', NULL, NULL)")
    assert cur.statusmessage == "INSERT 0 3"
    assert cur.rowcount == 3
    cur = conn.execute("UPDATE crud SET score = score * 2 WHERE id <= 2")
    assert cur.statusmessage == "UPDATE 2"
    cur = conn.execute("DELETE FROM crud WHERE id = 3")
    assert cur.statusmessage == "DELETE 1"
    rows = conn.execute("SELECT id, name, score, data FROM crud ORDER BY id").fetchall()
    assert rows == [(1, "ann", 3.0, b"\x00\xff"), (2, "bob", 4.0, None)]
    cur = conn.execute("SELECT id FROM crud WHERE id > 100")
    assert cur.fetchall() == [] and cur.statusmessage == "SELECT 0"
    assert [d.name for d in cur.description] == ["id"]


def test_column_types_follow_affinity(conn):
    conn.execute("DROP TABLE IF EXISTS typed")
    conn.execute("CREATE TABLE typed (i INT, f DOUBLE PRECISION, t VARCHAR(10), b BLOB, n NUMERIC, flag BOOLEAN)")
    conn.execute("INSERT INTO typed VALUES (7, 0.5, 'x', x'01', 12.25, 1)")
    cur = conn.execute("SELECT i, f, t, b, n, flag, 1e15, 1.0, 'lit', NULL FROM typed")
    row = cur.fetchone()
    oids = [d.type_code for d in cur.description]
    assert oids == [20, 701, 25, 17, 1700, 16, 701, 701, 25, 25]
    assert row[:4] == (7, 0.5, "x", b"\x01")
    assert str(row[4]) == "12.25" and row[5] is True and row[6] == 1e15 and row[7] == 1.0 and row[9] is None


def test_float_text_is_postgres_text(conn):
    cur = conn.cursor(binary=False)
    # Read the raw text PostgreSQL clients see, through a text cast-free path: psql prints the same.
    rows = cur.execute("SELECT 1.0, 1e15, 1e14, 1.5e-5, 0.1 + 0.2, 9e999, -9e999").fetchone()
    assert rows == (1.0, 1e15, 1e14, 1.5e-5, 0.30000000000000004, float("inf"), float("-inf"))


@pytest.mark.parametrize("setup, bad, exc, sqlstate", [
    ("", "SELEC 1", pgerr.SyntaxError, "42601"),
    ("", "SELECT * FROM no_such_table", pgerr.UndefinedTable, "42P01"),
    ("", "SELECT no_such_column FROM (SELECT 1 AS a)", pgerr.UndefinedColumn, "42703"),
    ("CREATE TABLE e_u (a INTEGER PRIMARY KEY); INSERT INTO e_u VALUES (1)",
     "INSERT INTO e_u VALUES (1)", pgerr.UniqueViolation, "23505"),
    ("CREATE TABLE e_n (a TEXT NOT NULL)", "INSERT INTO e_n VALUES (NULL)", pgerr.NotNullViolation, "23502"),
    ("CREATE TABLE e_p (id INTEGER PRIMARY KEY); CREATE TABLE e_c (p INTEGER REFERENCES e_p(id))",
     "INSERT INTO e_c VALUES (42)", pgerr.ForeignKeyViolation, "23503"),
    ("CREATE TABLE e_k (a INTEGER CHECK (a > 0))", "INSERT INTO e_k VALUES (-1)", pgerr.CheckViolation, "23514"),
    ("CREATE TABLE e_x (a INTEGER)", "CREATE TABLE e_x (a INTEGER)", pgerr.DuplicateTable, "42P07"),
    ("", "SELECT no_such_function(1)", pgerr.UndefinedFunction, "42883"),
])
def test_errors_carry_sqlstate_and_session_survives(conn, setup, bad, exc, sqlstate):
    for name in ("e_u", "e_n", "e_c", "e_p", "e_k", "e_x"):
        conn.execute(f"DROP TABLE IF EXISTS {name}")
    if setup:
        conn.execute(setup)
    with pytest.raises(exc) as info:
        conn.execute(bad)
    assert info.value.sqlstate == sqlstate
    assert conn.execute("SELECT 41 + 1").fetchone() == (42,)


def test_multi_statement_string_is_one_implicit_transaction(conn):
    conn.execute("DROP TABLE IF EXISTS multi; CREATE TABLE multi (a INTEGER UNIQUE)")
    cur = conn.execute("INSERT INTO multi VALUES (1); INSERT INTO multi VALUES (2); SELECT count(*) FROM multi")
    tags = [cur.statusmessage]
    while cur.nextset():
        tags.append(cur.statusmessage)
    assert tags == ["INSERT 0 1", "INSERT 0 1", "SELECT 1"]
    assert cur.fetchone() == (2,)
    with pytest.raises(pgerr.UniqueViolation):
        conn.execute("INSERT INTO multi VALUES (3); INSERT INTO multi VALUES (1)")
    # as on PostgreSQL, the whole string was one transaction: 3 is not there either
    assert conn.execute("SELECT a FROM multi ORDER BY a").fetchall() == [(1,), (2,)]


def test_empty_query(conn):
    for sql in ("", "  ;  ", "-- nothing\n"):
        cur = conn.execute(sql)
        assert cur.pgresult.status == psycopg.pq.ExecStatus.EMPTY_QUERY
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_transaction_isolation_and_rollback(stack, conn):
    conn.execute("DROP TABLE IF EXISTS tx; CREATE TABLE tx (a INTEGER)")
    with psycopg.connect(stack.dsn) as writer:  # not autocommit: psycopg sends BEGIN
        writer.execute("INSERT INTO tx VALUES (1)")
        assert writer.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        writer.execute("INSERT INTO tx VALUES (2)")
        assert writer.execute("SELECT count(*) FROM tx").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM tx").fetchone() == (0,)  # invisible to others
        writer.rollback()
        assert writer.execute("SELECT count(*) FROM tx").fetchone() == (0,)
        writer.execute("INSERT INTO tx VALUES (3)")
        writer.commit()
    assert conn.execute("SELECT a FROM tx").fetchall() == [(3,)]


def test_disconnect_rolls_back(stack, conn):
    conn.execute("DROP TABLE IF EXISTS gone; CREATE TABLE gone (a INTEGER)")
    c = psycopg.connect(stack.dsn)
    c.execute("INSERT INTO gone VALUES (1)")
    c.pgconn.finish()  # the client just goes away, no ROLLBACK, no Terminate handshake
    # the writer token is free again and the row was rolled back
    conn.execute("INSERT INTO gone VALUES (2)")
    assert conn.execute("SELECT a FROM gone").fetchall() == [(2,)]


def test_error_in_transaction_fails_it_until_rollback(stack):
    with psycopg.connect(stack.dsn) as c:
        c.execute("DROP TABLE IF EXISTS ft")
        c.execute("CREATE TABLE ft (a INTEGER PRIMARY KEY)")
        c.commit()
        c.execute("INSERT INTO ft VALUES (1)")
        with pytest.raises(pgerr.UniqueViolation):
            c.execute("INSERT INTO ft VALUES (1)")
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(pgerr.InFailedSqlTransaction) as info:
            c.execute("SELECT 1")
        assert info.value.sqlstate == "25P02"
        c.rollback()
        assert c.execute("SELECT count(*) FROM ft").fetchone() == (0,)


def test_begin_twice_and_commit_outside_warn(conn):
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.sqlstate))
    conn.execute("BEGIN")
    conn.execute("BEGIN")
    conn.execute("COMMIT")
    conn.execute("COMMIT")
    assert notices == ["25001", "25P01"]


# Unaliased select items named as PostgreSQL's FigureColname names them (SQLite would say `1`,
# `count(*)`, `n + 1`, ...); bare columns and aliases keep their names, `*` expands as before.
COLNAMES_SQL = ("SELECT 1, 'x', n + 1, -n, n IS NULL, count(*), max(n), lower(s), coalesce(s, ''), "
                "n::text, 1::int, '2'::bigint, CAST(n AS REAL), CAST(1 AS TEXT), "
                "CASE WHEN n > 0 THEN 'p' END, CASE WHEN n > 0 THEN 1 ELSE n END, "
                "(SELECT max(n) FROM colnames_t), EXISTS (SELECT 1), (n), "
                "n, t.s, n AS alias, s other, current_timestamp "
                "FROM colnames_t t GROUP BY n, s")
COLNAMES_WANT = ["?column?", "?column?", "?column?", "?column?", "?column?", "count", "max", "lower", "coalesce",
                 "n", "int4", "int8", "n", "text", "case", "n", "max", "exists", "n",
                 "n", "s", "alias", "other", "current_timestamp"]


@pytest.fixture
def colnames_table(conn):
    conn.execute("DROP TABLE IF EXISTS colnames_t")
    conn.execute("CREATE TABLE colnames_t (n INTEGER, s TEXT)")
    conn.execute("INSERT INTO colnames_t VALUES (1, 'a')")


def names(cur) -> list[str]:
    return [d.name for d in cur.description]


def test_column_names_follow_postgres_simple_protocol(conn, colnames_table):
    assert names(conn.execute(COLNAMES_SQL)) == COLNAMES_WANT
    assert names(conn.execute("SELECT *, n * 2, 7 FROM colnames_t")) == ["n", "s", "?column?", "?column?"]
    assert names(conn.execute("SELECT 1 UNION ALL SELECT count(*) FROM colnames_t")) == ["?column?"]
    assert names(conn.execute("WITH w AS (SELECT n FROM colnames_t) SELECT sum(n), avg(n) FROM w")) == ["sum", "avg"]
    cur = conn.execute("INSERT INTO colnames_t VALUES (2, 'b') RETURNING n, n * 10, upper(s)")
    assert names(cur) == ["n", "?column?", "upper"]


def test_column_names_follow_postgres_extended_protocol(conn, colnames_table):
    with_param = COLNAMES_SQL.replace("SELECT 1,", "SELECT %s::int,")
    want = ["int4"] + COLNAMES_WANT[1:]
    assert names(conn.execute(with_param, (5,))) == want
    cur = conn.cursor()
    cur.execute(with_param, (5,), prepare=True)  # Parse + Describe S: the names come before the rows
    assert names(cur) == want and cur.fetchone()[0] == 5
    cur.execute(with_param, (6,), prepare=True)
    assert names(cur) == want and cur.fetchone()[0] == 6


def test_column_names_of_server_side_cursor(stack, colnames_table):
    with psycopg.connect(stack.dsn) as c:
        with c.cursor(name="named") as cur:
            cur.execute("SELECT n + %s, count(*), n FROM colnames_t GROUP BY n", (1,))
            assert cur.fetchall() == [(2, 1, 1)]
            assert names(cur) == ["?column?", "count", "n"]
