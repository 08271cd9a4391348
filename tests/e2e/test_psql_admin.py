"""What a PostgreSQL operator types: psql's `+` commands against what PostgreSQL 15 prints for the
same schema, pg_dump into a new database of ours with the same dbhash, and PostgreSQL's everyday
functions (now(), current_user, pg_is_in_recovery() ...)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid

import psycopg
import pytest

from tests.e2e.test_databases import psql, sqlite_only
from tests.e2e.test_replication import DBHASH, dbhash
from tests.fixtures.ports import free_port

PG_DUMP = shutil.which("pg_dump")

# Valid in PostgreSQL and in SQLite, so both can show it.
SCHEMA = """
CREATE TABLE adm_t (id integer PRIMARY KEY, name varchar(20) NOT NULL, created timestamp, doc json, score real,
                    n bigint DEFAULT 0, price numeric(10,2), ok boolean);
CREATE INDEX adm_t_name_idx ON adm_t (name);
CREATE TABLE adm_c (id integer PRIMARY KEY, t_id integer REFERENCES adm_t(id), code text UNIQUE);
CREATE VIEW adm_v AS SELECT id, name FROM adm_t;
INSERT INTO adm_t VALUES (1, 'a', '2024-01-01 00:00:00', '{"a":1}', 1.5, 10, 3.25, true);
"""
COMMANDS = [r"\du", r"\dt+ adm_*", r"\d+ adm_t", r"\d adm_c", r"\df", r"\dv adm_*", r"\di+ adm_*", r"\dn+"]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL 15 (bench/postgres.py) with SCHEMA in its database `main`."""
    from bench.postgres import BIN, Postgres
    if not os.path.exists(os.path.join(BIN, "initdb")):
        pytest.skip("PostgreSQL 15 server binaries are not installed")
    pg = Postgres(free_port())
    try:
        pg.start()
        pg.psql(SCHEMA, dbname="main")
        yield pg
    finally:
        pg.stop()


def _sizes(text: str) -> str:
    """Sizes differ by nature (PostgreSQL's 8 kB pages and free-space maps, SQLite's 4 KiB pages)."""
    return re.sub(r"\d+ (bytes|kB|MB)", "<size>", text)


def _widths(text: str) -> str:
    return re.sub(r"[ -]+", " ", text)


@sqlite_only
def test_psql_plus_commands_print_what_postgresql_prints(stack, postgres):
    out = psql(stack, "-v", "ON_ERROR_STOP=1", input_text=SCHEMA)
    assert out.returncode == 0, out.stderr
    try:
        for command in COMMANDS:
            ours = psql(stack, "-c", command)
            assert ours.returncode == 0 and not ours.stderr, (command, ours.stderr)
            theirs = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres",
                                     "-c", command, "main"], capture_output=True, text=True, timeout=60)
            assert theirs.returncode == 0, theirs.stderr
            assert _widths(_sizes(ours.stdout)) == _widths(_sizes(theirs.stdout)), command
        # the column types as declared, as PostgreSQL prints them
        d = psql(stack, "-c", r"\d adm_t").stdout
        assert re.search(r"id +\| integer +\|", d) and re.search(r"created +\| timestamp without time zone", d)
        assert re.search(r"doc +\| json +\|", d) and re.search(r"price +\| numeric\(10,2\)", d)
        # real sizes, and \x auto and \l+ run
        assert re.search(r"adm_t +\| table +\| postgres +\| permanent +\| heap +\| 4096 bytes",
                         psql(stack, "-c", r"\dt+ adm_t").stdout)
        assert psql(stack, "-c", r"\x auto", "-c", "SELECT * FROM adm_t").returncode == 0
        listing = psql(stack, "-c", r"\l+")
        assert listing.returncode == 0 and re.search(r"^ main +\| postgres +\| UTF8 .*\| \d+ (bytes|kB|MB|GB) +\| pg_default",
                                                     listing.stdout, re.M), listing.stdout
    finally:
        psql(stack, "-c", "DROP VIEW adm_v", "-c", "DROP TABLE adm_c", "-c", "DROP TABLE adm_t")


