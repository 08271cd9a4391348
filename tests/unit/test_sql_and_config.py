"""Statement splitting, classification, configuration, error tables, module boundaries."""
from __future__ import annotations

import ast
from pathlib import Path

import grpc
import pytest

from sqld.common import errors, sqlstate, statement
from sqld.common.sqltext import is_empty, leading_words, split
from sqld.scheduler import config as scheduler_config
from sqld.scheduler.session import expand
from sqld.storage import config as storage_config
from sqld.storage.sqlite.errors import sqlstate_for, to_error
from sqld.v1 import common_pb2

SERVICES = Path(__file__).resolve().parents[2] / "services" / "sqld"


@pytest.mark.parametrize("sql, parts", [
    ("select 1; select 2", ["select 1;", "select 2"]),
    ("select ';' ; select 2;", ["select ';' ;", "select 2;"]),
    ("select 1 -- ; no\n; select 2", ["select 1 -- ; no\n;", "select 2"]),
    ("/* ; */ select 1;", ["/* ; */ select 1;"]),
    ("create trigger tr after insert on t begin select 1; select 2; end; select 3",
     ["create trigger tr after insert on t begin select 1; select 2; end;", "select 3"]),
    (";;  ;", []),
    ("select \"a;b\" from t", ["select \"a;b\" from t"]),
])
def test_split(sql, parts):
    assert split(sql) == parts


def test_empty_and_leading_words():
    assert is_empty(" -- x\n ; /* y */ ;")
    assert not is_empty("select 1")
    assert leading_words("/* c */ create  temp\ttable x", 3) == ["CREATE", "TEMP", "TABLE"]


@pytest.mark.parametrize("sql, kind", [
    ("SELECT 1", statement.READ), ("values (1)", statement.READ), ("EXPLAIN QUERY PLAN select 1", statement.READ),
    ("WITH x AS (SELECT 1) SELECT * FROM x", statement.READ),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", statement.WRITE),
    ("insert into t values (1)", statement.WRITE), ("PRAGMA user_version", statement.WRITE),
    ("create table t (a)", statement.WRITE),
    ("BEGIN", statement.BEGIN), ("begin immediate", statement.BEGIN), ("START TRANSACTION", statement.BEGIN),
    ("BEGIN READ ONLY", statement.BEGIN_READ_ONLY),
    ("start transaction isolation level serializable, read  only", statement.BEGIN_READ_ONLY),
    ("COMMIT", statement.COMMIT), ("end transaction", statement.COMMIT),
    ("ROLLBACK", statement.ROLLBACK), ("rollback to savepoint a", statement.ROLLBACK_TO),
    ("ROLLBACK TRANSACTION TO a", statement.ROLLBACK_TO),
    ("SAVEPOINT a", statement.SAVEPOINT), ("release a", statement.SAVEPOINT),
])
def test_classify(sql, kind):
    """How the scheduler orders each statement (common.statement, the one classifier)."""
    assert statement.classify(sql).kind == kind
    assert statement.kind_of(common_pb2.Statement(sql=sql)) == kind
    assert statement.kind_of(common_pb2.Statement(sql=sql, kind=statement.WRITE)) == statement.WRITE  # set: trusted


def test_expand_splits_a_script_and_classifies_the_pieces():
    pieces = expand([common_pb2.Statement(sql="BEGIN; insert into t values (1); select 1"),
                     common_pb2.Statement(sql="select 2", kind=statement.READ)])
    assert isinstance(pieces, list)
    assert [(p.sql, p.kind) for p in pieces] == [
        ("BEGIN;", statement.BEGIN), ("insert into t values (1);", statement.WRITE), ("select 1", statement.READ),
        ("select 2", statement.READ)]
    err = expand([common_pb2.Statement(sql="select $1; select 2", params=[common_pb2.Value(integer=1)])])
    assert isinstance(err, common_pb2.StatementError) and err.sqlstate == sqlstate.SYNTAX_ERROR


def test_config_flag_beats_env_beats_default():
    cfg = scheduler_config.load([], {})
    assert cfg.idle_in_transaction_timeout == 60.0
    cfg = scheduler_config.load([], {"SQLD_SCHEDULER_IDLE_IN_TRANSACTION_TIMEOUT": "5"})
    assert cfg.idle_in_transaction_timeout == 5.0
    cfg = scheduler_config.load(["--idle-in-transaction-timeout", "7"],
                                {"SQLD_SCHEDULER_IDLE_IN_TRANSACTION_TIMEOUT": "5"})
    assert cfg.idle_in_transaction_timeout == 7.0
    with pytest.raises(SystemExit):
        scheduler_config.load(["--max-sessions", "many"], {})
    assert storage_config.load(["--databases", "a, b,"], {}).databases == ("a", "b")


@pytest.mark.parametrize("code, message, state", [
    (2067, "UNIQUE constraint failed: t.a", "23505"),
    (1555, "UNIQUE constraint failed: t.id", "23505"),
    (1299, "NOT NULL constraint failed: t.a", "23502"),
    (787, "FOREIGN KEY constraint failed", "23503"),
    (275, "CHECK constraint failed: a > 0", "23514"),
    (1, 'near "selec": syntax error', "42601"),
    (1, "incomplete input", "42601"),
    (1, "no such table: x", "42P01"),
    (1, "no such column: x", "42703"),
    (1, "table x already exists", "42P07"),
    (1, "no such function: f", "42883"),
    (1, "something SQLite says", "42000"),
    (517, "database is locked", "40001"),
    (9, "interrupted", "57014"),
    (8, "attempt to write a readonly database", "25006"),
    (13, "database or disk is full", "53100"),
    (266, "disk I/O error", "58030"),  # SQLITE_IOERR_READ: falls back to the primary code
])
def test_sqlite_error_table(code, message, state):
    assert sqlstate_for(code, message) == state


def test_grpc_status_table_covers_every_code():
    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        assert code in errors.BY_STATUS, code
    assert errors.sqlstate_for_status(grpc.StatusCode.NOT_FOUND) == "3D000"


def test_a_lost_call_says_retry_only_when_nothing_committed():
    certain = errors.lost(grpc.StatusCode.UNAVAILABLE, "storage: stream ended", in_doubt=False)
    assert certain.sqlstate == "57P03" and "did not complete, retry" in certain.message
    doubt = errors.lost(grpc.StatusCode.UNAVAILABLE, "storage: stream ended", in_doubt=True)
    assert doubt.sqlstate == "08007" and "check before retrying" in doubt.message
    assert "retry," not in doubt.message and "did not complete" not in doubt.message


def test_no_service_imports_another_service():
    services = {"edge", "scheduler", "storage", "replication"}
    for svc in services:
        assert (SERVICES / svc).is_dir(), svc
        for path in (SERVICES / svc).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    parts = name.split(".")
                    top = parts[1] if parts[0] == "sqld" and len(parts) > 1 else ""
                    assert top not in services - {svc}, f"{path} imports {name}"


def test_an_interrupt_raised_between_result_parts_is_57014():
    """The storage backend raises its own InterruptError between parts of a streamed result
    (it carries no SQLite code); it must read as a cancel, not as a generic 42000."""
    import apsw
    err = to_error(apsw.InterruptError("interrupted"))
    assert (err.sqlstate, err.sqlite_code) == ("57014", 9)
