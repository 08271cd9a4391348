"""SQL-level cursors: DECLARE ... CURSOR FOR, FETCH, MOVE, CLOSE (as psycopg's server-side cursors use them).

DECLARE runs its query at once and keeps the rows in the edge, in a RowStore (memory up to
8 MiB, then a temporary file, as PostgreSQL's tuplestore does); FETCH hands them out in
pieces. A cursor without HOLD ends with its transaction, as in PostgreSQL. Only forward
movement is supported (NEXT, FORWARD [n|ALL], n, ALL); others answer 0A000.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqld.common import sqlstate
from sqld.common.sqlstate import SqlError
from sqld.edge.rowstore import RowStore
from sqld.v1 import common_pb2

_NAME = r'(?P<name>"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
DECLARE = re.compile(r"^DECLARE\s+" + _NAME + r"\s+(?P<opts>(?:(?:BINARY|INSENSITIVE|ASENSITIVE|NO\s+SCROLL|SCROLL)\s+)*)"
                     r"CURSOR\s+(?:(?P<hold>WITH|WITHOUT)\s+HOLD\s+)?FOR\s+(?P<query>.+?)\s*;?\s*$", re.I | re.S)
FETCH = re.compile(r"^(?P<verb>FETCH|MOVE)\s+(?:(?P<dir>NEXT|ALL|FORWARD\s+ALL|FORWARD\s+\d+|FORWARD|\d+|"
                   r"PRIOR|FIRST|LAST|ABSOLUTE\s+[-+]?\d+|RELATIVE\s+[-+]?\d+|BACKWARD(?:\s+(?:ALL|\d+))?)\s+)?"
                   r"(?:(?:FROM|IN)\s+)?" + _NAME + r"\s*;?\s*$", re.I | re.S)
CLOSE = re.compile(r"^CLOSE\s+" + _NAME + r"\s*;?\s*$", re.I)


def unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


@dataclass
class Cursor:
    name: str
    result: common_pb2.ResultSet  # the columns; the rows are in `rows`
    hold: bool
    rows: RowStore
    oids: list[int] | None = None  # column types, fixed at the first FETCH


@dataclass
class Fetched:
    tag: str
    rows: list[common_pb2.Row]
    cursor: Cursor


@dataclass
class Cursors:
    open: dict[str, Cursor] = field(default_factory=dict)

    def declare(self, name: str, result: common_pb2.ResultSet, hold: bool, rows: RowStore | None = None) -> None:
        """A cursor over `result`'s rows, or over `rows` when they came streamed."""
        if name in self.open:
            if rows is not None:
                rows.close()
            raise SqlError(sqlstate.DUPLICATE_CURSOR, f'cursor "{name}" already exists')
        if rows is None:
            rows = RowStore(result.rows)
        self.open[name] = Cursor(name, common_pb2.ResultSet(columns=result.columns), hold, rows)

    def fetch(self, sql: str) -> Fetched:
        m = FETCH.match(sql.strip())
        assert m is not None
        name = unquote(m.group("name"))
        cur = self.open.get(name)
        if cur is None:
            raise SqlError(sqlstate.INVALID_CURSOR_NAME, f'cursor "{name}" does not exist')
        direction = " ".join((m.group("dir") or "NEXT").upper().split())
        if direction in ("NEXT", "FORWARD"):
            count = 1
        elif direction in ("ALL", "FORWARD ALL"):
            count = cur.rows.remaining
        elif direction.startswith("FORWARD "):
            count = int(direction.split()[1])
        elif direction.isdigit():
            count = int(direction)
        else:
            raise SqlError(sqlstate.FEATURE_NOT_SUPPORTED,
                           f"FETCH {direction} is not supported: cursors only move forward")
        rows = cur.rows.take(count)
        verb = m.group("verb").upper()
        return Fetched(f"{verb} {len(rows)}", rows if verb == "FETCH" else [], cur)

    def target(self, sql: str) -> Cursor | None:
        """The cursor a FETCH statement reads (None for MOVE or an unknown cursor)."""
        m = FETCH.match(sql.strip())
        if not m or m.group("verb").upper() != "FETCH":
            return None
        return self.open.get(unquote(m.group("name")))

    def close(self, sql: str) -> str:
        m = CLOSE.match(sql.strip())
        assert m is not None
        name = unquote(m.group("name"))
        cur = self.open.pop(name, None)
        if cur is None:
            raise SqlError(sqlstate.INVALID_CURSOR_NAME, f'cursor "{name}" does not exist')
        cur.rows.close()
        return "CLOSE CURSOR"

    def end_transaction(self) -> None:
        for name in [n for n, c in self.open.items() if not c.hold]:
            self.open.pop(name).rows.close()

    def close_all(self) -> None:
        for cur in self.open.values():
            cur.rows.close()
        self.open.clear()
