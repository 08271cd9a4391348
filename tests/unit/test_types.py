"""SQLite values as PostgreSQL types: OIDs and text output."""
from __future__ import annotations

import pytest

from sqld.common.statement import classify
from sqld.edge import tags, types
from sqld.v1 import common_pb2 as pb


def V(**kw) -> pb.Value:
    return pb.Value(**kw)


@pytest.mark.parametrize("x, text", [
    (1.0, "1"), (100.0, "100"), (1e15, "1e+15"), (1e14, "100000000000000"), (1.5e-05, "1.5e-05"),
    (0.1 + 0.2, "0.30000000000000004"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity"),
    (float("nan"), "NaN"), (-0.0, "-0"), (0.0, "0"), (0.0001, "0.0001"), (-123.456, "-123.456"),
    (1e100, "1e+100"), (2.5e-300, "2.5e-300"), (123456789012345.6, "123456789012345.6"),
])
def test_float8_text_matches_postgres(x, text):
    assert types.format_float8(x) == text


@pytest.mark.parametrize("decl, values, oid", [
    ("INTEGER", [V(integer=1)], types.INT8),
    ("BIGINT", [V(null=True)], types.INT8),
    ("VARCHAR(20)", [V(text="a")], types.TEXT),
    ("REAL", [V(real=1.5), V(integer=2)], types.FLOAT8),
    ("DOUBLE PRECISION", [], types.FLOAT8),
    ("BLOB", [V(blob=b"x")], types.BYTEA),
    ("NUMERIC(10,2)", [V(real=1.5)], types.NUMERIC),
    ("BOOLEAN", [V(integer=1), V(integer=0)], types.BOOL),
    ("BOOLEAN", [V(integer=5)], types.INT8),
    ("", [V(real=1.0)], types.FLOAT8),
    ("", [V(integer=1), V(real=1.5)], types.FLOAT8),
    ("", [V(null=True)], types.TEXT),
    ("INTEGER", [V(text="not a number")], types.TEXT),  # values contradict the declaration
    ("DATE", [V(text="2024-01-01")], types.TEXT),
    ("", [V(text="a"), V(integer=1)], types.TEXT),
])
def test_column_oid(decl, values, oid):
    assert types.column_oid(decl, values) == oid


@pytest.mark.parametrize("value, oid, text", [
    (V(null=True), types.TEXT, None),
    (V(integer=-7), types.INT8, b"-7"),
    (V(integer=1), types.BOOL, b"t"),
    (V(integer=3), types.FLOAT8, b"3"),
    (V(real=12.25), types.NUMERIC, b"12.25"),
    (V(real=1e20), types.NUMERIC, b"100000000000000000000"),
    (V(text="héllo"), types.TEXT, "héllo".encode()),
    (V(blob=b"\x00\xab"), types.BYTEA, b"\\x00ab"),
])
def test_to_text(value, oid, text):
    assert types.to_text(value, oid) == text


@pytest.mark.parametrize("sql, rows_affected, nrows, tag", [
    ("INSERT INTO t VALUES (1)", 1, 0, "INSERT 0 1"),
    ("replace into t values (1)", 1, 0, "INSERT 0 1"),
    ("UPDATE t SET a = 1", 3, 0, "UPDATE 3"),
    ("  -- c\n delete from t", 2, 0, "DELETE 2"),
    ("SELECT 1", 0, 1, "SELECT 1"),
    ("WITH x AS (SELECT 1) SELECT * FROM x", 0, 1, "SELECT 1"),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", 1, 0, "INSERT 0 1"),
    ("CREATE TABLE t (a)", 0, 0, "CREATE TABLE"),
    ("CREATE UNIQUE INDEX i ON t(a)", 0, 0, "CREATE INDEX"),
    ("CREATE TEMP TABLE t (a)", 0, 0, "CREATE TABLE"),
    ("DROP TABLE IF EXISTS t", 0, 0, "DROP TABLE"),
    ("ALTER TABLE t ADD b", 0, 0, "ALTER TABLE"),
    ("BEGIN", 0, 0, "BEGIN"), ("END", 0, 0, "COMMIT"), ("ROLLBACK", 0, 0, "ROLLBACK"),
    ("VACUUM", 0, 0, "VACUUM"),
])
def test_command_tags(sql, rows_affected, nrows, tag):
    rs = pb.ResultSet(rows_affected=rows_affected, rows=[pb.Row() for _ in range(nrows)])
    if nrows:
        rs.columns.add(name="x")
    assert tags.command_tag(classify(sql), rs) == tag


def test_commit_of_failed_transaction_is_tagged_rollback():
    assert tags.command_tag(classify("COMMIT"), pb.ResultSet(), was_failed=True) == "ROLLBACK"
