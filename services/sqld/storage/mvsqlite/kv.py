"""The key-value interface the page store needs: exactly the FoundationDB semantics it uses.

Two implementations: `kv_fdb` (the `fdb` binding, production) and `testing.fdbdouble.client`
(the client of the FoundationDB test double). The page store never knows which one it
talks to. Semantics, as in FoundationDB:

- a transaction reads at one read version (a consistent snapshot);
- a non-snapshot read adds a read-conflict range (only the part actually read when a
  limit cuts the range short); a snapshot read adds none;
- mutations are buffered and sent at commit; commit fails with 1020 (not_committed) when
  a key in a read-conflict range was written by a transaction committed after the read
  version; 1007 (transaction_too_old) when the read version is more than 5 s old;
  2101 (transaction_too_large) above 10 MB of mutations and conflict ranges;
- a versionstamped key (or value) gets the commit's 10-byte versionstamp written over a
  placeholder;
- 1021 (commit_unknown_result): the commit may or may not have been applied; retrying the
  same body may apply it twice unless the body checks (commit.py does, with a commit id);
- reads do not see the transaction's own writes here (the page store never relies on it).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

TRANSACTION_TOO_OLD = 1007
FUTURE_VERSION = 1009
NOT_COMMITTED = 1020
COMMIT_UNKNOWN_RESULT = 1021
TRANSACTION_TIMED_OUT = 1031
TRANSACTION_TOO_LARGE = 2101

RETRYABLE = {TRANSACTION_TOO_OLD, FUTURE_VERSION, NOT_COMMITTED, COMMIT_UNKNOWN_RESULT, TRANSACTION_TIMED_OUT}

# FoundationDB's limits, which the page store must stay under.
MAX_TRANSACTION_BYTES = 10_000_000
MAX_TRANSACTION_SECONDS = 5.0
MAX_VALUE_BYTES = 100_000

Range = tuple[bytes, bytes, int, bool]  # begin (inclusive), end (exclusive), limit (0: none), reverse
KeyValues = list[tuple[bytes, bytes]]


class KvError(Exception):
    """A FoundationDB error, with its numeric code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{message} (FoundationDB error {code})")
        self.code = code

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


class Transaction(Protocol):
    def read_version(self) -> int:
        """The version this transaction reads at (taken on first use)."""

    def get_ranges(self, ranges: Sequence[Range], snapshot: bool = False) -> list[KeyValues]:
        """Read several ranges at the read version, in one round trip where possible."""

    def set(self, key: bytes, value: bytes) -> None: ...

    def clear(self, key: bytes) -> None: ...

    def clear_range(self, begin: bytes, end: bytes) -> None: ...

    def set_versionstamped_key(self, key: bytes, offset: int, value: bytes) -> None:
        """Write `value` at `key` with the commit's versionstamp over key[offset:offset+10]."""

    def set_versionstamped_value(self, key: bytes, value: bytes, offset: int) -> None:
        """Write `value` at `key` with the commit's versionstamp over value[offset:offset+10]."""

    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None: ...

    def commit(self) -> bytes:
        """Commit; returns the 10-byte versionstamp (b"" for a read-only transaction). Raises KvError."""


class Kv(Protocol):
    def transaction(self) -> Transaction: ...

    def close(self) -> None: ...


T = TypeVar("T")


def get(tr: Transaction, key: bytes, snapshot: bool = False) -> bytes | None:
    """One key's value at the transaction's read version."""
    kvs = tr.get_ranges([(key, key + b"\x00", 1, False)], snapshot)[0]
    return kvs[0][1] if kvs else None


def run(kv: Kv, body: Callable[[Transaction], T], attempts: int = 20) -> T:
    """Run `body` in a fresh transaction and commit, retrying retryable errors (bounded)."""
    return run_stamped(kv, body, attempts)[0]


def run_stamped(kv: Kv, body: Callable[[Transaction], T], attempts: int = 20) -> tuple[T, bytes]:
    """`run`, also returning the commit's versionstamp."""
    last: KvError | None = None
    for _ in range(attempts):
        tr = kv.transaction()
        try:
            result = body(tr)
            return result, tr.commit()
        except KvError as exc:
            if not exc.retryable:
                raise
            last = exc
            log.debug("kv retry code=%d", exc.code)
    assert last is not None
    raise last


def strinc(key: bytes) -> bytes:
    """The first key after every key that starts with `key`."""
    key = key.rstrip(b"\xff")
    if not key:
        raise ValueError("strinc: key is empty or all 0xff")
    return key[:-1] + bytes([key[-1] + 1])
