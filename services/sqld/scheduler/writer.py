"""A session's turn with its database's writer token: when a transaction takes it, how long it keeps it.

SQLite lets one connection write at a time. A transaction that starts by reading holds a
snapshot; when it later writes after another writer committed, SQLite cannot move it to
the new data and refuses (SQLITE_BUSY_SNAPSHOT, answered as 40001). Under steady writes
that happens nearly every time, so retrying alone starves such transactions. A transaction
that takes the token at its first statement (BEGIN IMMEDIATE) never meets it: so a session
whose transaction failed with 40001 begins its next one as a writer, and a session can ask
for that always (`SET sqld.begin_as_writer = on`).

The token is held until COMMIT/ROLLBACK is sent. The idle-in-transaction timeout bounds the time
between statements; `max_write_transaction_seconds` bounds the whole hold, so a client
sending a statement now and then cannot keep every other writer out: when it passes, the
running statement is interrupted and the session is ended (25P04, by the servicer).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from sqld.common.sqlstate import SERIALIZATION_FAILURE
from sqld.v1 import common_pb2


class WriterTurn:
    def __init__(self, max_hold: float, on_expired: Callable[[], None]) -> None:
        self.max_hold = max_hold          # seconds; 0 = no limit
        self.retry_as_writer = False      # the last transaction failed with 40001
        self.expired = False              # the hold passed max_hold; the session must end
        self._since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._on_expired = on_expired

    def begins_as_writer(self, asked: bool) -> bool:
        """A transaction's first statement takes the token even when it reads."""
        return asked or self.retry_as_writer

    def taken(self) -> None:
        self.retry_as_writer = False
        self._since = time.monotonic()
        if self.max_hold > 0:
            self._timer = asyncio.get_running_loop().call_later(self.max_hold, self._expire)

    def released(self) -> None:
        self._since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def time_left(self) -> float | None:
        """Seconds until the hold passes the limit (<= 0: passed); None: no token or no limit."""
        if self._since is None or self.max_hold <= 0:
            return None
        return self._since + self.max_hold - time.monotonic()

    def note(self, results: Sequence[common_pb2.StatementResult]) -> None:
        """Results of a statement inside a transaction: a 40001 makes the next one a writer."""
        if results and results[-1].HasField("error") and results[-1].error.sqlstate == SERIALIZATION_FAILURE:
            self.retry_as_writer = True

    def _expire(self) -> None:
        self._timer = None
        self.expired = True
        self._on_expired()
