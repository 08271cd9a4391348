"""An apsw VFS whose main database files live in the page store.

SQLite's lock levels map to page-store transactions: taking SHARED picks a snapshot version
(one consistent read version for the whole SQLite transaction); RESERVED starts buffering
written pages in memory; xSync at commit writes them to the page store in one atomic
commit (commit.py); dropping below RESERVED discards what was not committed. Journals are
not needed (the page store commit is atomic): connections use `journal_mode=MEMORY`.
Temporary files (sorts, temp tables) go to the default VFS.

A file opened as "<db>@<version>" reads at that fixed version and refuses writes (time travel).

Conflicts: the conflict set is every page read or written by the SQLite transaction. SQLite
keeps its page cache across transactions while page 1's change counter is unchanged, and
would then use pages without reading them; so each transaction is shown a change counter of
its own (the real one is restored at commit), SQLite re-reads what it uses, and those
re-reads are served from memory.
"""
from __future__ import annotations

import itertools
import logging
import struct
import threading
import time

import apsw

from sqld.storage.mvsqlite import commit as committer
from sqld.storage.mvsqlite.pagestore import PageStore

log = logging.getLogger(__name__)

VFS_NAME = "mvsqlite"
PAGE_SIZE = 4096
READ_AHEAD = 32      # pages fetched together on a miss (sequential scans)
INDEX_MAX_AGE = 30.0  # seconds a page index may be advanced by the changelog (GC keeps more)
# SQLITE_IOERR with an extended code of our own: the page-store commit met a conflict.
# storage/sqlite/errors.py maps it to SQLSTATE 40001.
IOERR_PAGE_CONFLICT = apsw.SQLITE_IOERR | (250 << 8)
_NONE, _SHARED, _RESERVED = apsw.SQLITE_LOCK_NONE, apsw.SQLITE_LOCK_SHARED, apsw.SQLITE_LOCK_RESERVED


class PageConflictError(apsw.IOError):
    pass


class Commits:
    """The page-store commits made through one connection's main file: SQLite commits inside
    a statement (xSync), and the connection takes the version after each statement."""

    def __init__(self) -> None:
        self.version = 0

    def take(self) -> int:
        """The version committed since the last take (0: none)."""
        version, self.version = self.version, 0
        return version


