"""What each replica has been sent, written and applied; waiting for a replica to apply.

Fed by the Frames streams (sent) and the replicas' Ack calls (written, applied). This is
what pg_stat_replication shows and what a synchronous commit waits on.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time


@dataclasses.dataclass
class Progress:
    replica_id: str
    database: str
    streams: int = 0
    sent: int = 0
    written: int = 0
    applied: int = 0
    log_id: str = ""
    seen: float = 0.0  # monotonic time of the last ack or send


class Replicas:
    def __init__(self) -> None:
        self._all: dict[tuple[str, str], Progress] = {}
        self._changed = asyncio.Condition()

    def get(self, database: str, replica_id: str) -> Progress:
        key = (database, replica_id)
        if key not in self._all:
            self._all[key] = Progress(replica_id, database)
        return self._all[key]

    def forget(self, database: str, replica_id: str) -> None:
        self._all.pop((database, replica_id), None)

    def of(self, database: str) -> list[Progress]:
        return sorted((p for (db, _), p in self._all.items() if db == database), key=lambda p: p.replica_id)

    async def ack(self, database: str, replica_id: str, log_id: str, written: int, applied: int) -> None:
        p = self.get(database, replica_id)
        if log_id != p.log_id:  # a new history: earlier numbers mean nothing
            p.log_id, p.sent = log_id, 0
        p.written, p.applied, p.seen = written, applied, time.monotonic()
        async with self._changed:
            self._changed.notify_all()

    async def wait_applied(self, database: str, log_id: str, frame_no: int, timeout: float) -> bool:
        """True once any replica of `database` applied `frame_no` of `log_id`; False after `timeout`."""
        def done() -> bool:
            return any(p.applied >= frame_no and p.log_id == log_id for p in self.of(database))

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(done), timeout)
                return True
            except TimeoutError:
                return False
