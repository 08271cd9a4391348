"""CommandComplete tags as PostgreSQL writes them, from a statement and its result."""
from __future__ import annotations

import re

from common.sqltext import leading_words
from sqld.v1 import common_pb2

_DML = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.I)
_CREATE_OBJECTS = {"TABLE", "INDEX", "VIEW", "TRIGGER"}


def command_tag(sql: str, result: common_pb2.ResultSet, was_failed: bool = False, rows: int | None = None) -> str:
    """`rows`: how many rows the statement returned, when they are not in `result` (streamed)."""
    words = leading_words(sql, 4)
    first = words[0] if words else ""
    verb = first
    if first == "WITH":
        m = _DML.search(sql)
        verb = m.group(1).upper() if m else "SELECT"
    if verb in ("INSERT", "REPLACE"):
        return f"INSERT 0 {result.rows_affected}"
    if verb in ("UPDATE", "DELETE"):
        return f"{verb} {result.rows_affected}"
    if first in ("BEGIN", "START"):
        return "BEGIN"
    if first in ("COMMIT", "END"):
        return "ROLLBACK" if was_failed else "COMMIT"
    if first in ("ROLLBACK", "ABORT"):
        return "ROLLBACK"
    if first in ("CREATE", "DROP"):
        obj = next((w for w in words[1:] if w in _CREATE_OBJECTS), words[1] if len(words) > 1 else "")
        return f"{first} {obj}".strip()
    if first == "ALTER":
        return "ALTER TABLE"
    if first == "EXPLAIN":
        return "EXPLAIN"
    if result.columns or first in ("SELECT", "VALUES"):
        return f"SELECT {len(result.rows) if rows is None else rows}"
    return first or "SELECT 0"
