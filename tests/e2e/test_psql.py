"""The real psql binary against the edge."""
from __future__ import annotations

import shutil
import subprocess

import pytest

PSQL = shutil.which("psql")


def psql(stack, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess:
    assert PSQL, "psql is not installed: apt-get install postgresql-client"
    return subprocess.run(
        [PSQL, "-h", "127.0.0.1", "-p", str(stack.ports.pg), "-U", "postgres", "-X", "-v", "VERBOSITY=verbose",
         *args, "main"],
        input=input_text, capture_output=True, text=True, timeout=60)


def test_psql_crud_and_errors(stack):
    script = """
DROP TABLE IF EXISTS ps;
CREATE TABLE ps (id INTEGER PRIMARY KEY, name TEXT NOT NULL, v REAL);
INSERT INTO ps VALUES (1, 'one', 1.0), (2, 'two', 2.5);
INSERT INTO ps VALUES (1, 'dup', 0);
UPDATE ps SET v = v + 1 WHERE id = 2;
INSERT INTO ps VALUES (3, NULL, 0);
DELETE FROM ps WHERE id = 1;
SELECT * FROM nowhere;
SELECT id, name, v FROM ps ORDER BY id;
SELECT 1 AS a; SELECT 2 AS a;
"""
    out = psql(stack, "-A", "-F", "|", input_text=script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "DROP TABLE", "CREATE TABLE", "INSERT 0 2", "UPDATE 1", "DELETE 1",
        "id|name|v", "2|two|3.5", "(1 row)",
        "a", "1", "(1 row)",  # psql 15 shows every result of a multi-statement query
        "a", "2", "(1 row)",
    ]
    err = out.stderr
    assert "ERROR:  23505:" in err
    assert "ERROR:  23502:" in err
    assert "ERROR:  42P01:" in err


def test_psql_c_and_on_error_stop(stack):
    out = psql(stack, "-c", "SELECT 'hello' AS greeting, 2 * 21 AS answer, x'cafe' AS b")
    assert out.returncode == 0, out.stderr
    lines = [line.strip() for line in out.stdout.splitlines()]
    assert lines[0].replace(" ", "") == "greeting|answer|b"
    assert lines[2].replace(" ", "") == "hello|42|\\xcafe"
    bad = psql(stack, "-v", "ON_ERROR_STOP=1", "-c", "SELEC 1")
    assert bad.returncode == 1 and "42601" in bad.stderr


def test_psql_transaction_block(stack):
    script = """
DROP TABLE IF EXISTS pt;
CREATE TABLE pt (a INTEGER);
BEGIN;
INSERT INTO pt VALUES (1);
SELECT oops;
INSERT INTO pt VALUES (2);
ROLLBACK;
SELECT count(*) FROM pt;
"""
    out = psql(stack, "-A", "-t", input_text=script)
    assert out.returncode == 0, out.stderr
    assert "25P02" in out.stderr  # the INSERT after the error was refused
    assert out.stdout.splitlines()[-1] == "0"


@pytest.mark.parametrize("dbname, sqlstate", [("nosuchdb", "3D000")])
def test_psql_unknown_database_is_refused(stack, dbname, sqlstate):
    out = subprocess.run([PSQL, "-h", "127.0.0.1", "-p", str(stack.ports.pg), "-U", "postgres", "-X",
                          "-c", "select 1", dbname], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert f'database "{dbname}" does not exist' in out.stderr


def test_psql_column_headers_are_postgres_names(stack):
    out = psql(stack, "-A", "-F", "|", "-c", "SELECT 1, 2 + 3, count(*), lower('A'), 1::int, 'x' AS named")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == ["?column?|?column?|count|lower|int4|named", "1|5|1|a|1|x"]
    gset = psql(stack, "-A", "-t", input_text="SELECT max(3, 4), count(*) \\gset\n\\echo :max :count\n")
    assert gset.returncode == 0, gset.stderr
    assert gset.stdout.strip() == "4 1"
