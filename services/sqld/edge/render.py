"""Results → backend messages: RowDescription, DataRow, CommandComplete, in text or binary."""
from __future__ import annotations

import functools
from collections.abc import Sequence

from sqld.common.statement import Classified
from sqld.edge import catalog, sqlitewire, tags, types
from sqld.edge.commands import LocalResult
from sqld.edge.cursors import Cursor
from sqld.edge.pgwire import messages as m
from sqld.v1 import common_pb2

TEXT_OIDS = {types.TEXT, types.VARCHAR}


def result_oids(rs: common_pb2.ResultSet, hints: Sequence[str] = ()) -> list[int]:
    """Column OIDs from declared types (or the catalog's `pg:` hints) and, where those say nothing, the values."""
    if sqlitewire.ACTIVE.get():
        return [sqlitewire.VALUE_OID] * len(rs.columns)
    return [types.column_oid(_pg_hint(hints, i) or col.decltype, [row.values[i] for row in rs.rows])
            for i, col in enumerate(rs.columns)]


def _pg_hint(hints: Sequence[str], i: int) -> str:
    return hints[i] if i < len(hints) and hints[i].startswith("pg:") else ""


_BY_CLASS = {"integer": types.INT8, "real": types.FLOAT8, "text": types.TEXT, "blob": types.BYTEA}


def cursor_oids(cursor: Cursor) -> list[int]:
    """A cursor's column types, computed once from its first rows so every FETCH agrees."""
    if cursor.oids is None:
        cursor.oids = result_oids(common_pb2.ResultSet(columns=cursor.result.columns, rows=cursor.rows.sample))
    return cursor.oids


def described_oids(description: common_pb2.StatementDescription, hints: Sequence[str]) -> list[int]:
    """Column OIDs before execution (Describe S): declared types, then select-list hints, then
    the classes storage saw in a trial run, else text."""
    if sqlitewire.ACTIVE.get():
        return [sqlitewire.VALUE_OID] * len(description.columns)
    out = []
    for i, col in enumerate(description.columns):
        decl = _pg_hint(hints, i) or col.decltype or (hints[i] if i < len(hints) else "")
        oid = types.affinity_oid(decl) if decl else None
        if oid is None and decl and "BLOB" in decl.upper():
            oid = types.BYTEA
        if oid is None and i < len(description.sampled_classes):
            oid = _BY_CLASS.get(description.sampled_classes[i])
        out.append(oid if oid is not None else types.TEXT)
    return out


def formats_for(result_formats: Sequence[int], n: int) -> list[int]:
    if not result_formats:
        return [0] * n
    if len(result_formats) == 1:
        return [result_formats[0]] * n
    return list(result_formats[:n]) + [0] * (n - len(result_formats))


def row_description(names: Sequence[str], oids: Sequence[int], formats: Sequence[int],
                    columns: Sequence[common_pb2.Column] = ()) -> bytes:
    """RowDescription; the same columns (most results of a workload) are encoded once. `columns`:
    the result's, whose declared types a SQLite-wire client is told first (sqlitewire.py)."""
    described = _row_description(tuple(names), tuple(oids), tuple(formats))
    wire = sqlitewire.ACTIVE.get()
    if wire is None:
        return described
    return sqlitewire.decltypes_status(columns or [common_pb2.Column(name=n) for n in names], wire) + described


def error(err: common_pb2.StatementError) -> bytes:
    """ErrorResponse for a statement's error; with SQLite's result code for a SQLite-wire client."""
    extra = sqlitewire.error_fields(err.sqlite_code) if sqlitewire.ACTIVE.get() else b""
    return m.error_response(err.sqlstate, err.message, extra=extra)


ROW_DESCRIPTIONS_CACHED = 256


@functools.lru_cache(maxsize=ROW_DESCRIPTIONS_CACHED)
def _row_description(names: tuple[str, ...], oids: tuple[int, ...], formats: tuple[int, ...]) -> bytes:
    return m.row_description([(n, o, types.TYPE_SIZE.get(o, -1)) for n, o in zip(names, oids)], formats)


def data_rows(rows: Sequence[common_pb2.Row], oids: Sequence[int], formats: Sequence[int], strict: bool) -> list[bytes]:
    """DataRow messages; `strict` when the client was told the types before the values existed."""
    if sqlitewire.ACTIVE.get():
        value = sqlitewire.value
        return [m.data_row([value(v) for v in row.values]) for row in rows]
    text = types.coerce_text if strict else types.to_text
    convert = [types.to_binary if fmt == 1 else text for fmt in formats]
    data_row = m.data_row
    return [data_row([f(v, oid) for f, v, oid in zip(convert, row.values, oids)]) for row in rows]


def local_messages(res: LocalResult) -> list[bytes]:
    out = [m.notice_response(state, msg) for state, msg in res.notices]
    if res.error:
        return out + [m.error_response(res.error.sqlstate, res.error.message)]
    out += [m.parameter_status(k, v) for k, v in res.changed]
    if res.columns:
        out.append(row_description(res.columns, [types.TEXT] * len(res.columns), [0] * len(res.columns)))
        out += [m.data_row([None if v is None else v.encode() for v in row]) for row in res.rows]
    out.append(m.command_complete(res.tag))
    return out


def simple_messages(sql: str, classified: Classified, result: common_pb2.StatementResult,
                    was_failed: bool) -> list[bytes]:
    """Everything the simple protocol sends for one statement's result."""
    out = [m.notice_response(n.sqlstate, n.message) for n in result.notices]
    if result.HasField("error"):
        return out + [error(result.error)]
    rs = result.ok
    if rs.columns:
        oids = result_oids(rs, catalog.hints_for(sql))
        fmts = [0] * len(oids)
        out.append(row_description([c.name for c in rs.columns], oids, fmts, rs.columns))
        out += data_rows(rs.rows, oids, fmts, strict=False)
    out.append(m.command_complete(tags.command_tag(classified, rs, was_failed)))
    return out
