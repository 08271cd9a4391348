"""Statement kinds as the scheduler sees them: transaction control, reads and writes; and
`expand`, which splits a string that holds several statements.

A statement is a read only when its leading keyword says so for certain; anything
unsure is a write (it then takes the writer token, which is always safe). Storage
double-checks reads with SQLite's own sqlite3_stmt_readonly.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Sequence

from common import errors
from common.sqltext import leading_words, split, strip_leading
from sqld.v1 import common_pb2


class Kind(enum.Enum):
    BEGIN = "begin"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    SAVEPOINT = "savepoint"        # SAVEPOINT, RELEASE
    ROLLBACK_TO = "rollback_to"
    READ = "read"
    WRITE = "write"
    LOCAL = "local"                # answered by the scheduler itself (session settings, pg_stat_replication)


CONTROL = {Kind.BEGIN, Kind.COMMIT, Kind.ROLLBACK, Kind.SAVEPOINT, Kind.ROLLBACK_TO}

_READ_WORDS = {"SELECT", "VALUES", "EXPLAIN"}
_DML = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.I)
_TO = re.compile(r"^ROLLBACK(\s+TRANSACTION)?\s+TO\b", re.I)
_READ_ONLY_TXN = re.compile(r"\bREAD\s+ONLY\b", re.I)


def classify(sql: str) -> Kind:
    words = leading_words(sql, 1)
    first = words[0] if words else ""
    if first in ("BEGIN", "START"):
        return Kind.BEGIN
    if first in ("COMMIT", "END"):
        return Kind.COMMIT
    if first == "ROLLBACK" or first == "ABORT":
        return Kind.ROLLBACK_TO if _TO.match(strip_leading(sql)) else Kind.ROLLBACK
    if first in ("SAVEPOINT", "RELEASE"):
        return Kind.SAVEPOINT
    if first in _READ_WORDS:
        return Kind.READ
    if first == "WITH":
        return Kind.WRITE if _DML.search(sql) else Kind.READ
    return Kind.WRITE


def is_read_only_begin(sql: str) -> bool:
    """BEGIN READ ONLY / START TRANSACTION READ ONLY."""
    return bool(_READ_ONLY_TXN.search(sql))


def expand(statements: Sequence[common_pb2.Statement]) -> list[common_pb2.Statement] | common_pb2.StatementError:
    """Split statements that hold several SQL statements; parameters allow only one."""
    out: list[common_pb2.Statement] = []
    for st in statements:
        if ";" not in st.sql:
            out.append(st)
            continue
        parts = split(st.sql)
        if len(parts) > 1 and (st.params or st.named_params):
            return errors.error("42601", "cannot insert multiple commands into a prepared statement")
        out.extend(common_pb2.Statement(sql=p) for p in parts) if len(parts) > 1 else out.append(st)
    return out
