"""COPY in the simple query protocol: COPY ... TO STDOUT and COPY ... FROM STDIN over the transport.

The formats are copyformat.py's (no I/O). COPY TO runs its query as one statement and keeps
the rows in a RowStore (memory up to 8 MiB, then a temporary file), then writes CopyData
messages, draining the socket after each thousand rows. COPY FROM reads CopyData until
CopyDone (its own small message loop: PostgreSQL's COPY sub-protocol), then inserts every
row in one implicit-transaction batch, so a COPY is atomic as in PostgreSQL.
"""
from __future__ import annotations

import dataclasses
import re

from sqld.common import sqlstate
from sqld.common.sqlstate import SqlError
from sqld.common.statement import READ, WRITE, classify
from sqld.edge import colnames, copyformat, render, results, types
from sqld.edge.pgwire import codec
from sqld.edge.pgwire import messages as m
from sqld.edge.rowstore import RowStore
from sqld.edge.session import Session
from sqld.edge.sqlrewrite import rewrite
from sqld.edge.transport import Transport
from sqld.v1 import common_pb2


async def run(s: Session, t: Transport, sql: str) -> None:
    """One COPY statement; SqlError when it fails (the caller answers it)."""
    spec = copyformat.parse(sql)
    if spec.direction == "TO":
        await _copy_to(s, t, spec)
    else:
        await _copy_from(s, t, spec)


async def _copy_to(s: Session, t: Transport, spec: copyformat.CopySpec) -> None:
    text = spec.query or f"SELECT {', '.join(spec.columns) or '*'} FROM {spec.table}"
    query = rewrite(text)
    kept = results.Collect(RowStore())  # bounded: memory up to 8 MiB, then a temp file
    try:
        batch = await s.run([common_pb2.Statement(sql=query.sql, kind=classify(text).kind)], implicit=False,
                            on_part=kept.part)
        result = kept.result or batch.results[0]
        if result.HasField("error"):
            raise SqlError.from_proto(result.error)
        if kept.result is None:
            kept.rows.add(result.ok.rows)
        rs = common_pb2.ResultSet(columns=result.ok.columns, rows=kept.rows.sample)
        colnames.apply(query.column_names, rs.columns)
        oids = render.result_oids(rs)
        total = kept.rows.remaining
        t.send(m.copy_out_response(len(rs.columns)))
        header = spec.header
        while kept.rows.remaining or header:
            rows = [[None if (b := types.to_text(v, o)) is None else b.decode() for v, o in zip(r.values, oids)]
                    for r in kept.rows.take(1000)]
            t.send(b"".join(m.copy_data(d) for d in copyformat.format_rows(
                [c.name for c in rs.columns], rows, dataclasses.replace(spec, header=header))))
            header = False
            await t.flush()
    finally:
        kept.rows.close()
    t.send(m.COPY_DONE + m.command_complete(f"COPY {total}"))


