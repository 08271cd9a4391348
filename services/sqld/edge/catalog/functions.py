"""PostgreSQL functions users type every day that SQLite has no name for, and where each runs.

Three kinds (see edge/DESIGN.md, "PostgreSQL functions"):
- Session values: the same statement text must give each session its own value, so the rewrite
  (a pure function of the text, remembered per text) leaves a marker call `sqld_session_<name>()`
  and `bind` puts the session's value in as a literal just before the statement leaves the edge
  (session.py); a marker spelled inside a string or comment is the client's data and stays. A marker that was not bound fails loudly on storage ("no such function").
  current_user, session_user, current_role, current_database(), current_catalog,
  pg_backend_pid(), inet_server_port(), now() and transaction_timestamp() (the start of the
  session's transaction, as in PostgreSQL), statement_timestamp() (the start of the batch).
- Constants of this server: pg_is_in_recovery() (false: a site's edge accepts writes),
  pg_postmaster_start_time() (the edge process's start), version(), current_schema.
- Plain SQLite expressions, evaluated on storage: clock_timestamp(), gen_random_uuid() (a version
  4 UUID from randomblob). Replicas apply physical WAL frames, so a value computed once on the
  primary is what every replica holds.
Timestamps are ISO text in UTC with microseconds and `+00:00`, which SQLite's date functions read
(PostgreSQL would print `+00`, which they do not). SQLite's own CURRENT_TIMESTAMP, CURRENT_DATE and
CURRENT_TIME keep SQLite's meaning (the statement's time, to the second, no zone): DEFAULT clauses
in SQLite DDL rely on it.
"""
from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable

from sqld.common.sqltext import WORD, WS, significant, tokens
from sqld.edge.sqlparts import split_select_list

_START = time.time()

# keyword (no parentheses in PostgreSQL) -> replacement
KEYWORDS = {
    "current_user": "sqld_session_user()", "session_user": "sqld_session_user()",
    "current_role": "sqld_session_user()", "current_catalog": "sqld_session_database()",
    "current_schema": "'public'",
}
_HEX = "lower(hex(randomblob({})))"
_UUID = (f"({_HEX.format(4)} || '-' || {_HEX.format(2)} || '-4' || substr({_HEX.format(2)}, 2) || '-' "
         f"|| substr('89ab', 1 + (abs(random()) % 4), 1) || substr({_HEX.format(2)}, 2) || '-' || {_HEX.format(6)})")
_CLOCK = "strftime('%Y-%m-%d %H:%M:%f000+00:00', 'now')"
# name() -> replacement (PostgreSQL spelling: `::` is rewritten later, giving the column its type)
CALLS = {
    "now": "sqld_session_now()", "transaction_timestamp": "sqld_session_now()",
    "statement_timestamp": "sqld_session_statement_time()", "clock_timestamp": _CLOCK,
    "current_database": "sqld_session_database()", "current_schema": "'public'",
    "pg_backend_pid": "sqld_session_pid()",
    "pg_is_in_recovery": "(0)::boolean", "pg_postmaster_start_time": "sqld_server_start()",
    "pg_conf_load_time": "sqld_server_start()", "version": "sqld_server_version()", "gen_random_uuid": _UUID,
}
_PREFILTER = re.compile(r"\b(?:" + "|".join(sorted(set(KEYWORDS) | set(CALLS))) + r")\b", re.I)


def wants(sql: str) -> bool:
    return _PREFILTER.search(sql) is not None


def rewrite(sql: str) -> str:
    """`sql` with the functions above replaced (strings, quoted names and comments untouched)."""
    toks = tokens(sql)
    out: list[str] = []
    prev = before = ""
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        low = text.lower() if kind is WORD else ""
        if kind is not WS:
            prev, before = text, prev
        qualified = before == "." and out[-2:-1] == ["pg_catalog"] and out[-1:] == ["."]
        if low and (before != "." or qualified):
            j = i + 1
            while j < len(toks) and toks[j].kind is WS:
                j += 1
            call = j < len(toks) and toks[j].text == "("
            k = j + 1
            while call and k < len(toks) and toks[k].kind is WS:
                k += 1
            if call and low in CALLS and k < len(toks) and toks[k].text == ")":
                if qualified:
                    del out[-2:]
                out.append(CALLS[low])
                i = k + 1
                continue
            if not call and not qualified and low in KEYWORDS:
                out.append(KEYWORDS[low])
                i += 1
                continue
        out.append(text)
        i += 1
    return "".join(out)


# result types of the calls above that are not text, for the simple protocol's RowDescription
TYPES = {"pg_is_in_recovery": "bool", "pg_backend_pid": "int4"}


def hints(sql: str) -> list[str]:
    """`pg:<typname>` per top-level select item that is one of TYPES' calls, else ""."""
    words = significant(sql)
    if not words or words[0].text.upper() != "SELECT":
        return []
    items, _ = split_select_list(words, 1)
    out = []
    for item in items:
        names = [t.text.lower() for t in item[:4] if t.kind is WORD and t.text.lower() != "pg_catalog"]
        out.append(f"pg:{TYPES[names[0]]}" if names and names[0] in TYPES and "(" in [t.text for t in item] else "")
    return out


def _timestamp(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")


MARKER = "sqld_se"  # in every marker: a statement without it is sent as it is
_MARKER = re.compile(r"sqld_(session|server)_(\w+)\(\)")
# Strings, quoted names and comments, where a marker is the client's text, never bound.
_QUOTED = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/)", re.S)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def bind(sql: str, user: str, database: str, pid: int, transaction_start: float, statement_start: float,
         version: str, application_name: str) -> str:
    """`sql` with the session's values in place of the markers `rewrite` left."""
    if MARKER not in sql:
        return sql
    values = {"user": _quote(user), "database": _quote(database), "pid": str(pid),
              "now": _quote(_timestamp(transaction_start)), "statement_time": _quote(_timestamp(statement_start)),
              "start": _quote(_timestamp(_START)), "version": _quote(version),
              "app": _quote(application_name)}
    return outside_quotes(sql, lambda part: _MARKER.sub(lambda m: values.get(m.group(2), m.group(0)), part))


def outside_quotes(sql: str, change: Callable[[str], str]) -> str:
    """`sql` with `change` applied to its text outside strings, quoted names and comments (a
    client's string that spells a marker is data, and stays as written)."""
    parts = _QUOTED.split(sql)  # odd indexes: quoted text and comments
    return "".join(p if i % 2 else change(p) for i, p in enumerate(parts))

