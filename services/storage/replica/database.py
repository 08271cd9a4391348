"""A database served by a replica: read-only SQLite connections over the applied file."""
from __future__ import annotations

import apsw

from storage.replica.applier import Applier
from storage.replica.follower import Follower
from storage.sqlite.backend import Connection


class ReplicaDatabase:
    capturer = None
    synchronous = False
    open_flags = apsw.SQLITE_OPEN_READONLY

    def __init__(self, name: str, path: str, replication: str, replica_id: str) -> None:
        self.name = name
        self.path = path
        self.applier = Applier(path)  # repairs a half-applied batch before any reader opens
        self.follower = Follower(name, self.applier, replication, replica_id)

    def connect(self) -> Connection:
        return Connection(self)  # type: ignore[arg-type]

    def close(self) -> None:
        pass  # the applier's descriptor stays open until the process ends (POSIX locks)