async def _copy_from(s: Session, t: Transport, spec: copyformat.CopySpec) -> None:
    if spec.table is None:
        raise SqlError(sqlstate.SYNTAX_ERROR, "COPY FROM needs a table")
    named = [c for c in spec.force_not_null + spec.force_null if c != "*"]
    columns = await _columns(s, spec) if named else []
    decltypes = await _decltypes(s, spec)
    t.send(m.copy_in_response(len(spec.columns)))
    await t.flush()
    chunks: list[bytes] = []
    while True:
        kind, body = await t.read_message()
        if kind == b"d":
            chunks.append(body)
        elif kind == b"c":
            break
        elif kind == b"f":
            raise SqlError(sqlstate.QUERY_CANCELED, f"COPY from stdin failed: {codec.cstring(body)[0]}")
        elif kind in (b"H", b"S"):
            continue
        else:
            raise codec.ProtocolError(f"unexpected message type {kind!r} during COPY")
    try:
        rows = copyformat.parse_rows(b"".join(chunks).decode(), spec)
    except UnicodeDecodeError as exc:
        raise SqlError(sqlstate.CHARACTER_NOT_IN_REPERTOIRE, codec.utf8_error(exc)) from exc
    except ValueError as exc:
        raise SqlError(sqlstate.INVALID_TEXT_REPRESENTATION, f"COPY data: {exc}") from exc
    copyformat.force(rows, spec, columns)
    if not rows:
        t.send(m.command_complete("COPY 0"))
        return
    width = len(spec.columns) or len(rows[0])
    cols = f" ({', '.join(spec.columns)})" if spec.columns else ""
    insert = f"INSERT INTO {spec.table}{cols} VALUES ({', '.join(f'?{i + 1}' for i in range(width))})"
    # Foreign keys are checked at COMMIT, so that a transaction can load a child table before its
    # parent (a pg_dump script orders its data by table name; restore it with psql -1).
    statements = [common_pb2.Statement(sql="PRAGMA defer_foreign_keys = ON", kind=WRITE)]
    for n, row in enumerate(rows, 1):
        if len(row) != width:
            raise SqlError(sqlstate.BAD_COPY_FILE_FORMAT,
                           f"COPY data line {n}: expected {width} columns, got {len(row)}")
        statements.append(common_pb2.Statement(sql=insert, kind=WRITE, params=[
            _value(v, decltypes[i] if i < len(decltypes) else "") for i, v in enumerate(row)]))
    batch = await s.run(statements, implicit=True)
    last = batch.results[-1] if batch.results else None
    if last is not None and last.HasField("error"):
        raise SqlError(last.error.sqlstate, f"COPY line {len(batch.results) - 1}: {last.error.message}")
    t.send(m.command_complete(f"COPY {len(rows)}"))


_TRUE = {"t", "true", "y", "yes", "on", "1"}
_INTEGER = re.compile(r"^-?(?:0|[1-9][0-9]{0,18})$")
_FLOAT = re.compile(r"^-?[0-9][0-9.e+-]*$")
_FALSE = {"f", "false", "n", "no", "off", "0"}


def _value(text: str | None, decltype: str) -> common_pb2.Value:
    """A COPY field as the column's PostgreSQL type reads it: a boolean column's t/f as SQLite's
    1/0, a bytea (BLOB) column's \\x hex as bytes, and in a column without a declared type a number
    spelled as COPY TO spells one (SQLite keeps each value's own class there; text that looks like a
    number becomes one: the one case a round trip cannot tell apart). Any other text goes in as
    text and SQLite's column affinity converts it, as for an INSERT of a string."""
    if text is None:
        return common_pb2.Value(null=True)
    oid = types.affinity_oid(decltype)
    if oid == types.BOOL and text.lower() in _TRUE | _FALSE:
        return common_pb2.Value(integer=1 if text.lower() in _TRUE else 0)
    if not decltype and _INTEGER.match(text):  # no declared type: a number as COPY TO printed it
        return common_pb2.Value(integer=int(text))
    if not decltype and _FLOAT.match(text) and types.format_float8(float(text)) == text:
        return common_pb2.Value(real=float(text))
    if text.startswith("\\x") and (oid is None or "BYTEA" in decltype.upper()):
        try:
            return common_pb2.Value(blob=bytes.fromhex(text[2:]))
        except ValueError:
            pass
    return common_pb2.Value(text=text)


async def _decltypes(s: Session, spec: copyformat.CopySpec) -> list[str]:
    """The declared types of the columns a COPY FROM fills, in its order."""
    cols = ", ".join(spec.columns) or "*"
    result = await s.describe(common_pb2.Statement(sql=rewrite(f"SELECT {cols} FROM {spec.table}").sql, kind=READ))
    if result.HasField("error"):
        raise SqlError.from_proto(result.error)
    return [c.decltype for c in result.description.columns]


async def _columns(s: Session, spec: copyformat.CopySpec) -> list[str]:
    """The columns a COPY FROM fills (its list, else the table's), for FORCE_NOT_NULL / FORCE_NULL."""
    if spec.columns:
        return [copyformat.column_key(c) for c in spec.columns]
    result = await s.describe(common_pb2.Statement(sql=rewrite(f"SELECT * FROM {spec.table}").sql, kind=READ))
    if result.HasField("error"):
        raise SqlError.from_proto(result.error)
    return [copyformat.column_key(c.name) for c in result.description.columns]