class PageFile:
    """The main database file of one connection."""

    def __init__(self, store: PageStore, fixed_version: int | None, commits: Commits) -> None:
        self.store = store
        self.fixed_version = fixed_version
        self.commits = commits
        self.lock = _NONE
        self.snapshot = 0
        self.count = 0                 # page count at the snapshot
        self.size = 0                  # page count including this transaction's writes
        self.snapshot_time = 0.0
        self.index: dict[int, bytes] = {}  # page → hash, valid at the snapshot
        self.epoch = 1                     # the change counter SQLite sees
        self.dirty: dict[int, bytes] = {}
        self.conflict_set: set[int] = set()
        self.base_page1: bytes | None = None
        self.failed = False

    # -- snapshots ----------------------------------------------------------------------
    def _begin_read(self) -> None:
        """A new SQLite transaction: a new snapshot, and a new change counter shown to SQLite
        so that it re-reads (through xRead) every page it uses: that makes the conflict set
        exact. Re-reads are served from `index` (page → hash, kept valid across snapshots by
        the changelog) and the process-wide image cache."""
        version = self.fixed_version or self.store.current_version()
        fresh = time.monotonic() - self.snapshot_time < INDEX_MAX_AGE
        if self.snapshot and version != self.snapshot and fresh:
            changed, count = self.store.changes(self.snapshot, version)
            for pgno in changed:
                self.index.pop(pgno, None)
            if count is not None:
                self.count = count
        elif version != self.snapshot or not fresh:
            self.index.clear()
            self.count = self.store.page_count(version)
        self.snapshot = version
        self.snapshot_time = time.monotonic()
        self.size = self.count
        self.conflict_set = set()
        self.epoch = (self.epoch + 2) & 0xFFFFFFFF

    def _stored(self, pgno: int) -> bytes:
        digest = self.index.get(pgno)
        if digest is not None:
            return self.store.image(digest)
        # Read ahead: the next pages not yet indexed come in the same two round trips.
        wanted = [p for p in range(pgno, min(pgno + READ_AHEAD, max(self.count, pgno) + 1)) if p not in self.index]
        found = self.store.read_pages(wanted, self.snapshot)
        for p, (d, _) in found.items():
            self.index[p] = d
        return found[pgno][1] if pgno in found else b""

    def _page(self, pgno: int) -> bytes:
        if pgno in self.dirty:
            return self.dirty[pgno]
        self.conflict_set.add(pgno)
        data = self._stored(pgno)
        if pgno == 1 and data:
            counter = struct.pack(">I", self.epoch)
            valid_for = counter if data[92:96] == data[24:28] else data[92:96]
            data = data[:24] + counter + data[28:92] + valid_for + data[96:]
        return data

    # -- the VFSFile methods SQLite calls --------------------------------------------------
    def xRead(self, amount: int, offset: int) -> bytes:  # noqa: N802
        out = bytearray()
        end = min(offset + amount, self.size * PAGE_SIZE)
        while offset < end:
            pgno, within = divmod(offset, PAGE_SIZE)
            data = self._page(pgno + 1)
            chunk = data[within:within + min(end - offset, PAGE_SIZE - within)]
            if not chunk:
                break
            out += chunk
            offset += len(chunk)
        return bytes(out)

    def xWrite(self, data: bytes, offset: int) -> None:  # noqa: N802
        if self.fixed_version is not None:
            raise apsw.ReadOnlyError("time-travel connections are read-only")
        if self.failed:
            return
        while data:
            pgno, within = divmod(offset, PAGE_SIZE)
            pgno += 1
            n = min(len(data), PAGE_SIZE - within)
            if within == 0 and n == PAGE_SIZE:
                page = bytes(data[:n])
            else:
                old = self._page(pgno) if pgno <= self.size else b""
                page = bytes(old.ljust(PAGE_SIZE, b"\x00")[:within] + data[:n]
                             + old.ljust(PAGE_SIZE, b"\x00")[within + n:])
            if pgno == 1 and self.base_page1 is None:
                self.base_page1 = self._stored(1) or None
            self.dirty[pgno] = page
            self.size = max(self.size, pgno)
            data, offset = data[n:], offset + n

    def xTruncate(self, newsize: int) -> None:  # noqa: N802
        if self.failed:
            return
        self.size = (newsize + PAGE_SIZE - 1) // PAGE_SIZE
        for pgno in [p for p in self.dirty if p > self.size]:
            del self.dirty[pgno]

    def xFileSize(self) -> int:  # noqa: N802
        return self.size * PAGE_SIZE

    def xSync(self, flags: int) -> None:  # noqa: N802
        if self.dirty and not self.failed:
            self._commit()

    def _new_count(self) -> int:
        """The page count this commit leaves. A shrinking commit (VACUUM, incremental vacuum)
        truncates the file only after xSync; its page 1 already holds the new size."""
        page1 = self.dirty.get(1)
        if page1 is not None and page1[92:96] == page1[24:28]:
            in_header = struct.unpack(">I", page1[28:32])[0]
            if 0 < in_header < self.size:
                return in_header
        return self.size

    def _commit(self) -> None:
        count = self._new_count()
        pages = {p: data for p, data in self.dirty.items() if p <= count}
        try:
            version, digests, count = committer.commit(self.store, self.snapshot, set(self.conflict_set), pages,
                                                self.count, count, self.base_page1)
        except committer.Conflict as exc:
            self.failed = True
            self._discard()
            log.debug("commit conflict: %s", exc)
            err = PageConflictError(f"could not serialize access due to concurrent update: {exc}")
            err.extendedresult = IOERR_PAGE_CONFLICT  # type: ignore[attr-defined]
            raise err from exc
        except committer.Dropped as exc:
            self.failed = True
            self._discard()
            gone = apsw.IOError(str(exc))
            gone.extendedresult = apsw.SQLITE_IOERR_FSYNC  # type: ignore[attr-defined]  # → 58030 (sqlite/errors.py)
            raise gone from exc
        # Move the page index to the commit version: drop what others committed meanwhile.
        changed, _ = self.store.changes(self.snapshot, version)
        for pgno in changed:
            self.index.pop(pgno, None)
        self.index.update(digests)
        self._discard()
        self.snapshot = version
        self.count = self.size = count
        self.commits.version = version

    def _discard(self) -> None:
        self.dirty.clear()
        self.base_page1 = None

    def xLock(self, level: int) -> None:  # noqa: N802
        if self.lock == _NONE and level >= _SHARED:
            self._begin_read()
        self.lock = max(self.lock, level)

    def xUnlock(self, level: int) -> None:  # noqa: N802
        if level < _RESERVED and self.lock >= _RESERVED:
            if self.dirty and not self.failed:
                log.error("unlock with uncommitted pages: discarding %d pages", len(self.dirty))
            self._discard()
            self.failed = False
            self.size = self.count
        self.lock = level

    def xCheckReservedLock(self) -> bool:  # noqa: N802
        return False

    def xFileControl(self, op: int, ptr: int) -> bool:  # noqa: N802
        return False

    def xSectorSize(self) -> int:  # noqa: N802
        return PAGE_SIZE

    def xDeviceCharacteristics(self) -> int:  # noqa: N802
        return apsw.SQLITE_IOCAP_ATOMIC4K | apsw.SQLITE_IOCAP_SAFE_APPEND | apsw.SQLITE_IOCAP_SEQUENTIAL

    def xClose(self) -> None:  # noqa: N802
        self._discard()


