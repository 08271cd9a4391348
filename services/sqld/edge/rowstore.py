"""Rows the edge keeps for a client to read later: a cursor's (DECLARE ... FETCH) and the
rest of a portal executed with a row limit (PortalSuspended).

The rows come from the result stream as they are produced and are read back in order. Up
to MEMORY_BYTES they stay in memory, beyond that in an unnamed temporary file (PostgreSQL
keeps a holdable cursor's rows in a tuplestore that spills to disk in the same way), so a
session's memory stays bounded whatever the result size; the file goes when the store closes.
"""
from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterable

from sqld.v1 import common_pb2

MEMORY_BYTES = 8 * 1024 * 1024
SAMPLE_ROWS = 1000  # the first rows, kept for column types
_LEN = struct.Struct("!Q")


class RowStore:
    def __init__(self, rows: Iterable[common_pb2.Row] = ()) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=MEMORY_BYTES)
        self._write_at = 0
        self._read_at = 0
        self.remaining = 0
        self.total = 0
        self.sample: list[common_pb2.Row] = []
        self.add(rows)

    def add(self, rows: Iterable[common_pb2.Row]) -> None:
        f = self._file
        f.seek(self._write_at)
        for row in rows:
            if len(self.sample) < SAMPLE_ROWS:
                self.sample.append(row)
            data = row.SerializeToString()
            f.write(_LEN.pack(len(data)))
            f.write(data)
            self.remaining += 1
            self.total += 1
        self._write_at = f.tell()

    def take(self, n: int) -> list[common_pb2.Row]:
        """The next `n` rows (fewer at the end); n < 0: all that are left."""
        n = self.remaining if n < 0 else min(n, self.remaining)
        f = self._file
        f.seek(self._read_at)
        out = []
        for _ in range(n):
            (size,) = _LEN.unpack(f.read(_LEN.size))
            out.append(common_pb2.Row.FromString(f.read(size)))
        self._read_at = f.tell()
        self.remaining -= n
        if not self.remaining:  # read to the end: start the file over
            f.seek(0)
            f.truncate()
            self._read_at = self._write_at = 0
        return out

    def close(self) -> None:
        self._file.close()
