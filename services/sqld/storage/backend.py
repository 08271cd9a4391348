"""What the storage servicer needs from a backend (the consumer owns the interface).

Two backends, each a folder named after it: `storage.sqlite` (a local SQLite file per
database in WAL mode, the default; a replica's databases are such files too, fed by
`storage.replica`) and `storage.mvsqlite` (SQLite pages in FoundationDB). They match these
Protocols structurally (mypy checks it where `storage.__main__` hands them to the servicer);
none inherits from them.
"""
from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Protocol

from sqld.v1 import common_pb2


class TimeTravelError(ValueError):
    """A time-travel read asked for a moment outside what the store keeps (OUT_OF_RANGE)."""


class Connection(Protocol):
    """One SQLite connection, used by one thread at a time (the servicer runs one batch at a
    time on a worker thread); only `interrupt` may be called from any thread."""

    name: str  # its database's

    @property
    def in_transaction(self) -> bool:
        """A transaction is open after the last batch (Executed.in_transaction)."""

    @property
    def session_state(self) -> bool:
        """The connection carries a session's settings or TEMP objects (Executed.session_state)."""

    @property
    def frame_no(self) -> int:
        """The replication log frame of the last commit made on this connection (0: none)."""

    release_writer: Callable[[], None] | None
    """Set by the servicer: called (on the worker thread) when the batch's last statement has
    committed in SQLite, before the commit waits for the replication log, so the next writer
    may start while this commit is logged (group commit). None: nothing to call."""

    def interrupt(self) -> None:
        """Stop the running batch, even if its first statement has not started yet (safe to
        call from any thread); it stays interrupted until reset_interrupt."""

    def reset_interrupt(self) -> None:
        """Let later batches run (called once the interrupted batch is answered)."""

    @property
    def may_inline(self) -> bool:
        """Reads may start on the servicer's event loop (`set_inline`): SQLite on a local file."""

    def set_inline(self, inline: bool) -> None:
        """The next step of `run` is on the event loop (True) or done with it (False): only
        statements of kind READ that SQLite sees as read-only run, without waiting for a lock;
        anything else, or a read past `overrun`, yields None and goes on when resumed
        (on a worker thread, after set_inline(False)) from the start of that statement."""

    def overrun(self) -> None:
        """The inline step has run too long (safe to call from any thread): its read stops
        and runs again after the hand-off."""

    def run(self, statements: Sequence[common_pb2.Statement], read_only: bool, describe_only: bool = False,
            synchronous: bool = False
            ) -> Generator[common_pb2.ResultPart | None, None, list[common_pb2.StatementResult]]:
        """Run (or only describe) statements in order; stop after the first that fails.
        Yields ResultParts while a large result is stepped (None: an inline step hands off),
        returns the results; closing the generator stops the statement. `synchronous`: a
        commit waits for a replica."""

    def close(self) -> None:
        """Roll back what is open and close."""


class Follower(Protocol):
    """A replica's follower of the replication log (storage.replica.follower)."""

    @property
    def frame_no(self) -> int:
        """The last frame applied to the local file."""

    async def admit(self, min_frame_no: int, wait_ms: int, max_staleness_ms: int) -> bool:
        """Wait (up to `wait_ms`) until a read may run: frame `min_frame_no` applied and the
        replica no staler than `max_staleness_ms`; False when it may not."""

    async def run(self) -> None:
        """Follow the log until cancelled."""


class Database(Protocol):
    """One database of the service."""

    name: str

    @property
    def follower(self) -> Follower | None:
        """A replica's follower: reads wait for it and every batch is read-only; None on a
        primary."""

    @property
    def connect_at(self) -> Callable[[int, int], Connection] | None:
        """Time travel: `connect_at(version, unix_ms)` opens a read-only connection seeing the
        database as of a version or a wall-clock time, or raises TimeTravelError; None when
        the backend keeps no old versions."""

    def connect(self) -> Connection:
        """A new connection (called on a worker thread)."""

    def close(self) -> None:
        """The service stops: stop background work (connections are closed already)."""
