"""Applying frames on a replica: whole transactions, atomically for readers, crash-safe.

One library for every follower of the log: storage's replica (sqld.storage.replica, readers on
apsw) and the client's embedded replica (sqldclient._embedded, readers on Python's sqlite3). It
needs no SQLite of its own: the caller passes `lock`, which opens a connection of the SQLite
library its readers use (the EXCLUSIVE lock below must be taken by the same library in this
process, since POSIX locks do not exclude each other within one process; SQLite coordinates
its own connections in a process itself).

The replica file is a rollback-journal database that its SQLite readers only read. To
apply a batch of transactions (or a snapshot):
  1. the batch is written to `<db>-pending.tmp` as it arrives (a `Batch`: frames in log
     order, each a page number, a commit size and a page image; a transaction larger than
     one message arrives in several), then, once whole, its header (target frame number,
     CRCs) is written, the file fsynced and renamed to `<db>-pending`;
  2. under SQLite's EXCLUSIVE lock (our own connection from `lock`, BEGIN EXCLUSIVE: readers finish
     their read transaction first, new ones wait), the file is cut to `min_pages`, the
     frames are replayed from the pending file APPLY_BYTES at a time (pwrite each page,
     cut the file at each commit frame's size) through a descriptor that is never closed
     (closing any descriptor of the file would drop every POSIX lock this process holds on
     it), the file is cut to the final size, and page 1 is patched: bytes 18-19 = 1
     (rollback mode, not WAL), the change counter bumped and copied to version-valid-for,
     the in-header size set, so readers drop their cached pages; then the file is fsynced
     and the lock released;
  3. the position (log id, frame number) is written to `<db>-replica` and fsynced.
A reader therefore sees the state before or after a whole batch, never between. After a
crash in step 2, `repair` replays the pending batch again: replaying page writes and cuts in
log order from any state in between gives the same file. Memory stays at one message plus
APPLY_BYTES whatever the size of a transaction or a snapshot.
"""
from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

log = logging.getLogger(__name__)

_POS = struct.Struct(">32sQI")             # log id, frame no, page size
_PENDING = struct.Struct(">4s32sQIIIQI")   # magic, log id, frame no, page size, min pages, db pages, frames, body crc
_HEADER_CRC = struct.Struct(">I")
_FRAME = struct.Struct(">II")              # page no, commit size
_MAGIC = b"SQLQ"
_HEADER_SIZE = _PENDING.size + _HEADER_CRC.size
BUSY_TIMEOUT_MS = 30_000
APPLY_BYTES = 4 << 20                      # pending bytes read at a time while applying

Page = tuple[int, bytes]  # (page number, image)


class Batch:
    """Transactions being received for one apply, written to `<db>-pending.tmp` as they come."""

    def __init__(self, applier: Applier, log_id: str, page_size: int, min_pages: int) -> None:
        self.applier, self.log_id, self.page_size, self.min_pages = applier, log_id, page_size, min_pages
        self.frames = 0
        self.db_pages = min_pages
        self._crc = 0
        self._f = open(applier.pending_path + ".tmp", "wb")
        self._f.write(b"\0" * _HEADER_SIZE)

    def add(self, frames: Iterable) -> None:
        """Frames (page_no, commit_size, page attributes) in log order."""
        parts = []
        for f in frames:
            if len(f.page) != self.page_size:
                raise ValueError(f"apply: page {f.page_no} has {len(f.page)} bytes, not {self.page_size}")
            parts.append(_FRAME.pack(f.page_no, f.commit_size) + f.page)
            if f.commit_size:
                self.db_pages = f.commit_size
        data = b"".join(parts)
        self._crc = zlib.crc32(data, self._crc)
        self._f.write(data)
        self.frames += len(parts)

    def close(self, frame_no: int, db_pages: int) -> None:
        """Make the batch the durable pending one (whole, for `repair`)."""
        head = _PENDING.pack(_MAGIC, self.log_id.encode(), frame_no, self.page_size, self.min_pages, db_pages,
                             self.frames, self._crc)
        self._f.seek(0)
        self._f.write(head + _HEADER_CRC.pack(zlib.crc32(head)))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self.applier.pending_path + ".tmp", self.applier.pending_path)

    def discard(self) -> None:
        if not self._f.closed:
            self._f.close()