# SQLite's own schema: what pg_dump must carry back byte for byte.
SOURCE = r"""
CREATE TABLE parent (id integer PRIMARY KEY, name varchar(20) NOT NULL, created timestamp, doc json, score real,
                     n bigint DEFAULT 0, price numeric(10,2), ok boolean);
CREATE TABLE child (id INTEGER PRIMARY KEY AUTOINCREMENT, parent_id integer REFERENCES parent(id) ON DELETE CASCADE,
  raw BLOB, note TEXT CHECK (length(note) < 100), "Odd Name" text, any_col, ts TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE UNIQUE INDEX child_note ON child (note) WHERE note IS NOT NULL;
CREATE INDEX parent_name_desc ON parent (name DESC, n);
CREATE VIEW parent_names AS SELECT id, upper(name) AS shout FROM parent;
INSERT INTO parent VALUES (1, 'a', '2024-01-01 00:00:00', '{"a":1}', 1.5, 10, 3.25, true),
                          (2, 'b', NULL, NULL, NULL, 2, NULL, false);
INSERT INTO child (parent_id, raw, note, "Odd Name", any_col) VALUES
  (1, x'00ff10', 'it''s a "test" \ with
newline and	tab', 'o', 42), (2, NULL, NULL, NULL, 'txt'), (1, x'', 'e', NULL, 1.5), (NULL, NULL, 'f', NULL, NULL);
"""
TRIGGER = ("DO LANGUAGE sqlite $sqlite$CREATE TRIGGER child_touch AFTER UPDATE ON child BEGIN "
           "UPDATE child SET ts = 'changed' WHERE id = new.id; END$sqlite$")


def _hash(path, *flags: str) -> str:
    out = subprocess.run([str(DBHASH), *flags, str(path)], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.split()[0]


@sqlite_only
@pytest.mark.parametrize("flags", [[], ["--schema-only"]], ids=["full", "schema-only"])
def test_pg_dump_into_a_new_database_gives_the_same_dbhash(stack, flags):
    assert PG_DUMP, "pg_dump is not installed: apt-get install postgresql-client"
    src, dst = f"dump_src_{uuid.uuid4().hex[:6]}", f"dump_dst_{uuid.uuid4().hex[:6]}"
    assert psql(stack, "-c", f"CREATE DATABASE {src}").returncode == 0
    assert psql(stack, "-c", f"CREATE DATABASE {dst}").returncode == 0
    loaded = psql(stack, "-v", "ON_ERROR_STOP=1", "-c", SOURCE, "-c", TRIGGER, database=src)
    assert loaded.returncode == 0, loaded.stderr
    dump = subprocess.run([PG_DUMP, "-h", "127.0.0.1", "-p", str(stack.ports.pg), "-U", "postgres", *flags, src],
                          capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr
    assert "WITH (sqlite_ddl='CREATE TABLE parent (id integer PRIMARY KEY" in dump.stdout
    # restored as PostgreSQL's documentation advises, in one transaction (foreign keys are checked at COMMIT)
    restored = psql(stack, "-1", "-v", "ON_ERROR_STOP=1", "-f", "-", database=dst, input_text=dump.stdout)
    assert restored.returncode == 0, restored.stderr
    # the whole content and SQLite's schema text, byte for byte
    if flags:
        assert _hash(stack.data_dir / f"{dst}.db", "--schema-only") == _hash(stack.data_dir / f"{src}.db", "--schema-only")
        assert psql(stack, "-At", "-c", "SELECT count(*) FROM parent", database=dst).stdout.strip() == "0"
    else:
        assert dbhash(stack.data_dir / f"{dst}.db") == dbhash(stack.data_dir / f"{src}.db")
        # and the trigger came back as a trigger
        out = psql(stack, "-At", "-c", "UPDATE child SET note = 'g' WHERE id = 4", "-c",
                   "SELECT ts FROM child WHERE id = 4", database=dst)
        assert out.returncode == 0 and out.stdout.split()[-1] == "changed", out.stdout


def test_postgresql_functions_per_session(stack):
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT current_user, session_user, current_role, current_database(), current_schema(), "
                           "current_schema, pg_backend_pid(), pg_is_in_recovery(), version(), "
                           "pg_postmaster_start_time() <= now()").fetchone()
        assert row[:6] == ("postgres", "postgres", "postgres", "main", "public", "public")
        assert row[6] == conn.info.backend_pid
        assert row[7] is False
        assert row[8].startswith("PostgreSQL 15") and row[9] in (1, True)
        # now() is the transaction's start: the same for every statement of a transaction
        with conn.transaction():
            first = conn.execute("SELECT now()").fetchone()[0]
            conn.execute("SELECT 1 FROM (SELECT 1) WHERE 0")
            again, stmt = conn.execute("SELECT now(), statement_timestamp()").fetchone()
        assert first == again and stmt > first
        later = conn.execute("SELECT transaction_timestamp()").fetchone()[0]
        assert later > first
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00$", later)
        # gen_random_uuid(): a version 4 UUID per row; clock_timestamp() moves
        uuids = [r[0] for r in conn.execute("SELECT gen_random_uuid() FROM (VALUES (1), (2), (3))")]
        assert len(set(uuids)) == 3
        assert all(re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", u) for u in uuids)
        # the value is the session's: a string that spells a function is left alone
        assert conn.execute("SELECT 'now()', 'current_user'").fetchone() == ("now()", "current_user")
    with psycopg.connect(stack.dsn.replace("dbname=main", "dbname=postgres"), autocommit=True) as other:
        assert other.execute("SELECT current_database(), pg_catalog.current_database()").fetchone() == \
            ("postgres", "postgres")
