"""The production KV: FoundationDB through the `fdb` binding (PyPI `foundationdb`).

Kept thin on purpose: the binding and libfdb_c cannot be installed on the build machines,
so everything above this module is exercised against the test double. Imports `fdb` lazily.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from sqld.storage.mvsqlite.kv import KeyValues, KvError, Range

API_VERSION = 710


def _error(exc: Any, op: str) -> KvError:
    return KvError(int(getattr(exc, "code", 4100)), f"{op}: {exc}")


class FdbTransaction:
    def __init__(self, tr: Any, fdb: Any) -> None:
        self._tr = tr
        self._fdb = fdb
        self._writes = False  # FoundationDB has no versionstamp for a read-only transaction

    def read_version(self) -> int:
        try:
            return int(self._tr.get_read_version().wait())
        except self._fdb.FDBError as exc:
            raise _error(exc, "get read version") from exc

    def get_ranges(self, ranges: Sequence[Range], snapshot: bool = False) -> list[KeyValues]:
        source = self._tr.snapshot if snapshot else self._tr
        try:
            futures = [source.get_range(b, e, limit=limit, reverse=rev) for b, e, limit, rev in ranges]
            return [[(bytes(kv.key), bytes(kv.value)) for kv in f] for f in futures]
        except self._fdb.FDBError as exc:
            raise _error(exc, "read") from exc

    def set(self, key: bytes, value: bytes) -> None:
        self._writes = True
        self._tr.set(key, value)

    def clear(self, key: bytes) -> None:
        self._writes = True
        self._tr.clear(key)

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._writes = True
        self._tr.clear_range(begin, end)

    # API version >= 520: the placeholder's offset follows the key (or value), 4 bytes little-endian.
    def set_versionstamped_key(self, key: bytes, offset: int, value: bytes) -> None:
        self._writes = True
        self._tr.set_versionstamped_key(key + struct.pack("<I", offset), value)

    def set_versionstamped_value(self, key: bytes, value: bytes, offset: int) -> None:
        self._writes = True
        self._tr.set_versionstamped_value(key, value + struct.pack("<I", offset))

    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._tr.add_read_conflict_range(begin, end)

    def commit(self) -> bytes:
        try:
            # Asked before commit, ready after it; an error for a read-only transaction.
            stamp = self._tr.get_versionstamp() if self._writes else None
            self._tr.commit().wait()
            return bytes(stamp.wait()) if stamp is not None else b""
        except self._fdb.FDBError as exc:
            raise _error(exc, "commit") from exc


class FdbKv:
    """A FoundationDB database opened from a cluster file."""

    def __init__(self, cluster_file: str) -> None:
        try:
            import fdb
        except ImportError as exc:
            raise SystemExit("storage: --backend mvsqlite needs the FoundationDB binding: "
                             "pip install foundationdb, and libfdb_c from foundationdb.org") from exc
        fdb.api_version(API_VERSION)
        self._fdb = fdb
        self._db = fdb.open(cluster_file or None)

    def transaction(self) -> FdbTransaction:
        return FdbTransaction(self._db.create_transaction(), self._fdb)

    def close(self) -> None:
        pass
