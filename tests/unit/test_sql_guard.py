"""The SQL guard's decisions, on a real storage connection (storage.sqlite.backend) over a
temporary file: what is refused (42501 with the reason, nothing changed), what passes, and
when the connection reports session state."""
from __future__ import annotations

import os

import apsw
import pytest

from sqld.common.values import to_python
from sqld.storage.sqlite import guard
from sqld.storage.sqlite.backend import Database
from sqld.storage.sqlite.errors import to_error
from sqld.v1 import common_pb2


@pytest.fixture
def conn(tmp_path):
    db = Database("main", str(tmp_path / "main.db"))
    c = db.connect()
    run(c, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    yield c
    c.close()


def run(c, sql: str) -> common_pb2.StatementResult:
    return c.execute([common_pb2.Statement(sql=sql)], read_only=False)[0]


def value(c, sql: str):
    res = run(c, sql)
    assert not res.HasField("error"), res.error
    return to_python(res.ok.rows[0].values[0]) if res.ok.rows else None


REFUSED = [
    ("PRAGMA wal_autocheckpoint=0", "PRAGMA wal_autocheckpoint is managed by the server"),
    ("PRAGMA wal_checkpoint", "checkpoints are managed by the server"),
    ("PRAGMA wal_checkpoint(TRUNCATE)", "checkpoints are managed by the server"),
    ("PRAGMA writable_schema=ON", "PRAGMA writable_schema is not allowed"),
    ("PRAGMA writable_schema", "PRAGMA writable_schema is not allowed"),
    ("PRAGMA synchronous=OFF", "PRAGMA synchronous is managed by the server"),
    ("PRAGMA journal_mode=DELETE", "PRAGMA journal_mode is managed by the server"),
    ("PRAGMA schema_version=1", "PRAGMA schema_version is managed by the server"),
    ("PRAGMA page_size=1024", "PRAGMA page_size is managed by the server"),
    ("PRAGMA incremental_vacuum", "use VACUUM"),
    ("PRAGMA temp_store_directory='/tmp'", "files are managed by the server"),
    ("PRAGMA no_such_pragma", "not on this server's list"),
    ("ATTACH 'x.db' AS x", guard.ATTACH_REFUSED),
    ("ATTACH '' AS x", guard.ATTACH_REFUSED),
    ("DETACH DATABASE x", guard.DETACH_REFUSED),
    ("VACUUM INTO 'copy.db'", guard.VACUUM_INTO_REFUSED),
    ("SELECT load_extension('x')", "function load_extension() is not allowed"),
    ("SELECT fts3_tokenizer('simple')", "function fts3_tokenizer() is not allowed"),
    ("CREATE VIRTUAL TABLE d USING dbstat", "virtual table module dbstat is not allowed"),
    ("UPDATE sqlite_schema SET sql = 'x' WHERE name = 't'", "may not be modified"),
    ("DELETE FROM sqlite_master", "may not be modified"),
]


@pytest.mark.parametrize("sql,why", REFUSED)
def test_refused_with_42501_and_the_reason(conn, tmp_path, monkeypatch, sql, why):
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    res = run(conn, sql)
    assert res.error.sqlstate == "42501", res.error
    assert why in res.error.message
    assert sorted(os.listdir(tmp_path)) == before  # no file written
    assert value(conn, "PRAGMA synchronous") == 2
    assert value(conn, "PRAGMA wal_autocheckpoint") == 1000  # SQLite's default; no capturer here
    assert value(conn, "PRAGMA integrity_check") == "ok"
    assert not conn.session_state


ALLOWED = [
    "PRAGMA table_info(t)", "PRAGMA table_xinfo(t)", "PRAGMA table_list", "PRAGMA index_list(t)",
    "PRAGMA foreign_key_list(t)", "PRAGMA foreign_key_check", "PRAGMA database_list",
    "PRAGMA collation_list", "PRAGMA function_list", "PRAGMA module_list", "PRAGMA pragma_list",
    "PRAGMA compile_options", "PRAGMA integrity_check", "PRAGMA quick_check(t)", "PRAGMA page_count",
    "PRAGMA page_size", "PRAGMA freelist_count", "PRAGMA encoding", "PRAGMA user_version",
    "PRAGMA application_id", "PRAGMA schema_version", "PRAGMA data_version", "PRAGMA journal_mode",
    "PRAGMA foreign_keys", "PRAGMA synchronous", "PRAGMA user_version=3", "PRAGMA application_id=9",
    "SELECT * FROM pragma_table_info('t')", "VACUUM", "ANALYZE", "REINDEX", "PRAGMA optimize",
    "CREATE INDEX t_v ON t (v)", "CREATE VIEW tv AS SELECT v FROM t WHERE v REGEXP 'a'",
    "CREATE TRIGGER tt AFTER INSERT ON t BEGIN UPDATE t SET v = v WHERE id = new.id; END",
    "ALTER TABLE t ADD COLUMN w INTEGER", "CREATE TABLE c (x TEXT CHECK (x REGEXP '^a'))",
    "CREATE VIRTUAL TABLE f USING fts5(body)", "CREATE VIRTUAL TABLE r USING rtree(id, a, b)",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT * FROM n",
    "INSERT INTO t (v) VALUES ('a')", "DELETE FROM t",
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_allowed(conn, sql):
    res = run(conn, sql)
    assert not res.HasField("error"), res.error
    assert not conn.session_state


@pytest.mark.parametrize("sql", [
    "PRAGMA foreign_keys=OFF", "PRAGMA recursive_triggers=ON", "PRAGMA reverse_unordered_selects=ON",
    "PRAGMA query_only=1", "PRAGMA case_sensitive_like=ON", "CREATE TEMP TABLE s (x)",
    "CREATE TEMP VIEW sv AS SELECT 1", "CREATE TEMP TRIGGER st AFTER INSERT ON t BEGIN SELECT 1; END",
])
def test_session_state_is_reported_and_cleared(conn, sql):
    assert not run(conn, sql).HasField("error")
    assert conn.session_state
    undo = {"PRAGMA foreign_keys=OFF": "PRAGMA foreign_keys=ON",
            "PRAGMA recursive_triggers=ON": "PRAGMA recursive_triggers=OFF",
            "PRAGMA reverse_unordered_selects=ON": "PRAGMA reverse_unordered_selects=OFF",
            "PRAGMA query_only=1": "PRAGMA query_only=0",
            "PRAGMA case_sensitive_like=ON": "PRAGMA case_sensitive_like=OFF",
            "CREATE TEMP TABLE s (x)": "DROP TABLE s", "CREATE TEMP VIEW sv AS SELECT 1": "DROP VIEW sv",
            "CREATE TEMP TRIGGER st AFTER INSERT ON t BEGIN SELECT 1; END": "DROP TRIGGER st"}[sql]
    assert not run(conn, undo).HasField("error")
    assert not conn.session_state


def test_temp_table_rolled_back_is_no_session_state(conn):
    assert not run(conn, "BEGIN").HasField("error")
    run(conn, "CREATE TEMP TABLE s (x)")
    assert conn.session_state
    run(conn, "ROLLBACK")
    assert not conn.session_state


def test_a_refusal_inside_a_transaction_keeps_the_transaction(conn):
    run(conn, "BEGIN")
    run(conn, "INSERT INTO t (v) VALUES ('kept')")
    assert run(conn, "ATTACH 'x.db' AS x").error.sqlstate == "42501"
    assert conn.in_transaction
    run(conn, "COMMIT")
    assert value(conn, "SELECT count(*) FROM t") == 1


def test_describe_is_guarded_too(conn):
    res = conn.execute([common_pb2.Statement(sql="PRAGMA wal_checkpoint")], read_only=True, describe_only=True)[0]
    assert res.error.sqlstate == "42501" and "checkpoint" in res.error.message


def test_every_action_code_is_decided():
    """The allowlist is explicit: an action SQLite may add later is refused until named."""
    assert guard.decide(apsw.SQLITE_COPY, None, None) is not None
    assert guard.decide(999, None, None) is not None
    assert guard.decide(apsw.SQLITE_ATTACH, "", None, running=True) is None  # plain VACUUM
    assert guard.decide(apsw.SQLITE_ATTACH, "f.db", None, running=True) == guard.VACUUM_INTO_REFUSED


def test_auth_error_maps_to_42501_with_the_reason():
    exc = apsw.AuthError("not authorized")
    err = to_error(exc, "permission denied: because")
    assert (err.sqlstate, err.message, err.sqlite_code) == ("42501", "permission denied: because", 23)
    assert to_error(exc).sqlstate == "42501"


def test_interrupting_a_connection_that_closed_meanwhile_is_a_no_op(tmp_path):
    """Storage's shutdown interrupts every open connection; one may have closed on its worker
    thread a moment before (seen as a traceback at a storage's stop, which failed a test)."""
    c = Database("main", str(tmp_path / "closed.db")).connect()
    c.close()
    c.interrupt()
