"""Compatibility SQL functions registered on every storage connection.

Storage stays PostgreSQL-agnostic; these are generic SQLite functions that SQLite leaves to the
application, which the edge's rewriting relies on:
- regexp(pattern, value): SQLite's `value REGEXP pattern` operator (Python `re.search`
  semantics, close to PostgreSQL's `~` for the patterns clients send). NULL if either is NULL.
- sqld_databases(): the databases this storage process serves, a JSON array of names
  (the edge's pg_database lists them through json_each).
"""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable

import apsw


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def regexp(*args: apsw.SQLiteValue) -> int | None:
    pattern, value = args  # registered with two arguments (apsw's scalar functions take *values)
    if pattern is None or value is None:
        return None
    return 1 if _compiled(str(pattern)).search(str(value)) else 0


def _no_names() -> list[str]:
    return []


# The names of the databases this storage process serves, for the catalog's pg_database
# (`sqld_databases()`, a JSON array); storage.__main__ points it at its registry.
database_names: Callable[[], list[str]] = _no_names


def databases(*_args: apsw.SQLiteValue) -> str:
    return json.dumps(database_names())


def register(conn: apsw.Connection) -> None:
    # innocuous: usable in views, triggers and CHECKs with TRUSTED_SCHEMA off (guard.py)
    conn.create_scalar_function("regexp", regexp, 2, deterministic=True, flags=apsw.SQLITE_INNOCUOUS)
    conn.create_scalar_function("sqld_databases", databases, 0, flags=apsw.SQLITE_INNOCUOUS)
