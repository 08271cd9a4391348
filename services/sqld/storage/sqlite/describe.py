"""Describe a statement without running it: result columns, parameters and their likely types.

A parameter's type is the declared type of the column it is compared with, inserted into
or assigned to, or the type it is CAST to; LIMIT/OFFSET take integers. Clients that
encode parameters from the server's description (asyncpg) need this: SQLite itself does
not type parameters.
"""
from __future__ import annotations

import time
from typing import Any

import apsw

from sqld.common.sqltext import PARAM, QID, WORD, Token, significant
from sqld.v1 import common_pb2

_COMPARE = {"=", "==", "!=", "<>", "<", "<=", ">", ">=", "LIKE", "GLOB", "IS", "MATCH", "REGEXP"}
_TABLE_INTRO = {"FROM", "JOIN", "INTO", "UPDATE", "TABLE"}
_NOT_ALIAS = {"WHERE", "SET", "VALUES", "ON", "USING", "JOIN", "LEFT", "RIGHT", "INNER", "OUTER", "CROSS",
              "NATURAL", "GROUP", "ORDER", "LIMIT", "UNION", "EXCEPT", "INTERSECT", "DEFAULT", "SELECT",
              "RETURNING", "WINDOW", "HAVING", "AS", "INDEXED", "NOT", "FULL"}
_KEYWORDS = _COMPARE | _TABLE_INTRO | _NOT_ALIAS


def _tokens(sql: str) -> list[Token]:
    """The significant tokens of `sql` as SQLite reads it, a quoted identifier as the word it
    quotes and the keywords this module looks for upper-cased."""
    out = []
    for tok in significant(sql, brackets=True):
        kind, text = tok
        if kind is QID:
            tok = Token(WORD, text[1:-1])
        elif kind is WORD:
            upper = text.upper()
            if upper in _KEYWORDS:
                tok = Token(WORD, upper)
        out.append(tok)
    return out


class _Schema:
    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self._cache: dict[str, list[tuple[str, str]]] = {}

    def columns(self, table: str) -> list[tuple[str, str]]:
        if table not in self._cache:
            try:
                rows = self.conn.execute("SELECT name, type FROM pragma_table_info(?)", (table,)).fetchall()
            except apsw.Error:
                rows = []
            self._cache[table] = [(str(n), str(t or "")) for n, t in rows]
        return self._cache[table]


def _param_types(conn: apsw.Connection, sql: str, count: int) -> list[str]:
    toks = _tokens(sql)
    schema = _Schema(conn)
    aliases: dict[str, str] = {}
    tables: list[str] = []
    for i, (kind, text) in enumerate(toks):
        if kind is WORD and text in _TABLE_INTRO and i + 1 < len(toks) and toks[i + 1].kind is WORD:
            j = i + 1
            name = toks[j].text
            if j + 2 < len(toks) and toks[j + 1].text == "." and toks[j + 2].kind is WORD:
                j += 2
                name = toks[j].text
            tables.append(name)
            aliases[name.lower()] = name
            k = j + 1
            if k < len(toks) and toks[k].text == "AS":
                k += 1
            if k < len(toks) and toks[k].kind is WORD and toks[k].text.upper() not in _NOT_ALIAS:
                aliases[toks[k].text.lower()] = name

    def column_type(idx: int) -> str:
        """Declared type of the (possibly qualified) column ending at token idx."""
        if idx < 0 or toks[idx].kind is not WORD:
            return ""
        col = toks[idx].text.lower()
        candidates = tables
        if idx >= 2 and toks[idx - 1].text == "." and toks[idx - 2].kind is WORD:
            t = aliases.get(toks[idx - 2].text.lower())
            candidates = [t] if t else []
        for t in candidates:
            for name, decl in schema.columns(t):
                if name.lower() == col:
                    return decl
        return ""

    types = [""] * count
    next_anon = 0
    named: dict[str, int] = {}
    for i, (kind, text) in enumerate(toks):
        if kind is not PARAM:
            continue
        if text == "?":
            next_anon += 1
            index = next_anon
        elif text[0] == "?":
            index = int(text[1:])
            next_anon = max(next_anon, index)
        else:
            if text not in named:
                next_anon += 1
                named[text] = next_anon
            index = named[text]
        if not 1 <= index <= count or types[index - 1]:
            continue
        types[index - 1] = _infer(toks, i, column_type, schema, tables)
    return types


