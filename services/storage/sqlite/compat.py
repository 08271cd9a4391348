"""Compatibility SQL functions registered on every storage connection.

Storage stays PostgreSQL-agnostic; these are generic SQLite functions that SQLite leaves to the
application, which the edge's rewriting relies on:
- regexp(pattern, value): SQLite's `value REGEXP pattern` operator (Python `re.search`
  semantics, close to PostgreSQL's `~` for the patterns clients send). NULL if either is NULL.
"""
from __future__ import annotations

import functools
import re

import apsw


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def regexp(*args: apsw.SQLiteValue) -> int | None:
    pattern, value = args  # registered with two arguments (apsw's scalar functions take *values)
    if pattern is None or value is None:
        return None
    return 1 if _compiled(str(pattern)).search(str(value)) else 0


def register(conn: apsw.Connection) -> None:
    # innocuous: usable in views, triggers and CHECKs with TRUSTED_SCHEMA off (guard.py)
    conn.create_scalar_function("regexp", regexp, 2, deterministic=True, flags=apsw.SQLITE_INNOCUOUS)
