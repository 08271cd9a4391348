"""Catalog relations whose rows are not in the database but in the site: pg_stat_activity (the
scheduler's registry of sessions) and pg_settings (this session's settings); and the signal
functions pg_cancel_backend / pg_terminate_backend.

The rewrite stays a pure function of the text (it is remembered per text): each relation reads
its rows from a JSON array written in the SQL as a MARKER literal, an empty JSON5 array with a
comment naming it. Just before the statement is sent (edge/activity.py, called by
Session.run) the marker is replaced by the rows of that moment, as a SQL string literal; a
statement never filled in (Describe) reads no rows. A signal call becomes
`json_array('sqld:cancel', pid)`; edge/activity.py sends the signal for each such value in the
result and puts PostgreSQL's boolean in its place.
"""
from __future__ import annotations

import re

from sqld.edge.catalog.schema import COLUMN_TYPES, R
from sqld.edge.catalog.select import select_items

ACTIVITY = "'[/*sqld:pg_stat_activity*/]'"
SETTINGS = "'[/*sqld:pg_settings*/]'"
PROGRESS_COPY = "'[/*sqld:pg_stat_progress_copy*/]'"
SIGNALS = {"pg_cancel_backend": "sqld:cancel", "pg_terminate_backend": "sqld:terminate"}

ACTIVITY_COLUMNS = [
    ("datid", "oid"), ("datname", "name"), ("pid", "int4"), ("leader_pid", "int4"), ("usesysid", "oid"),
    ("usename", "name"), ("application_name", "text"), ("client_addr", "text"), ("client_hostname", "text"),
    ("client_port", "int4"), ("backend_start", "timestamptz"), ("xact_start", "timestamptz"),
    ("query_start", "timestamptz"), ("state_change", "timestamptz"), ("wait_event_type", "text"),
    ("wait_event", "text"), ("state", "text"), ("backend_xid", "text"), ("backend_xmin", "text"),
    ("query_id", "int8"), ("query", "text"), ("backend_type", "text")]
# What edge/activity.py writes per session, in this order (a JSON array per row).
ACTIVITY_FIELDS = ["datname", "pid", "usename", "application_name", "client_addr", "client_port", "backend_start",
                   "xact_start", "query_start", "state_change", "wait_event_type", "wait_event", "state", "query",
                   "backend_type"]
_F = {name: i for i, name in enumerate(ACTIVITY_FIELDS)}

SETTINGS_COLUMNS = [
    ("name", "text"), ("setting", "text"), ("unit", "text"), ("category", "text"), ("short_desc", "text"),
    ("extra_desc", "text"), ("context", "text"), ("vartype", "text"), ("source", "text"), ("min_val", "text"),
    ("max_val", "text"), ("enumvals", "text"), ("boot_val", "text"), ("reset_val", "text"),
    ("sourcefile", "text"), ("sourceline", "int4"), ("pending_restart", "bool")]


# pg_stat_progress_copy: this edge's running COPYs (edge/progress.py); bytes_total is 0 as for a
# COPY FROM STDIN in PostgreSQL, relid is NULL (SQLite tables have no oid), no rows are excluded.
PROGRESS_COPY_COLUMNS = [
    ("pid", "int4"), ("datid", "oid"), ("datname", "name"), ("relid", "oid"), ("command", "text"),
    ("type", "text"), ("bytes_processed", "int8"), ("bytes_total", "int8"), ("tuples_processed", "int8"),
    ("tuples_excluded", "int8")]


def _progress_copy_body() -> str:
    return ("SELECT p.value ->> 0, 16384 + d.key, p.value ->> 1, NULL, p.value ->> 3, p.value ->> 4, "
            "p.value ->> 5, 0, p.value ->> 6, 0 "
            f"FROM json_each({PROGRESS_COPY}) AS p LEFT JOIN json_each(sqld_databases()) AS d "
            "ON d.value = p.value ->> 1")


def _activity_body() -> str:
    def f(name: str) -> str:
        return f"a.value ->> {_F[name]}"
    cols = {c: "NULL" for c, _ in ACTIVITY_COLUMNS}
    cols.update({name: f(name) for name in ACTIVITY_FIELDS})
    cols["datid"] = "16384 + d.key"  # pg_database's oid
    cols["usesysid"] = "10"
    return (f"SELECT {', '.join(cols[c] for c, _ in ACTIVITY_COLUMNS)} FROM json_each({ACTIVITY}) AS a "
            f"LEFT JOIN json_each(sqld_databases()) AS d ON d.value = {f('datname')}")


def _settings_body() -> str:
    return (f"SELECT {', '.join(f'value ->> {i}' for i in range(len(SETTINGS_COLUMNS)))} "
            f"FROM json_each({SETTINGS})")


RELATIONS: dict[str, tuple[list[tuple[str, str]], str]] = {
    "pg_stat_activity": (ACTIVITY_COLUMNS, _activity_body()),
    "pg_settings": (SETTINGS_COLUMNS, _settings_body()),
    "pg_stat_progress_copy": (PROGRESS_COPY_COLUMNS, _progress_copy_body()),
}
for _name, (_cols, _body) in RELATIONS.items():  # the catalog's one table of relations and column types
    R[_name] = (_cols, _body)
    for _c, _t in _cols:
        COLUMN_TYPES.setdefault(_c, _t)

_SIGNAL_CALL = re.compile(r"\b(?:pg_catalog\s*\.\s*)?(pg_cancel_backend|pg_terminate_backend)\s*\(", re.I)


def signal_hints(sql: str, hints: list[str]) -> list[str]:
    """The select items that call a signal function answer booleans."""
    items, _ = select_items(sql)
    out = list(hints)
    for i, item in enumerate(items):
        if i < len(out) and any(t.text.lower() in SIGNALS for t in item):
            out[i] = "pg:bool"
    return out


def rewrite_signals(sql: str) -> str:
    """pg_cancel_backend(x) -> json_array('sqld:cancel', CAST(x AS INTEGER)), and likewise for
    terminate (its optional timeout is dropped); the cast types a parameter `$1` as PostgreSQL's
    int4 argument does."""
    out: list[str] = []
    pos = 0
    while (m := _SIGNAL_CALL.search(sql, pos)) is not None:
        first_end, close = _arguments(sql, m.end())
        if close < 0:
            break
        out += [sql[pos:m.start()], f"json_array('{SIGNALS[m.group(1).lower()]}', CAST(",
                sql[m.end():first_end], " AS INTEGER))"]
        pos = close + 1
    return "".join(out) + sql[pos:]


def _arguments(sql: str, start: int) -> tuple[int, int]:
    """(end of the first argument, index of the closing parenthesis) of a call whose arguments
    start at `start`; -1 when it is not closed."""
    depth, i, first_end = 0, start, -1
    while i < len(sql):
        c = sql[i]
        if c in "'\"":
            i = sql.find(c, i + 1)
            if i < 0:
                return -1, -1
        elif c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                return (first_end if first_end >= 0 else i), i
            depth -= 1
        elif c == "," and depth == 0 and first_end < 0:
            first_end = i
        i += 1
    return -1, -1