def _infer(toks, i, column_type, schema, tables) -> str:  # noqa: ANN001
    prev = toks[i - 1].text if i > 0 else ""
    nxt = toks[i + 1].text if i + 1 < len(toks) else ""
    if prev in _COMPARE:
        return column_type(i - 2)
    if nxt in _COMPARE and i + 2 < len(toks):
        j = i + 2
        while j + 2 < len(toks) and toks[j + 1].text == ".":
            j += 2
        return column_type(j)
    if prev.upper() in ("LIMIT", "OFFSET"):
        return "INTEGER"
    if prev == "(" and i >= 2 and toks[i - 2].text.upper() == "CAST" and nxt.upper() == "AS":
        return toks[i + 2].text.upper() if i + 2 < len(toks) else ""
    # walk back through a parenthesised list: IN (...), VALUES (...), BETWEEN
    depth, pos, j = 0, 0, i - 1
    while j >= 0:
        t = toks[j].text
        if t == ")":
            depth += 1
        elif t == "(":
            if depth == 0:
                break
            depth -= 1
        elif t == "," and depth == 0:
            pos += 1
        elif t.upper() == "BETWEEN" and depth == 0:
            return column_type(j - 1)
        j -= 1
    if j < 0:
        return ""
    before = toks[j - 1].text.upper() if j > 0 else ""
    if before == "IN":
        return column_type(j - 2)
    if before in ("VALUES", ","):  # INSERT ... VALUES (...), (...)
        k = j - 1
        while k >= 0 and toks[k].text.upper() != "VALUES":
            k -= 1
        return _insert_column_type(toks, k, pos, schema, tables)
    return ""


def _insert_column_type(toks, values_at: int, pos: int, schema, tables) -> str:  # noqa: ANN001
    if values_at < 0 or not tables:
        return ""
    table = tables[0]
    cols = schema.columns(table)
    k = values_at - 1
    if k >= 0 and toks[k].text == ")":  # explicit column list
        names = []
        while k >= 0 and toks[k].text != "(":
            if toks[k].kind is WORD:
                names.append(toks[k].text.lower())
            k -= 1
        names.reverse()
        if pos < len(names):
            return next((d for n, d in cols if n.lower() == names[pos]), "")
        return ""
    return cols[pos][1] if pos < len(cols) else ""


def describe(conn: apsw.Connection, sql: str) -> common_pb2.StatementDescription:
    """Prepare `sql` and describe it; raises apsw errors for bad SQL."""
    seen: dict[str, Any] = {}

    def trace(cursor: apsw.Cursor, _sql: str, _bindings: Any) -> bool:
        seen["columns"] = cursor.description if cursor.has_vdbe else ()
        seen["read_only"] = cursor.is_readonly
        seen["names"] = cursor.bindings_names
        return False  # prepared, never stepped

    cursor = conn.cursor()
    cursor.exec_trace = trace
    bindings: Any = None
    for _ in range(2):
        try:
            cursor.execute(sql, bindings)
        except apsw.ExecTraceAbort:
            break
        except apsw.BindingsError:
            if bindings is not None:
                raise
            bindings = (None,) * cursor.bindings_count
    cursor.close(force=True)
    names = seen.get("names", ())
    types = _param_types(conn, sql, len(names))
    columns = seen.get("columns", ())
    sampled: list[str] = []
    if seen.get("read_only") and any(not c[1] for c in columns):
        sampled = _sample(conn, sql, bindings)
    return common_pb2.StatementDescription(
        sampled_classes=sampled,
        columns=[common_pb2.Column(name=c[0], decltype=c[1] or "") for c in seen.get("columns", ())],
        parameters=[common_pb2.Parameter(name=n or f"?{i + 1}", decltype=t)
                    for i, (n, t) in enumerate(zip(names, types))],
        read_only=bool(seen.get("read_only", True)))


SAMPLE_BUDGET_S = 0.02
_CLASS = {int: "integer", float: "real", str: "text", bytes: "blob", type(None): "null"}


def _sample(conn: apsw.Connection, sql: str, bindings: Any) -> list[str]:
    """Storage classes of the first row of a read-only statement run with NULL parameters."""
    deadline = time.monotonic() + SAMPLE_BUDGET_S
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
    cursor = conn.cursor()
    try:
        row = next(iter(cursor.execute(sql, bindings)), None)
    except apsw.Error:
        row = None
    finally:
        cursor.close(force=True)
        conn.set_progress_handler(None)
    return [_CLASS.get(type(v), "blob") for v in row] if row is not None else []
