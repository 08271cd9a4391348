"""Frame capture on the storage primary: every commit's WAL frames logged before it is acknowledged.

Automatic checkpoints are off (`wal_autocheckpoint=0`, no checkpoint on close), so frames
stay in the -wal file until we checkpoint. After each commit (apsw's WAL hook, on the
committing thread, before the Executed answer is sent) `capture` reads the WAL from where
it stopped, validates salts and checksums, numbers the committed frames and appends them
to the replication service, which makes them durable. When the WAL header shows new
salts, SQLite restarted the WAL: reading starts again at offset 32.

Checkpoints: once the WAL is large, a dedicated connection takes the write lock
(BEGIN IMMEDIATE, no waiting), captures whatever committed meanwhile, and a second one
checkpoints PASSIVE; only then may SQLite restart the WAL, so no frame is ever
checkpointed away before it is logged. At start-up the frames the log lacks are
recovered from the WAL; a database whose log id differs from the service's (or that
the service has never seen) starts a new history with an image of the whole database.

The log can also move while we run (the replication service lost its data, or was
restored from a backup): an Append answers LOG_ID_MISMATCH or FRAME_GAP. Then, holding
the write lock, we say Hello again and, unless the log is exactly where we left it,
start a new history there and then. The commit that met the problem is in the image,
so it is acknowledged as usual.

The chain (`common.log_chain`): we keep the chain value of the last transaction we logged
and every Append continues it. When the log holds something else where we continue
(Append answers LOG_FORKED; or Hello shows, in our history, a head beyond ours or our head
with another chain; or, at start-up, a history written by another primary id), the log was
forged or another primary writes it: we stop acknowledging commits (each answers a
CaptureError naming the problem and the way out), log it at ERROR once, and leave the
frames in the WAL (no capture moves past them, no checkpoint). Nothing new is started
automatically: that would hide a forgery from the operator and let two primaries reset each
other's log in turn. The way out is a new log id (ResetLog with if_log_id, by the operator):
the next commit then starts a new history, as for any log id change. Our id is a random
one kept in `<db>-primaryid`. A fork is remembered across restarts (`<db>-forked`: the
log id and the message) until that log id is gone. Otherwise, at start-up we have no memory
of our chain: a history with our id is taken at its word (authentication is what keeps
others from appending).

A new history: with the write lock held (BEGIN IMMEDIATE on our own connection), the
image is read through SQLite (`serialize`: every page of the latest commit, from the
file or the WAL, whatever readers keep SQLite from checkpointing), and the capture
position moves to the WAL's last commit, all of which the image holds. ResetLog is
conditional (`if_log_id`: the log we saw in Hello), and the image is appended with that
position, so a restart resumes from it.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import apsw
import grpc

from sqld.common.durable import write_atomic
from sqld.storage import metrics
from sqld.storage.capture import wal
from sqld.storage.capture.log_client import (
    PART_BYTES,
    CaptureError,
    LogClient,
    LogForked,
    LogMoved,
    chain,
    forked_message,
)
from sqld.v1 import replication_pb2 as pb

log = logging.getLogger(__name__)
T = TypeVar("T")

CHECKPOINT_BYTES = 4 << 20  # checkpoint once the WAL is larger than this
LOCK_WAIT_MS = 10_000       # how long a new history waits for the write lock
BROKEN_RETRY_SECONDS = 5.0  # while replication is broken, how often a commit tries again
_RESYNC_ATTEMPTS = 5

__all__ = ["Capturer", "CaptureError", "LogForked", "ReplicationBroken", "no_auto_checkpoint"]


class ReplicationBroken(CaptureError):
    """Commits cannot be logged now (the reason was said at ERROR once); retried later."""


def no_auto_checkpoint(conn: apsw.Connection) -> None:
    """Every connection to a captured database: we alone decide when to checkpoint."""
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)


class Capturer:
    def __init__(self, name: str, path: str, target: str) -> None:
        self.name = name
        self.path = path
        self.wal_path = path + "-wal"
        self.id_path = path + "-logid"
        self.forked_path = path + "-forked"
        self._client = LogClient(name, target)
        self.primary_id = self._client.primary_id = _primary_id(path + "-primaryid")
        self.chain = b""       # chain value of the last logged transaction
        self.forked = ""       # why commits are not acknowledged ("" while the log follows us)
        self.broken = ""       # why logging failed otherwise ("" while it works); retried
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self.log_id = ""
        self.frame_no = 0      # last logged frame
        self.page_size = 0
        self._salts = (0, 0)
        self._offset = 0       # next WAL offset to read (0: no WAL generation seen yet)
        self._sum = (0, 0)
        self._writer: apsw.Connection | None = None  # both opened by start
        self._checkpointer: apsw.Connection | None = None
        self._checkpoint_at = CHECKPOINT_BYTES
        # The database file and its -shm are read outside SQLite through descriptors kept open
        # until close (see HeldOpen): closing one would drop this process's SQLite locks.
        self._db_file = HeldOpen(path)
        self._shm_file = HeldOpen(path + "-shm")

    # -- start-up ------------------------------------------------------------------
    def start(self) -> None:
        """Hello, then either recover uncaptured frames from the WAL or start a new history."""
        hello = self._client.hello()
        local = open(self.id_path).read().strip() if os.path.exists(self.id_path) else ""
        self._writer = apsw.Connection(self.path)
        self._checkpointer = checkpointer = apsw.Connection(self.path)
        for c in (self._writer, self._checkpointer):
            no_auto_checkpoint(c)
        # a read makes SQLite check the wal-index (-shm): from now on `_trusted` may use it
        checkpointer.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        if not hello.log_id or local != hello.log_id:
            try:
                self._write_locked(lambda: self._new_history(hello.log_id, False))
            except (CaptureError, wal.WalError) as exc:
                self._break(f"new history: {exc}")
                return  # storage serves; commits answer the error until logging works again
        else:
            self.log_id, self.frame_no, self.page_size = hello.log_id, hello.head_frame_no, hello.page_size
            self.chain = hello.head_chain
            p = hello.wal_position
            self._salts, self._offset, self._sum = (p.salt1, p.salt2), p.offset, (p.checksum1, p.checksum2)
            remembered = open(self.forked_path).read().split("\n", 1) if os.path.exists(self.forked_path) else []
            if len(remembered) == 2 and remembered[0] == hello.log_id:
                self.forked = remembered[1]
                log.error("%s", self.forked)
                return  # storage serves; commits answer the error until the log is reset
            if hello.primary_id and hello.primary_id != self.primary_id:
                self._fork(f"history {hello.log_id} is written by primary {hello.primary_id!r}, "
                           f"not by this one ({self.primary_id!r})")
                return  # storage serves; commits answer the error until the log is reset
            before = self.frame_no
            try:
                self.capture()
            except CaptureError:
                return  # forked or broken (said at ERROR): storage serves, commits answer the error
            if self.frame_no > before:
                log.info("recovered frames from the wal db=%s frames=%d..%d", self.name, before + 1, self.frame_no)
        log.info("capturing db=%s log_id=%s head=%d", self.name, self.log_id, self.frame_no)

    def _fork(self, reason: str) -> LogForked:
        """Stop acknowledging commits (said at ERROR once); the error each commit answers."""
        if not self.forked:
            self.forked = forked_message("this primary", self.name, reason, self.log_id)
            log.error("%s", self.forked)
            write_atomic(self.forked_path, f"{self.log_id}\n{self.forked}".encode())
        return LogForked(self.forked)

    def _break(self, reason: str) -> ReplicationBroken:
        """Commits are not acknowledged until logging works again (said at ERROR once; a commit
        tries again at most every BROKEN_RETRY_SECONDS); the error each commit answers."""
        if not self.broken:
            self.broken = (f"replication of db {self.name} is broken: {reason}; commits are durable here "
                           f"but not acknowledged or replicated until it works again")
            log.error("%s", self.broken)
        self._retry_at = time.monotonic() + BROKEN_RETRY_SECONDS
        return ReplicationBroken(self.broken)

    def _mend(self) -> None:
        if self.broken:
            self.broken = ""
            log.warning("replication works again db=%s log_id=%s head=%d", self.name, self.log_id, self.frame_no)

    def _unfork(self) -> None:
        if os.path.exists(self.forked_path):
            os.remove(self.forked_path)
        if self.forked:
            self.forked = ""
            log.warning("replication log follows this primary again db=%s log_id=%s head=%d", self.name,
                        self.log_id, self.frame_no)

    def _opened(self) -> tuple[apsw.Connection, apsw.Connection]:
        """The writer and checkpointer connections (start opened them)."""
        assert self._writer is not None and self._checkpointer is not None, "start() first"
        return self._writer, self._checkpointer

    # -- history -------------------------------------------------------------------
    def _write_locked(self, fn: Callable[[], T]) -> T:
        """fn() while our writer connection holds the write lock: nothing commits meanwhile."""
        w, _ = self._opened()
        w.set_busy_timeout(LOCK_WAIT_MS)
        try:
            w.execute("BEGIN IMMEDIATE")
        except apsw.BusyError as exc:
            raise CaptureError(f"new history of db {self.name}: write lock not obtained in "
                               f"{LOCK_WAIT_MS} ms") from exc
        finally:
            w.set_busy_timeout(0)
        try:
            return fn()
        finally:
            w.execute("ROLLBACK")

    def _resync(self, wait_for_replica: bool) -> bool:
        """The log moved, or forked (write lock held): go on if it is where we left it; a fork
        if our history is ahead of us or on another chain; else (a new log id, or our history
        behind us: a restored backup) a new history."""
        try:
            for _ in range(_RESYNC_ATTEMPTS):
                hello = self._client.hello()
                try:
                    if hello.log_id == self.log_id and hello.head_frame_no == self.frame_no \
                            and hello.head_chain == self.chain and not self.forked:
                        return self._capture(wait_for_replica)
                    if hello.log_id == self.log_id and hello.head_frame_no >= self.frame_no:
                        raise self._fork(f"log {self.log_id} holds frames up to {hello.head_frame_no} "
                                         f"(chain {hello.head_chain.hex()[:16]}); this primary wrote up to "
                                         f"{self.frame_no} (chain {self.chain.hex()[:16]})")
                    log.warning("the replication log moved db=%s log_id=%s head=%d, was log_id=%s head=%d: "
                                "new history", self.name, hello.log_id, hello.head_frame_no, self.log_id,
                                self.frame_no)
                    return self._new_history(hello.log_id, wait_for_replica)
                except LogMoved:
                    continue
        except grpc.RpcError as exc:
            raise CaptureError(f"resync with the log of db {self.name}: {exc.details()}") from exc
        raise CaptureError(f"db {self.name}: the replication log keeps changing under this primary; "
                           "check that only this primary appends to it")

    def _new_history(self, seen_log_id: str, wait_for_replica: bool) -> bool:
        """A new log id (if the log is still `seen_log_id`); the whole database, read through
        SQLite, is its first transaction. Write lock held. Whether a replica applied it."""
        page_size: int = self._opened()[0].pragma("page_size")
        image = _Image(self._db_file, page_size, self._scan(from_start=True))
        position = self._skip_to(image.scan)
        hello = self._client.reset(if_log_id=seen_log_id)
        if hello.head_frame_no:
            raise LogMoved(f"db {self.name}: log {hello.log_id} was reset and written by another primary")
        n = image.pages
        applied = False
        head_chain = hello.head_chain
        if n:
            try:
                with image:
                    head_chain, applied = self._client.append_large(
                        hello.log_id, page_size, 1, n, n, image.read, position, head_chain,
                        int(time.time() * 1000), wait_for_replica)
            except LogForked as exc:  # someone appended to the fresh log first
                raise LogMoved(str(exc)) from exc
        self.log_id, self.frame_no, self.page_size, self.chain = hello.log_id, n, page_size, head_chain
        write_atomic(self.id_path, self.log_id.encode())
        log.info("new history db=%s log_id=%s pages=%d", self.name, self.log_id, n)
        self._unfork()
        return applied

    def _skip_to(self, scan: wal.WalScan | None) -> pb.WalPosition:
        """Move the capture position to the end of `scan` (the WAL's last commit) without logging
        anything (a new history's image holds it all); that position."""
        if scan is None:
            self._salts, self._offset, self._sum = (0, 0), 0, (0, 0)
            return pb.WalPosition()
        h = scan.header
        self._salts, self._offset, self._sum = (h.salt1, h.salt2), scan.end_offset, scan.checksum
        return pb.WalPosition(salt1=h.salt1, salt2=h.salt2, offset=scan.end_offset,
                              checksum1=scan.checksum[0], checksum2=scan.checksum[1])

    def _scan(self, from_start: bool = False) -> wal.WalScan | None:
        """The committed transactions in the WAL after the capture position (all of them with
        `from_start`), as positions, not pages."""
        def offset_for(header: wal.WalHeader) -> tuple[int, tuple[int, int]]:
            if from_start:
                return wal.HEADER_SIZE, (header.checksum1, header.checksum2)
            return self._offset_for(header), self._sum

        def trusted(header: wal.WalHeader, raw: bytes) -> int:
            return wal.shm_frames(self._shm_file.fd(), header, raw)

        return wal.scan(self.wal_path, offset_for, trusted)

    # -- the commit path -------------------------------------------------------------
    def _offset_for(self, header: wal.WalHeader) -> int:
        if (header.salt1, header.salt2) != self._salts or self._offset < wal.HEADER_SIZE:
            self._checkpoint_at = CHECKPOINT_BYTES
            self._salts, self._offset = (header.salt1, header.salt2), wal.HEADER_SIZE
            self._sum = (header.checksum1, header.checksum2)
        return self._offset

    @property
    def checkpoint_due(self) -> bool:
        """The next capture checkpoints (it takes SQLite's write lock). Read without the lock:
        a stale answer only makes that checkpoint wait for a later commit."""
        return self._offset > self._checkpoint_at

    def capture(self, wait_for_replica: bool = False, checkpoint: bool = True) -> tuple[int, bool]:
        """Log every committed transaction not yet logged; (last frame no, a replica applied it).

        Group commit: one capture at a time (the lock), each taking every transaction committed
        by then, so commits that arrive while an Append is in flight go together in the next
        one, and a commit whose frames another capture logged finds them logged already.
        `checkpoint`: the caller still holds the writer turn, so a due checkpoint may take
        SQLite's write lock now (else a later capture does it)."""
        with self._lock:
            if self.broken and not self.forked and time.monotonic() < self._retry_at:
                raise ReplicationBroken(self.broken)
            try:
                try:
                    if self.forked:  # until the log gets a new id: see whether it did
                        applied = self._write_locked(lambda: self._resync(wait_for_replica))
                    else:
                        applied = self._capture(wait_for_replica)
                except LogMoved as exc:
                    log.warning("append refused db=%s err=%s; saying hello again", self.name, exc)
                    applied = self._write_locked(lambda: self._resync(wait_for_replica))
            except LogForked as exc:
                raise self._fork(str(exc)) from None
            except (CaptureError, wal.WalError, grpc.RpcError) as exc:
                detail = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
                raise self._break(detail) from None
            self._mend()
            if checkpoint and self._offset > self._checkpoint_at:
                self._checkpoint()
                # if readers kept SQLite from restarting the WAL, try again only after more growth
                self._checkpoint_at = max(self._offset, CHECKPOINT_BYTES) + CHECKPOINT_BYTES // 4
            return self.frame_no, applied

    def _capture(self, wait_for_replica: bool) -> bool:
        """Log the WAL's new transactions: small ones together, up to PART_BYTES of pages per
        Append, a larger one alone in parts; the position moves after each Append that landed.
        Memory: the scan keeps 4 bytes per frame; pages are read PART_BYTES at a time."""
        scan = self._scan()
        if scan is None or not scan.transactions:
            if wait_for_replica and self.frame_no:  # logged by another commit's capture: wait all the same
                return self._client.append(self.log_id, self.page_size, [], pb.WalPosition(), self.chain, True)
            return False
        header = scan.header
        fs, ps = header.frame_size, header.page_size
        self.page_size = ps
        now = int(time.time() * 1000)
        applied = False
        batch: list[tuple[pb.Transaction, wal.WalTxn]] = []
        fd = os.open(self.wal_path, os.O_RDONLY)
        try:
            def position(t: wal.WalTxn) -> pb.WalPosition:
                return pb.WalPosition(salt1=header.salt1, salt2=header.salt2, offset=t.end(fs),
                                      checksum1=t.end_checksum[0], checksum2=t.end_checksum[1])

            def flush() -> bool:
                txns = [b[0] for b in batch]
                last = chain(txns, self.chain, self.primary_id)
                done = self._client.append(self.log_id, ps, txns, position(batch[-1][1]), self.chain,
                                           wait_for_replica)
                self.frame_no += sum(len(t.frames) for t in txns)
                self._offset, self._sum, self.chain = batch[-1][1].end(fs), batch[-1][1].end_checksum, last
                batch.clear()
                return done

            size = 0
            for t in scan.transactions:
                count = len(t.page_nos)
                if count * ps > PART_BYTES:
                    if batch:
                        applied = flush()
                        size = 0

                    def read(i: int, n: int, t: wal.WalTxn = t) -> list[tuple[int, bytes]]:
                        return [(f.page_no, f.page) for f in wal.read_range(fd, header, t, i, n)]

                    self.chain, applied = self._client.append_large(
                        self.log_id, ps, self.frame_no + 1, count, t.commit_size, read, position(t),
                        self.chain, now, wait_for_replica)
                    self.frame_no += count
                    self._offset, self._sum = t.end(fs), t.end_checksum
                    continue
                first = self.frame_no + 1 + sum(len(b[0].frames) for b in batch)
                frames = [pb.Frame(frame_no=first + k, page_no=f.page_no, commit_size=f.commit_size, page=f.page)
                          for k, f in enumerate(wal.read_range(fd, header, t, 0, count))]
                batch.append((pb.Transaction(frames=frames, commit_time_ms=now), t))
                size += count * ps
                if size >= PART_BYTES:
                    applied = flush()
                    size = 0
            if batch:
                applied = flush()
            frames_logged = sum(len(t.page_nos) for t in scan.transactions)
            metrics.COMMITS_LOGGED.inc(len(scan.transactions))
            metrics.FRAMES_LOGGED.inc(frames_logged)
            metrics.BYTES_LOGGED.inc(frames_logged * ps)
        finally:
            os.close(fd)
        return applied

    def _checkpoint(self) -> None:
        """Checkpoint only frames that are logged: hold the write lock while doing it."""
        w, checkpointer = self._opened()
        try:
            w.execute("BEGIN IMMEDIATE")
        except apsw.BusyError:
            return  # a writer is busy; try after a later commit
        try:
            try:
                self._capture(False)
            except (LogMoved, LogForked):
                return  # checkpoint nothing now; the next commit's capture resyncs or reports
            checkpointer.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
        finally:
            w.execute("ROLLBACK")

    def close(self) -> None:
        """After every connection of this process to the database closed (Database.close)."""
        for c in (self._writer, self._checkpointer):
            if c is not None:
                c.close()
        self._db_file.close()
        self._shm_file.close()
        self._client.close()


class HeldOpen:
    """A read-only descriptor of a file SQLite locks (the database, its -shm), opened on first
    use and closed only at Capturer.close, once SQLite's connections are closed.

    POSIX advisory locks belong to the process and the file, not to a descriptor: closing ANY
    descriptor of the file drops every lock the process holds on it, SQLite's included (SQLite
    avoids this for its own descriptors; ours are invisible to it). With the shared lock on the
    database file gone, another process opening and closing the database (sqlite3, dbhash, a
    backup tool) believes it is the last connection: it checkpoints and deletes the WAL, and
    every commit after that goes to the deleted file and is lost at restart. With the -shm's
    locks gone, another process may rebuild the wal-index under our connections. So nothing here
    ever closes such a file while SQLite uses it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def fd(self) -> int:
        """The descriptor; -1 while the file does not exist."""
        if self._fd < 0:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return -1
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Image:
    """The database as of the WAL's last commit, page by page, read from outside SQLite: the
    newest committed WAL frame of each page, else the page in the database file (under the
    write lock, and no checkpoint runs meanwhile: both files hold still). `read(i, n)` gives
    pages i+1..i+n, so a new history never holds the database in memory (4 bytes of index
    per WAL frame, and one part of pages)."""

    def __init__(self, db_file: HeldOpen, page_size: int, scan: wal.WalScan | None) -> None:
        self.path, self.page_size, self.scan = db_file.path, page_size, scan
        self._db_file = db_file
        self._latest: dict[int, int] = {}  # page no -> file offset of its newest WAL frame
        self.pages = 0
        if scan is not None and scan.transactions:
            fs = scan.header.frame_size
            if scan.header.page_size != page_size:
                raise wal.WalError(f"read wal: page size {scan.header.page_size}, the database's is {page_size}")
            for t in scan.transactions:
                for k, page_no in enumerate(t.page_nos):
                    self._latest[page_no] = t.offset + k * fs + wal.FRAME_HEADER_SIZE
            self.pages = scan.transactions[-1].commit_size
        else:
            self.pages = _file_pages(db_file.fd(), page_size)
        self._db = self._wal = -1

    def __enter__(self) -> _Image:
        self._db = self._db_file.fd()  # held open: never closed here (see HeldOpen)
        if self._latest:
            self._wal = os.open(self.path + "-wal", os.O_RDONLY)  # SQLite locks no byte of the -wal
        return self

    def __exit__(self, *exc: object) -> None:
        if self._wal >= 0:
            os.close(self._wal)
        self._db = self._wal = -1

    def read(self, i: int, n: int) -> list[tuple[int, bytes]]:
        ps = self.page_size
        out = []
        for page_no in range(i + 1, i + n + 1):
            off = self._latest.get(page_no)
            page = os.pread(self._wal, ps, off) if off is not None else os.pread(self._db, ps, (page_no - 1) * ps)
            out.append((page_no, page.ljust(ps, b"\0")))
        return out


def _file_pages(fd: int, page_size: int) -> int:
    """The database file's size in pages: its header's count when valid (the change counter
    equals version-valid-for), else the file's length. `fd`: a held descriptor (HeldOpen)."""
    header = os.pread(fd, 100, 0)
    size = os.fstat(fd).st_size
    if len(header) == 100 and header[24:28] == header[92:96]:
        n = int.from_bytes(header[28:32], "big")
        if n:
            return n
    return size // page_size


def _primary_id(path: str) -> str:
    """This primary's id for its database's log: random, made once, kept beside the database."""
    if os.path.exists(path):
        pid = open(path).read().strip()
        if pid:
            return pid
    pid = uuid.uuid4().hex
    write_atomic(path, pid.encode())
    return pid