class PageStoreVFS(apsw.VFS):
    """Registers VFS_NAME (a second one in the process: VFS_NAME-2, ...; SQLite finds a VFS
    by name); `stores` maps a database name to its page store."""

    _registered = itertools.count(1)

    def __init__(self, stores: dict[str, PageStore]) -> None:
        self.stores = stores
        self._opening_lock = threading.Lock()
        self._opening = Commits()  # handed to the main file that xOpen opens next
        n = next(self._registered)
        self.vfs_name = VFS_NAME if n == 1 else f"{VFS_NAME}-{n}"
        super().__init__(self.vfs_name, base="")

    def open(self, name: str, version: int | None, commits: Commits) -> apsw.Connection:
        """A SQLite connection to database `name` (read-only, at `version`, when given) whose
        page-store commits are noted in `commits`. SQLite opens the main file inside
        apsw.Connection, on this thread: the lock keeps `commits` for that xOpen."""
        with self._opening_lock:
            self._opening = commits
            try:
                if version is None:
                    return apsw.Connection(name, vfs=self.vfs_name)
                return apsw.Connection(f"{name}@{version}", vfs=self.vfs_name, flags=apsw.SQLITE_OPEN_READONLY)
            finally:
                self._opening = Commits()

    def _store(self, name: str | None) -> tuple[PageStore, int | None] | None:
        if not name:
            return None
        db, _, at = name.lstrip("/").partition("@")
        if at and not at.isdigit():
            return None
        store = self.stores.get(db)
        return (store, int(at) if at else None) if store is not None else None

    def xOpen(self, name, flags):  # noqa: N802
        filename = name.filename() if isinstance(name, apsw.URIFilename) else name
        found = self._store(filename)
        if found is not None and flags[0] & apsw.SQLITE_OPEN_MAIN_DB:
            return PageFile(*found, self._opening)
        return apsw.VFSFile("", name, flags)

    def _side_file(self, name: str) -> bool:
        """A journal, WAL or shm name of one of our databases (they never exist)."""
        base, dash, suffix = name.lstrip("/").rpartition("-")
        return bool(dash) and suffix in ("journal", "wal", "shm") and self._store(base) is not None

    def xAccess(self, pathname: str, flags: int) -> bool:  # noqa: N802
        if self._store(pathname) is not None:
            return flags == apsw.SQLITE_ACCESS_EXISTS
        if self._side_file(pathname):
            return False
        return super().xAccess(pathname, flags)

    def xFullPathname(self, name: str) -> str:  # noqa: N802
        if self._store(name) is not None:
            return "/" + name.lstrip("/")
        return super().xFullPathname(name)

    def xDelete(self, filename: str, syncdir: bool) -> None:  # noqa: N802
        if self._side_file(filename):
            return
        super().xDelete(filename, syncdir)
