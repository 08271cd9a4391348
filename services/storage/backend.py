"""What the storage servicer needs from a backend (the consumer owns the interface).

Two implementations: `storage.sqlite.backend` (a local SQLite file in WAL mode, the
default) and `storage.fdb.backend` (mvsqlite: SQLite pages in FoundationDB).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqld.v1 import common_pb2


class Connection(Protocol):
    @property
    def in_transaction(self) -> bool: ...

    # The connection carries a session's settings or TEMP objects (Executed.session_state).
    session_state: bool

    def interrupt(self) -> None:
        """Stop the running batch, even if its first statement has not started yet (safe to
        call from any thread); it stays interrupted until reset_interrupt."""

    def reset_interrupt(self) -> None:
        """Let later batches run (called once the interrupted batch is answered)."""

    def execute(self, statements: Sequence[common_pb2.Statement], read_only: bool,
                describe_only: bool = False) -> list[common_pb2.StatementResult]:
        """Run (or only describe) statements in order; stop after the first that fails."""

    def close(self) -> None:
        """Roll back what is open and close."""


class Database(Protocol):
    name: str
    path: str

    def connect(self) -> Connection:
        """A new connection (called on a worker thread)."""


class TimeTravelDatabase(Database, Protocol):
    def connect_at(self, version: int = 0, unix_ms: int = 0) -> Connection:
        """A read-only connection seeing the database as of a version or a wall-clock time."""
