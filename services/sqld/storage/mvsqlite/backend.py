"""The mvsqlite backend: databases (storage.backend's shape) in the page store.

Connections are ordinary storage connections (storage.sqlite.backend.Connection) over a
SQLite connection opened through the page-store VFS, with the rollback journal in memory
(the page-store commit is atomic) and a large page cache (a cache miss is a FoundationDB
read). The VFS notes each commit in the connection's Commits, which the connection asks
after each statement, so it logs the commit before acknowledging it.
"""
from __future__ import annotations

import logging
import threading
import time

from sqld.storage.backend import TimeTravelError
from sqld.storage.mvsqlite import gc, keys
from sqld.storage.mvsqlite.capture import PageStoreCapturer
from sqld.storage.mvsqlite.kv import Kv
from sqld.storage.mvsqlite.pagestore import PageStore
from sqld.storage.mvsqlite.vfs import VFS_NAME, Commits, PageStoreVFS
from sqld.storage.sqlite.backend import Connection

log = logging.getLogger(__name__)

CACHE_KIB = 65_536  # per connection

class MvDatabase:
    """One database in the page store (namespace `store.ns`)."""

    follower: None = None  # replicas of an mvsqlite primary are local files (storage.replica)

    def __init__(self, name: str, store: PageStore, vfs: PageStoreVFS, retention_seconds: float,
                 replication: str = "", synchronous: bool = False) -> None:
        """With a `replication` address, every commit is logged there before it is
        acknowledged (storage/mvsqlite/capture.py); `synchronous`: and applied by a replica."""
        self.name = name
        self.path = f"{VFS_NAME}:{store.ns.hex()}"
        self.store = store
        self.vfs = vfs
        self.retention_seconds = retention_seconds
        self.synchronous = synchronous
        self.capturer: PageStoreCapturer | None = None
        if replication:
            self.capturer = PageStoreCapturer(name, store, replication)
            self.capturer.start()

    def close(self) -> None:
        """Stop capturing; the pages live in FoundationDB, connections close themselves."""
        if self.capturer is not None:
            self.capturer.close()

    def _connect(self, version: int | None) -> Connection:
        commits = Commits()
        conn = self.vfs.open(self.name, version, commits)
        if version is not None:
            conn.execute("PRAGMA query_only=1")  # writes fail with SQLITE_READONLY (25006)
        conn.execute(f"PRAGMA journal_mode=MEMORY; PRAGMA cache_size=-{CACHE_KIB}")
        return Connection(self.name, conn, self.capturer, self.synchronous, committed=commits.take)

    def connect(self) -> Connection:
        return self._connect(None)

    def connect_at(self, version: int = 0, unix_ms: int = 0) -> Connection:
        """A read-only connection that sees the database as of `version` or time `unix_ms`."""
        if unix_ms:
            if unix_ms < (time.time() - self.retention_seconds) * 1000:
                raise TimeTravelError(f"time travel to {unix_ms} ms: older than the retention window "
                                      f"({self.retention_seconds:.0f}s); ask for a later time")
            version = self.store.version_at(unix_ms)
            if not version:
                raise TimeTravelError(f"time travel to {unix_ms} ms: the database has no commit that old")
        if not version:
            raise TimeTravelError("time travel: give a version or a time")
        return self._connect(version)


def open_databases(kv: Kv, names: list[str], prefix: str, retention_seconds: float,
                   gc_interval: float, replication: str = "",
                   synchronous: tuple[str, ...] = ()) -> dict[str, MvDatabase]:
    """Databases for `names`, the VFS registered over them, and a GC thread if asked."""
    stores = {name: PageStore(kv, keys.namespace(prefix, name)) for name in names}
    vfs = PageStoreVFS(stores)
    databases = {name: MvDatabase(name, store, vfs, retention_seconds, replication, name in synchronous)
                 for name, store in stores.items()}
    _VFS_KEEPALIVE.append(vfs)
    if gc_interval > 0:
        def loop() -> None:
            while True:
                time.sleep(gc_interval)  # a background period, not a readiness wait
                for db in databases.values():
                    try:
                        gc.collect(db.store, retention_seconds)
                    except Exception as exc:  # noqa: BLE001 - GC must never stop serving
                        log.warning("gc failed db=%s err=%s", db.name, exc)
        threading.Thread(target=loop, name="mvsqlite-gc", daemon=True).start()
    return databases


_VFS_KEEPALIVE: list[PageStoreVFS] = []  # apsw unregisters a VFS when it is collected
