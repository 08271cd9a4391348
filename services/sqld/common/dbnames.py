"""Database names: PostgreSQL's identifier rules, as far as a file name can follow them.

A database is a file (`<data>/<name>.db`), a folder of the replication log, a key prefix of
the page store: its name must never be a path. So a name is 1 to 63 bytes (PostgreSQL's
NAMEDATALEN - 1) of ASCII letters, digits, `_`, `$`, `-` and `.`, does not start with `.`
or `-`, and never holds `..`; `/`, `\\` and NUL are refused with everything else. Checked
where a name enters (the edge's CREATE DATABASE, the scheduler's DatabaseAdmin, storage,
the replication service), so nothing is ever created on disk for a bad one.
"""
from __future__ import annotations

import re

from sqld.common import sqlstate
from sqld.common.sqlstate import SqlError

MAX_BYTES = 63
_NAME = re.compile(r"[A-Za-z0-9_$][A-Za-z0-9_$.-]*\Z")


def problem(name: str) -> SqlError | None:
    """Why `name` cannot name a database (42602 invalid_name, 42622 name_too_long), or None."""
    if not name:
        return SqlError(sqlstate.INVALID_NAME, "a database name must not be empty")
    if len(name.encode()) > MAX_BYTES:
        return SqlError(sqlstate.NAME_TOO_LONG, f'database name "{name[:80]}" is too long: '
                        f"at most {MAX_BYTES} bytes")
    if not _NAME.match(name) or ".." in name:
        shown = name.encode("unicode_escape").decode()[:80]
        return SqlError(sqlstate.INVALID_NAME, f'invalid database name "{shown}": use letters, digits, '
                        "_ $ . - (not first: . -; never .. / \\ or NUL)")
    return None


def check(name: str) -> str:
    """`name` if it is a valid database name; raises the SqlError of `problem` otherwise."""
    err = problem(name)
    if err is not None:
        raise err
    return name


def valid(name: str) -> bool:
    return problem(name) is None
