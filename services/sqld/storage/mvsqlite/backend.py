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
from sqld.storage.mvsqlite import catalog, gc
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
    space: MvSpace | None = None  # the page store's databases it belongs to

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


class MvSpace:
    """The databases of one page store (a cluster and a namespace prefix): its list
    (catalog.py), the VFS that serves them, and the GC thread over them. `databases` is
    what is open here; the list in FoundationDB is what exists (other processes change it).
    The methods that change the list block (FoundationDB calls): run them on a worker thread."""

    def __init__(self, kv: Kv, prefix: str, retention_seconds: float, replication: str = "",
                 synchronous: tuple[str, ...] = ()) -> None:
        self.kv = kv
        self.prefix = prefix
        self.retention_seconds = retention_seconds
        self.replication = replication
        self.synchronous = synchronous
        self.vfs = PageStoreVFS({})
        _VFS_KEEPALIVE.append(self.vfs)
        self.databases: dict[str, MvDatabase] = {}

    def open(self, name: str, ns: bytes) -> MvDatabase:
        store = PageStore(self.kv, ns, entry_key=catalog.entry_key(self.prefix, name))
        self.vfs.stores[name] = store
        db = MvDatabase(name, store, self.vfs, self.retention_seconds, self.replication, name in self.synchronous)
        db.space = self
        self.databases[name] = db
        return db

    def forget(self, name: str) -> None:
        """`name` is no longer served here (it was dropped); close it first."""
        self.databases.pop(name, None)
        self.vfs.stores.pop(name, None)

    def listed(self) -> dict[str, bytes]:
        return catalog.listing(self.kv, self.prefix)

    def version_for(self, source: MvDatabase, unix_ms: int) -> int:
        """The version of `source` a restore to time `unix_ms` copies (TimeTravelError: none)."""
        if unix_ms < (time.time() - self.retention_seconds) * 1000:
            raise TimeTravelError(f"restore to {unix_ms} ms: older than the retention window "
                                  f"(storage --fdb-retention-seconds {self.retention_seconds:g})")
        version = source.store.version_at(unix_ms)
        if not version or version < source.store.horizon():
            raise TimeTravelError(f"restore to {unix_ms} ms: database {source.name} has no commit that old "
                                  "inside the retention window")
        return version

    def version_for_frame(self, source: MvDatabase, frame_no: int) -> int:
        """The version of `source` a restore to frame `frame_no` of its replication log copies:
        its newest commit whose frames end at or before `frame_no` (capture.py notes them),
        inside the retention window (TimeTravelError: none)."""
        if source.capturer is None:
            raise TimeTravelError("restore by frame number (AS_OF_FRAME): frame numbers are the replication "
                                  "log's, and this storage has no --replication; restore by time (AS_OF_TIME)")
        version, log_id = source.capturer.version_of_frame(frame_no)
        edge = source.store.version_at(int((time.time() - self.retention_seconds) * 1000))
        if not version or version < max(edge, source.store.horizon()):
            raise TimeTravelError(
                f"restore to frame {frame_no}: database {source.name} has no commit ending at or before that frame "
                f"inside the retention window (storage --fdb-retention-seconds {self.retention_seconds:g}) "
                f"in its replication history {log_id}; ask for a later frame or restore by time (AS_OF_TIME)")
        return version

    def create(self, name: str, source: MvDatabase | None = None, version: int = 0) -> MvDatabase:
        """A new database (catalog.Exists: the name is listed), empty or a copy of `source`
        as of `version` (its latest commit when 0)."""
        if catalog.lookup(self.kv, self.prefix, name) is not None:
            raise catalog.Exists(name)
        ns = catalog.new_namespace()
        try:
            if source is not None:
                catalog.copy(source.store, PageStore(self.kv, ns), version or source.store.current_version())
            catalog.add(self.kv, self.prefix, name, ns)
        except BaseException:
            catalog.clear(self.kv, ns)
            raise
        return self.open(name, ns)

    def drop(self, name: str) -> bool:
        """Take `name` out of the list and clear its keys (False: it was not listed)."""
        return catalog.remove(self.kv, self.prefix, name) is not None

    def start_gc(self, interval: float) -> None:
        def loop() -> None:
            while True:
                time.sleep(interval)  # a background period, not a readiness wait
                for name, store in list(self.vfs.stores.items()):
                    try:
                        gc.collect(store, self.retention_seconds)
                    except Exception as exc:  # noqa: BLE001 - GC must never stop serving
                        log.warning("gc failed db=%s err=%s", name, exc)
        threading.Thread(target=loop, name="mvsqlite-gc", daemon=True).start()


def open_databases(kv: Kv, names: list[str], prefix: str, retention_seconds: float,
                   gc_interval: float, replication: str = "",
                   synchronous: tuple[str, ...] = ()) -> dict[str, MvDatabase]:
    """Every database of the page store's list, and `names` (entered in the list when it
    lacks them); the VFS registered over them, and a GC thread if asked."""
    space = MvSpace(kv, prefix, retention_seconds, replication, synchronous)
    listed = space.listed()
    for name in names:
        if name not in listed:
            listed[name] = catalog.ensure(kv, prefix, name)
    for name, ns in sorted(listed.items()):
        space.open(name, ns)
    if gc_interval > 0:
        space.start_gc(gc_interval)
    return dict(space.databases)


_VFS_KEEPALIVE: list[PageStoreVFS] = []  # apsw unregisters a VFS when it is collected
