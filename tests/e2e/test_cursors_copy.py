"""Server-side cursors and COPY, with psycopg and psql."""
from __future__ import annotations

import subprocess

import psycopg
import pytest
from psycopg import errors as pgerr


@pytest.fixture
def conn(stack):
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS cc; CREATE TABLE cc (id INTEGER PRIMARY KEY, name TEXT, v REAL)")
        c.execute("WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 250) "
                  "INSERT INTO cc SELECT value, 'n' || value, value / 2.0 FROM s")
        yield c


def test_psycopg_server_side_cursor(stack, conn):
    with psycopg.connect(stack.dsn) as c:
        with c.cursor(name="big") as cur:
            cur.itersize = 40
            cur.execute("SELECT id, name FROM cc WHERE id > %s ORDER BY id", (10,))
            assert cur.fetchone() == (11, "n11")
            assert [r[0] for r in cur.fetchmany(3)] == [12, 13, 14]
            rest = list(cur)
            assert len(rest) == 236 and rest[-1] == (250, "n250")
    with conn.cursor(name="held", withhold=True) as cur:  # autocommit needs WITH HOLD
        cur.execute("SELECT count(*) FROM cc")
        assert cur.fetchone() == (250,)


def test_sql_cursor_statements(stack):
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        with pytest.raises(pgerr.NoActiveSqlTransaction):
            c.execute("DECLARE x CURSOR FOR SELECT 1")
        c.execute("BEGIN")
        c.execute("DECLARE x CURSOR FOR SELECT id FROM cc ORDER BY id")
        assert c.execute("FETCH 2 FROM x").fetchall() == [(1,), (2,)]
        cur = c.execute("MOVE FORWARD 10 IN x")
        assert cur.statusmessage == "MOVE 10"
        assert c.execute("FETCH NEXT FROM x").fetchall() == [(13,)]
        c.execute("CLOSE x")
        c.execute("COMMIT")


