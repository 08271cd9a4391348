"""The writer queue of each database: one FIFO turn to write, shared by every scheduler.

SQLite lets one connection write at a time; a second one waits in the busy handler and
fails with 'database is locked' after the busy timeout, in no particular order. Every
writer of a database passes through its primary storage, whichever site's scheduler
sent it, so the queue lives here: a Connect stream asks for the writer with
`Execute.take_writer`, waits its turn (FIFO, bounded by `writer_wait_ms`, ended by an
Interrupt), and keeps it until its transaction ends or the stream ends.
"""
from __future__ import annotations

import asyncio

from sqld.common.sqlstate import LOCK_NOT_AVAILABLE
from sqld.v1 import common_pb2


class WriterQueue:
    """One database's writer: a FIFO lock that a connection (its stream) holds."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._lock = asyncio.Lock()  # FIFO; a cancelled waiter leaves the queue
        self.holder: object | None = None

    async def take(self, holder: object, wait_ms: int) -> common_pb2.StatementError | None:
        """Wait for the writer; None when `holder` has it, else why not (55P03). Raises
        CancelledError when the wait is cancelled (an Interrupt; the caller answers 57014)."""
        if self.holder is holder:
            return None
        try:
            if wait_ms and self._lock.locked():
                await asyncio.wait_for(self._lock.acquire(), wait_ms / 1000)
            else:
                await self._lock.acquire()
        except TimeoutError:
            return common_pb2.StatementError(
                sqlstate=LOCK_NOT_AVAILABLE, message=f"could not obtain the write lock on database {self.database} "
                f"within {wait_ms / 1000:.0f}s: another transaction holds it")
        self.holder = holder
        return None

    def release(self, holder: object) -> None:
        """`holder`'s transaction ended (or its connection closed): the next writer's turn."""
        if self.holder is holder:
            self.holder = None
            self._lock.release()