class Applier:
    """`lock(path)`: a connection (anything with `execute(sql)`) of the readers' SQLite library,
    waiting up to BUSY_TIMEOUT_MS for readers; it only ever runs BEGIN EXCLUSIVE and ROLLBACK."""

    def __init__(self, path: str, lock: Callable[[str], Any]) -> None:
        self.path = path
        self.pos_path = path + "-replica"
        self.pending_path = path + "-pending"
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # never closed: see the module doc
        self._pos_fd = os.open(self.pos_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._lock_conn = lock(path)
        raw = os.pread(self._pos_fd, _POS.size, 0)
        if len(raw) == _POS.size:
            lid, self.frame_no, self.page_size = _POS.unpack(raw)
            self.log_id = lid.rstrip(b"\0").decode()
        else:
            self.log_id, self.frame_no, self.page_size = "", 0, 0
        self._counter = 0
        self.repair()

    def repair(self) -> None:
        """Apply the pending batch again if a crash may have left it half applied."""
        header = _read_pending_header(self.pending_path)
        if header is None:
            return  # none, or torn while being written: the database was not touched yet
        log_id, frame_no = header[0], header[1]
        if (log_id, frame_no) != (self.log_id, self.frame_no):
            log.info("repairing replica path=%s frame_no=%d", self.path, frame_no)
            # no reader has opened the file yet, and SQLite may not be able to read a torn one
            self._apply(lock=False)

    def begin(self, log_id: str, page_size: int, min_pages: int) -> Batch:
        """A new batch; the file will first be cut to `min_pages` (0 for a snapshot)."""
        return Batch(self, log_id, page_size, min_pages)

    def commit(self, batch: Batch, frame_no: int, db_pages: int | None = None) -> None:
        """Make the database equal to frame `frame_no` of the batch's log: the batch's frames
        applied, the file cut to `db_pages` (default: the last commit size in the batch)."""
        batch.close(frame_no, batch.db_pages if db_pages is None else db_pages)
        self._apply()

    def apply_pending(self) -> None:
        """Apply the batch sealed last (`Batch.close`): `commit` in two steps, so that the next
        batch may be written to the pending file while this one is applied."""
        self._apply()

    def apply(self, log_id: str, frame_no: int, page_size: int, min_pages: int, db_pages: int,
              pages: Sequence[Page]) -> None:
        """`commit` of a batch of `pages` (page number, image), all given at once."""
        batch = self.begin(log_id, page_size, min_pages)
        batch.add(_Frame(n, 0, img) for n, img in pages)
        self.commit(batch, frame_no, db_pages)

    def _apply(self, lock: bool = True) -> None:
        header = _read_pending_header(self.pending_path)
        if header is None:
            raise RuntimeError(f"apply {self.path}: the pending batch is not whole")
        log_id, frame_no, page_size, min_pages, db_pages, frames = header
        conn = self._lock_conn
        if lock:
            conn.execute("BEGIN EXCLUSIVE")
        try:
            if os.fstat(self.fd).st_size > min_pages * page_size:
                os.ftruncate(self.fd, min_pages * page_size)
            fsz = _FRAME.size + page_size
            per_read = max(1, APPLY_BYTES // fsz)
            with open(self.pending_path, "rb") as f:
                done, off = 0, _HEADER_SIZE
                while done < frames:
                    n = min(per_read, frames - done)
                    data = os.pread(f.fileno(), n * fsz, off)
                    for k in range(n):
                        page_no, commit = _FRAME.unpack_from(data, k * fsz)
                        os.pwrite(self.fd, data[k * fsz + _FRAME.size:(k + 1) * fsz], (page_no - 1) * page_size)
                        if commit:
                            os.ftruncate(self.fd, commit * page_size)
                    done, off = done + n, off + n * fsz
            os.ftruncate(self.fd, db_pages * page_size)
            if db_pages:
                self._patch_page_one(db_pages)
            os.fsync(self.fd)
        finally:
            if lock:
                conn.execute("ROLLBACK")  # nothing was written through SQLite; this only unlocks
        os.pwrite(self._pos_fd, _POS.pack(log_id.encode(), frame_no, page_size), 0)
        os.fsync(self._pos_fd)
        self.log_id, self.frame_no, self.page_size = log_id, frame_no, page_size

    def _patch_page_one(self, db_pages: int) -> None:
        header = bytearray(os.pread(self.fd, 100, 0))
        counter = max(struct.unpack_from(">I", header, 24)[0], self._counter) + 1
        self._counter = counter & 0xFFFFFFFF
        header[18] = header[19] = 1
        struct.pack_into(">I", header, 24, self._counter)
        struct.pack_into(">I", header, 28, db_pages)
        struct.pack_into(">I", header, 92, self._counter)
        os.pwrite(self.fd, bytes(header), 0)


class _Frame:
    __slots__ = ("page_no", "commit_size", "page")

    def __init__(self, page_no: int, commit_size: int, page: bytes) -> None:
        self.page_no, self.commit_size, self.page = page_no, commit_size, page


def _read_pending_header(path: str):
    """(log id, frame no, page size, min pages, db pages, frames) of a whole pending batch
    (its CRCs checked, the body APPLY_BYTES at a time), None when there is none or it is torn."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    with f:
        raw = f.read(_HEADER_SIZE)
        if len(raw) < _HEADER_SIZE or zlib.crc32(raw[:_PENDING.size]) != _HEADER_CRC.unpack_from(raw, _PENDING.size)[0]:
            return None
        magic, lid, frame_no, page_size, min_pages, db_pages, frames, body_crc = _PENDING.unpack_from(raw, 0)
        if magic != _MAGIC:
            return None
        crc, left = 0, frames * (_FRAME.size + page_size)
        while left:
            chunk = f.read(min(APPLY_BYTES, left))
            if not chunk:
                return None
            crc = zlib.crc32(chunk, crc)
            left -= len(chunk)
        if crc != body_crc:
            return None
    return lid.rstrip(b"\0").decode(), frame_no, page_size, min_pages, db_pages, frames