def test_psycopg_copy_in_and_out(conn):
    conn.execute("DROP TABLE IF EXISTS cp; CREATE TABLE cp (a INTEGER, b TEXT, c REAL)")
    with conn.cursor() as cur:
        with cur.copy("COPY cp (a, b, c) FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i, f"tab\there {i}" if i % 2 else None, i / 4))
        assert cur.statusmessage == "COPY 1000"
    assert conn.execute("SELECT count(*), count(b), sum(a) FROM cp").fetchone() == (1000, 500, sum(range(1000)))
    assert conn.execute("SELECT b FROM cp WHERE a = 1").fetchone() == ("tab\there 1",)
    with conn.cursor() as cur:
        with cur.copy("COPY (SELECT a, b FROM cp WHERE a < 3 ORDER BY a) TO STDOUT") as copy:
            rows = list(copy.rows())
    assert rows == [("0", None), ("1", "tab\there 1"), ("2", None)]
    with conn.cursor() as cur:
        with cur.copy("COPY cp TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            data = b"".join(bytes(b) for b in copy)
    lines = data.decode().splitlines()
    assert lines[0] == "a,b,c" and len(lines) == 1001


def test_copy_binary_is_refused_clearly(conn):
    with pytest.raises(pgerr.FeatureNotSupported) as info:
        with conn.cursor().copy("COPY cc FROM STDIN WITH (FORMAT binary)"):
            pass
    assert "binary" in str(info.value)
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_psql_backslash_copy(stack, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,name\n1,alpha\n2,\"be,ta\"\n3,\n4,\"\"\n")
    dst = tmp_path / "out.csv"
    base = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(stack.ports.pg), "-U", "postgres"]
    script = (f"DROP TABLE IF EXISTS pc; CREATE TABLE pc (id INTEGER, name TEXT);\n"
              f"\\copy pc FROM '{src}' WITH (FORMAT csv, HEADER)\n"
              f"\\copy (SELECT id, name FROM pc ORDER BY id) TO '{dst}' WITH (FORMAT csv)\n")
    out = subprocess.run(base + ["main"], input=script, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "COPY 4" in out.stdout
    assert dst.read_text().splitlines() == ["1,alpha", '2,"be,ta"', "3,", '4,""']  # NULL, then an empty string


def test_cursor_error_fails_the_transaction(stack):
    with psycopg.connect(stack.dsn) as c:
        with pytest.raises(pgerr.InvalidCursorName):
            c.execute("FETCH 1 FROM nope")
        with pytest.raises(pgerr.InFailedSqlTransaction):
            c.execute("SELECT 1")
        c.rollback()
        assert c.execute("SELECT 2").fetchone() == (2,)


def copy_in(conn, sql: str, data: bytes) -> str:
    with conn.cursor() as cur:
        with cur.copy(sql) as cp:
            cp.write(data)
        return cur.statusmessage


def test_copy_csv_quoted_empty_is_empty_string_unquoted_is_null(conn):
    conn.execute("DROP TABLE IF EXISTS csvnull; CREATE TABLE csvnull (id INTEGER, a TEXT, b TEXT)")
    data = b'1,"",\n2,,""\n3,"x,""y""","two\nlines"\n'
    assert copy_in(conn, "COPY csvnull FROM STDIN WITH (FORMAT csv)", data) == "COPY 3"
    rows = conn.execute("SELECT id, a, b, a IS NULL, b IS NULL FROM csvnull ORDER BY id").fetchall()
    assert rows == [(1, "", None, False, True), (2, None, "", True, False), (3, 'x,"y"', "two\nlines", False, False)]
    with conn.cursor() as cur:  # and back out: NULL unquoted, the empty string quoted, as PostgreSQL writes them
        with cur.copy("COPY (SELECT id, a, b FROM csvnull ORDER BY id) TO STDOUT WITH (FORMAT csv)") as cp:
            out = b"".join(bytes(b) for b in cp)
    assert out == data


def test_copy_csv_null_string_and_force_options(conn):
    conn.execute("DROP TABLE IF EXISTS csvopt; CREATE TABLE csvopt (id INTEGER, a TEXT, b TEXT)")
    copy_in(conn, "COPY csvopt FROM STDIN WITH (FORMAT csv, NULL 'NA')", b'1,NA,"NA"\n2,,""\n')
    assert conn.execute("SELECT id, a, b FROM csvopt ORDER BY id").fetchall() == [(1, None, "NA"), (2, "", "")]
    conn.execute("DELETE FROM csvopt")
    copy_in(conn, "COPY csvopt (id, a, b) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL (a), FORCE_NULL (b))",
            b'1,,""\n2,"",\n')
    assert conn.execute("SELECT id, a, b FROM csvopt ORDER BY id").fetchall() == [(1, "", None), (2, "", None)]
    conn.execute("DELETE FROM csvopt")
    copy_in(conn, "COPY csvopt FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL (A))", b"1,,\n")  # the table's columns
    assert conn.execute("SELECT a, b FROM csvopt").fetchall() == [("", None)]
    with pytest.raises(pgerr.InvalidColumnReference):
        copy_in(conn, "COPY csvopt (id) FROM STDIN WITH (FORMAT csv, FORCE_NULL (b))", b"1\n")
    with pytest.raises(pgerr.FeatureNotSupported):
        copy_in(conn, "COPY csvopt FROM STDIN WITH (FORCE_NOT_NULL (a))", b"1\t\t\n")


def test_copy_data_not_utf8_is_22021(conn):
    conn.execute("DROP TABLE IF EXISTS csvbad; CREATE TABLE csvbad (a TEXT)")
    with pytest.raises(pgerr.CharacterNotInRepertoire) as info:
        copy_in(conn, "COPY csvbad FROM STDIN WITH (FORMAT csv)", b"ok\nbad \xff\n")
    assert 'invalid byte sequence for encoding "UTF8": 0xff' in str(info.value)
    assert conn.execute("SELECT count(*) FROM csvbad").fetchone() == (0,)


def _big_csv(rows: int, bad_at: int | None = None) -> bytes:
    """A CSV import of several of the edge's COPY batches (copy.BATCH_BYTES), with a header and
    quoted fields that hold newlines and quotes, so batch boundaries fall near quoted text."""
    out = ["id,note,pad"]
    for i in range(1, rows + 1):
        note = f'"line {i}\nhas ""quotes"", and a newline"' if i % 7 == 0 else f"n{i}"
        out.append(f"{'oops' if i == bad_at else i},{note},{'x' * 40}")
    return ("\n".join(out) + "\n").encode()


def test_a_big_copy_streams_in_batches_and_stays_atomic(stack, conn):
    conn.execute("DROP TABLE IF EXISTS bigcp; CREATE TABLE bigcp (id INTEGER PRIMARY KEY, note TEXT, pad TEXT)")
    rows = 200_000  # about 14 MB of input: four batches
    sql = "COPY bigcp FROM STDIN WITH (FORMAT csv, HEADER)"
    assert copy_in(conn, sql, _big_csv(rows)) == f"COPY {rows}"
    assert conn.execute("SELECT count(*), sum(id) FROM bigcp").fetchone() == (rows, rows * (rows + 1) // 2)
    assert conn.execute("SELECT note FROM bigcp WHERE id = 199997").fetchone() == (
        'line 199997\nhas "quotes", and a newline',)
    logs = (stack.log_dir / "edge.log").read_text()
    assert "copy progress" in logs and "rows=200000" in logs
    # a bad row in the last batch: nothing of the earlier batches stays
    conn.execute("DELETE FROM bigcp")
    with pytest.raises(pgerr.DatatypeMismatch, match="COPY line 199995"):  # 'oops' in an INTEGER PRIMARY KEY
        copy_in(conn, sql, _big_csv(rows, bad_at=rows - 5))
    assert conn.execute("SELECT count(*) FROM bigcp").fetchone() == (0,)
    # inside the client's transaction the batches are that transaction's: ROLLBACK takes them all
    conn.autocommit = False
    copy_in(conn, sql, _big_csv(rows))
    assert conn.execute("SELECT count(*) FROM bigcp").fetchone() == (rows,)
    conn.rollback()
    conn.autocommit = True
    assert conn.execute("SELECT count(*) FROM bigcp").fetchone() == (0,)
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the session serves on


def test_pg_stat_progress_copy_shows_a_running_import(stack, conn):
    import time
    conn.execute("DROP TABLE IF EXISTS progcp; CREATE TABLE progcp (id INTEGER PRIMARY KEY, note TEXT, pad TEXT)")
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    data = _big_csv(100_000)
    with psycopg.connect(stack.dsn, autocommit=True) as watcher, conn.cursor() as cur:
        with cur.copy("COPY progcp FROM STDIN WITH (FORMAT csv, HEADER)") as cp:
            cp.write(data[: len(data) * 3 // 4])  # more than one batch: some rows are in already
            seen = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                seen = watcher.execute("SELECT pid, datname, command, type, bytes_processed, tuples_processed "
                                       "FROM pg_stat_progress_copy").fetchall()
                if seen and seen[0][5]:
                    break
                time.sleep(0.1)
            assert seen and seen[0][:4] == (pid, "main", "COPY FROM", "PIPE"), seen
            assert isinstance(pid, int)  # int4, as PostgreSQL types pg_backend_pid()
            assert seen[0][4] > 4 << 20 and seen[0][5] > 0, seen
            cp.write(data[len(data) * 3 // 4:])
        assert cur.statusmessage == "COPY 100000"
        assert watcher.execute("SELECT count(*) FROM pg_stat_progress_copy").fetchone() == (0,)
