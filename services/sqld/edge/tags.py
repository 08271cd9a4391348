"""CommandComplete tags as PostgreSQL writes them, from a statement's classification and its result."""
from __future__ import annotations

from sqld.common.statement import Classified
from sqld.edge import sqlitewire
from sqld.v1 import common_pb2

_CREATE_OBJECTS = {"TABLE", "INDEX", "VIEW", "TRIGGER"}


def command_tag(c: Classified, result: common_pb2.ResultSet, was_failed: bool = False,
                rows: int | None = None) -> str:
    """`c`: common.statement.classify of the client's text; `rows`: how many rows the statement
    returned, when they are not in `result` (streamed)."""
    words = c.words
    first = words[0] if words else ""
    verb = c.verb if first != "WITH" else c.verb if c.verb in ("INSERT", "UPDATE", "DELETE", "REPLACE") else "SELECT"
    if verb in ("INSERT", "REPLACE"):
        oid = result.last_insert_rowid if sqlitewire.ACTIVE.get() else 0  # PostgreSQL's OID field
        return f"INSERT {oid} {result.rows_affected}"
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
