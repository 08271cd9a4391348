"""SQL text helpers shared by the edge and the scheduler: splitting and leading keywords.

Splitting uses SQLite's own notion of a complete statement (`sqlite3_complete`, via apsw),
so quotes, comments and CREATE TRIGGER bodies with inner semicolons are handled exactly
as SQLite would.
"""
from __future__ import annotations

import re

import apsw

_WS_OR_COMMENT = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.S)
_WORD = re.compile(r"[A-Za-z_]+")


def strip_leading(sql: str) -> str:
    """`sql` without leading whitespace and comments."""
    return sql[_WS_OR_COMMENT.match(sql).end():]  # type: ignore[union-attr]


def is_empty(sql: str) -> bool:
    """True when `sql` holds nothing but whitespace, comments and semicolons."""
    rest = sql
    while True:
        rest = strip_leading(rest)
        if not rest.startswith(";"):
            return rest == ""
        rest = rest[1:]


def split(sql: str) -> list[str]:
    """Split a query string into single statements (without empty ones).

    A trailing statement without a semicolon is kept as it is, so that SQLite reports
    its own error for incomplete input.
    """
    out: list[str] = []
    start = 0
    pos = sql.find(";")
    while pos != -1:
        piece = sql[start:pos + 1]
        if apsw.complete(piece):
            if not is_empty(piece):
                out.append(piece.strip())
            start = pos + 1
        pos = sql.find(";", pos + 1)
    tail = sql[start:]
    if not is_empty(tail):
        out.append(tail.strip())
    return out


def leading_words(sql: str, n: int = 2) -> list[str]:
    """The first `n` keywords of a statement, upper-cased, skipping comments."""
    words: list[str] = []
    rest = sql
    while len(words) < n:
        rest = strip_leading(rest)
        m = _WORD.match(rest)
        if not m:
            break
        words.append(m.group(0).upper())
        rest = rest[m.end():]
    return words
