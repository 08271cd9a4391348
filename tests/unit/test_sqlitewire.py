"""The edge's SQLite wire extensions (edge/sqlitewire.py): off unless a connection asks, and their bytes."""
from __future__ import annotations

import contextvars
import json

import pytest

from sqld.common.statement import classify
from sqld.edge import colnames, render, sqlitewire, tags, types
from sqld.edge.pgwire import messages as m
from sqld.v1 import common_pb2 as pb


def in_wire(fn, *args):
    """fn(*args) as a connection that asked for the extensions runs it."""
    ctx = contextvars.copy_context()
    ctx.run(sqlitewire.ACTIVE.set, sqlitewire.Wire())
    return ctx.run(fn, *args)


@pytest.mark.parametrize("params, wanted", [
    ({}, False),
    ({"options": "-c sqld.sqlite_wire=on"}, True),
    ({"options": "-csqld.sqlite_wire=on -c sqld.read_at=5"}, True),
    ({"options": "--sqld.sqlite_wire=true"}, True),
    ({"sqld.sqlite_wire": "on"}, True),
    ({"options": "-c sqld.sqlite_wire=off"}, False),
    ({"options": "-c sqld.sqlite_wire_x=on"}, False),
])
def test_asked_for_at_startup(params, wanted):
    assert sqlitewire.wanted(params) is wanted


def test_a_bad_value_is_refused():
    with pytest.raises(ValueError, match="use on or off"):
        sqlitewire.wanted({"options": "-c sqld.sqlite_wire=maybe"})


@pytest.mark.parametrize("value, encoded", [
    (pb.Value(integer=-2**63), b"i-9223372036854775808"),
    (pb.Value(real=0.1), b"r0.1"),
    (pb.Value(real=float("-inf")), b"r-inf"),
    (pb.Value(real=-0.0), b"r-0.0"),
    (pb.Value(text="é\x00"), "té\x00".encode()),
    (pb.Value(blob=b"\x00\xff"), b"b\x00\xff"),
    (pb.Value(null=True), None),
])
def test_values_carry_their_storage_class(value, encoded):
    assert sqlitewire.value(value) == encoded


def test_insert_tag_carries_the_rowid_only_when_asked():
    rs = pb.ResultSet(rows_affected=1, last_insert_rowid=42)
    assert tags.command_tag(classify("INSERT INTO t VALUES (1)"), rs) == "INSERT 0 1"
    assert in_wire(tags.command_tag, classify("INSERT INTO t VALUES (1)"), rs) == "INSERT 42 1"
    assert in_wire(tags.command_tag, classify("REPLACE INTO t VALUES (1)"), rs) == "INSERT 42 1"


def test_error_fields_only_when_asked():
    err = pb.StatementError(sqlite_code=1555, sqlstate="23505", message="UNIQUE constraint failed: t.id")
    assert render.error(err) == m.error_response("23505", "UNIQUE constraint failed: t.id")
    wired = in_wire(render.error, err)
    assert b"x1555\x00ySQLITE_CONSTRAINT_PRIMARYKEY\x00\x00" in wired
    not_sqlite = pb.StatementError(sqlstate="25006", message="read only")
    assert in_wire(render.error, not_sqlite) == m.error_response("25006", "read only")


def test_columns_keep_sqlite_names_and_get_the_value_oid():
    cols = [pb.Column(name="count(*)"), pb.Column(name="a", decltype="INTEGER")]
    rs = pb.ResultSet(columns=cols, rows=[pb.Row(values=[pb.Value(integer=1), pb.Value(text="x")])])
    renamed = list(cols)
    colnames.apply(["count", None], renamed)
    assert renamed[0].name == "count"

    def wired():
        kept = [pb.Column(name="count(*)"), pb.Column(name="a")]
        colnames.apply(["count", None], kept)
        return kept[0].name, render.result_oids(rs)
    assert in_wire(wired) == ("count(*)", [sqlitewire.VALUE_OID] * 2)
    assert render.result_oids(rs) == [types.INT8, types.TEXT]


def test_total_changes_told_when_they_change():
    wire = sqlitewire.Wire()
    assert sqlitewire.changes_status(wire) == b""
    wire.total_changes = 3
    assert sqlitewire.changes_status(wire) == m.parameter_status(sqlitewire.TOTAL_CHANGES, "3")
    assert sqlitewire.changes_status(wire) == b""


def test_decltypes_are_sent_before_a_row_description_when_they_change():
    cols = [pb.Column(name="a", decltype="point"), pb.Column(name="b")]
    status = m.parameter_status(sqlitewire.DECLTYPES, json.dumps(["point", None]))

    def twice():
        first = render.row_description(["a", "b"], [1, 1], [0, 0], cols)
        return first, render.row_description(["a", "b"], [1, 1], [0, 0], cols)
    first, second = in_wire(twice)
    assert first.startswith(status)
    assert not second.startswith(b"S")
    assert not render.row_description(["a", "b"], [1, 1], [0, 0], cols).startswith(b"S")


def test_sql_runs_as_written_in_a_wire_session():
    from sqld.edge import sqlrewrite
    sql = "SELECT ?, :a, $1 AS x, '::' FROM t WHERE c ~ 'a'"
    assert sqlrewrite.rewrite(sql).sql != sql  # PostgreSQL's $1 becomes ?1 elsewhere
    wired = in_wire(sqlrewrite.rewrite, sql, 3)
    assert (wired.sql, wired.param_count, wired.column_names) == (sql, 3, [])
