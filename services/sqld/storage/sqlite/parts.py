"""Cutting a statement's rows into ResultPart messages (common.proto), so results flow in
bounded pieces: at most PART_BYTES of values per part, a value bigger than that split over
several parts (`continues`). No I/O here: the backend yields the parts, the servicer writes them.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqld.common.values import to_value
from sqld.v1 import common_pb2

PART_BYTES = 256 * 1024  # values per part (text counted in characters)


def size(x: Any) -> int:
    return len(x) if isinstance(x, (str, bytes)) else 9


def row(values: Sequence[Any]) -> common_pb2.Row:
    return common_pb2.Row(values=[to_value(x) for x in values])


class Rows:
    """One statement's rows on their way out: `add` returns the parts that became full."""

    def __init__(self, statement: int, columns: Sequence[common_pb2.Column]) -> None:
        self.statement = statement
        self.columns = columns
        self.rows: list[common_pb2.Row] = []
        self.bytes = 0
        self.sent = 0  # parts sent so far

    def _part(self, continues: bool = False) -> common_pb2.ResultPart:
        part = common_pb2.ResultPart(statement=self.statement, rows=self.rows, continues=continues,
                                     columns=self.columns if not self.sent else ())
        self.rows, self.bytes = [], 0
        self.sent += 1
        return part

    def add(self, values: Sequence[Any]) -> Sequence[common_pb2.ResultPart]:
        n = 0
        for x in values:
            n += len(x) if isinstance(x, (str, bytes)) else 9
        if self.bytes + n <= PART_BYTES:  # the common case: no part is full
            self.rows.append(row(values))
            self.bytes += n
            return ()
        full = [self._part()] if self.rows else []
        if n <= PART_BYTES:
            self.rows.append(row(values))
            self.bytes = n
            return full
        return full + list(self._split(values))

    def _split(self, values: Sequence[Any]) -> Iterator[common_pb2.ResultPart]:
        """A row bigger than a part: cut its large values (by offsets, never copying the rest)."""
        current: list[Any] = []
        room = PART_BYTES
        for x in values:
            if isinstance(x, (str, bytes)) and len(x) > room:
                start = 0
                while len(x) - start > room:
                    cut = max(room, 1)
                    current.append(x[start:start + cut])
                    start += cut
                    self.rows = [row(current)]
                    yield self._part(continues=True)
                    current, room = [], PART_BYTES
                x = x[start:] if start else x
            current.append(x)
            room -= size(x)
        self.rows, self.bytes = [row(current)], PART_BYTES - room

    def final(self, result: common_pb2.StatementResult) -> common_pb2.ResultPart:
        """The statement's last part: the rows left and its outcome."""
        part = self._part()
        part.result.CopyFrom(result)
        return part

    def take(self) -> list[common_pb2.Row]:
        """The rows collected so far (a statement that never needed a part keeps them in its result)."""
        rows, self.rows, self.bytes = self.rows, [], 0
        return rows


def done(statement: int, result: common_pb2.StatementResult) -> common_pb2.ResultPart:
    """A part that carries a whole statement's outcome (a result that fit in one part)."""
    return common_pb2.ResultPart(statement=statement, result=result,
                                 columns=result.ok.columns if result.HasField("ok") else ())


def stripped(result: common_pb2.StatementResult) -> common_pb2.StatementResult:
    """The result as Executed lists it once its rows went out in parts."""
    if not (result.HasField("ok") and result.ok.rows):
        return result
    ok = result.ok
    return common_pb2.StatementResult(notices=result.notices, ok=common_pb2.ResultSet(
        columns=ok.columns, rows_affected=ok.rows_affected, last_insert_rowid=ok.last_insert_rowid,
        total_changes=ok.total_changes))
