"""A database served by a replica: the local file the follower applies the log to, read by
read-only SQLite connections."""
from __future__ import annotations

import apsw

from sqld.common.applier import BUSY_TIMEOUT_MS, Applier
from sqld.storage.replica.follower import Follower
from sqld.storage.sqlite.backend import Connection, Database


class ReplicaDatabase:
    connect_at: None = None  # a replica keeps no old versions

    def __init__(self, name: str, path: str, replication: str, replica_id: str) -> None:
        self.name = name
        self.applier = Applier(path, _lock)  # repairs a half-applied batch before any reader opens
        self.follower = Follower(name, self.applier, replication, replica_id)
        self.file = Database(name, path, read_only=True)

    def connect(self) -> Connection:
        return self.file.connect()

    def close(self) -> None:
        pass  # the applier's descriptor stays open until the process ends (POSIX locks)


def _lock(path: str) -> apsw.Connection:
    """The applier's lock connection: apsw, the SQLite library this replica's readers use."""
    conn = apsw.Connection(path)
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    return conn
