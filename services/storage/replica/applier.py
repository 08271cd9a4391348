"""Applying frames on a replica: whole transactions, atomically for readers, crash-safe.

The replica file is a rollback-journal database that its SQLite readers only read. To
apply a batch of transactions (or a snapshot):
  1. the batch is written durably to `<db>-pending` (page images, target frame number);
  2. under SQLite's EXCLUSIVE lock (our own connection, BEGIN EXCLUSIVE: readers finish
     their read transaction first, new ones wait), the page images are written with
     pwrite through a descriptor that is never closed (closing any descriptor of the file
     would drop every POSIX lock this process holds on it), the file is cut to the
     commit size, and page 1 is patched: bytes 18-19 = 1 (rollback mode, not WAL), the
     change counter bumped and copied to version-valid-for, the in-header size set, so
     readers drop their cached pages; then the file is fsynced and the lock released;
  3. the position (log id, frame number) is written to `<db>-replica` and fsynced.
A reader therefore sees the state before or after a whole batch, never between. After a
crash in step 2, `repair` applies the pending batch again: page images are idempotent.
"""
from __future__ import annotations

import logging
import os
import struct
import zlib
from typing import Sequence

import apsw

log = logging.getLogger(__name__)

_POS = struct.Struct(">32sQI")            # log id, frame no, page size
_PENDING = struct.Struct(">4s32sQIIII")   # magic, log id, frame no, page size, min pages, db pages, frames
_FRAME = struct.Struct(">I")
_MAGIC = b"SQLP"
BUSY_TIMEOUT_MS = 30_000

Page = tuple[int, bytes]  # (page number, image)


class Applier:
    def __init__(self, path: str) -> None:
        self.path = path
        self.pos_path = path + "-replica"
        self.pending_path = path + "-pending"
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # never closed: see the module doc
        self._pos_fd = os.open(self.pos_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._lock_conn = apsw.Connection(path)
        self._lock_conn.set_busy_timeout(BUSY_TIMEOUT_MS)
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
        try:
            data = open(self.pending_path, "rb").read()
        except FileNotFoundError:
            return
        batch = _decode_pending(data)
        if batch is None:
            return  # torn while being written: the database was not touched yet
        log_id, frame_no, page_size, min_pages, db_pages, pages = batch
        if (log_id, frame_no) != (self.log_id, self.frame_no):
            log.info("repairing replica path=%s frame_no=%d", self.path, frame_no)
            # no reader has opened the file yet, and SQLite may not be able to read a torn one
            self._apply(log_id, frame_no, page_size, min_pages, db_pages, pages, lock=False)

    def apply(self, log_id: str, frame_no: int, page_size: int, min_pages: int, db_pages: int,
              pages: Sequence[Page]) -> None:
        """Make the database equal to frame `frame_no` of `log_id`, given the pages that changed
        since the current position (or every page, for a snapshot). The file is first cut to
        `min_pages` (the smallest size the batch passed through), then written, then cut to
        `db_pages`."""
        body = b"".join(_FRAME.pack(n) + img for n, img in pages)
        head = _PENDING.pack(_MAGIC, log_id.encode(), frame_no, page_size, min_pages, db_pages, len(pages))
        with open(self.pending_path + ".tmp", "wb") as f:
            f.write(head + body + struct.pack(">I", zlib.crc32(head + body)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(self.pending_path + ".tmp", self.pending_path)
        self._apply(log_id, frame_no, page_size, min_pages, db_pages, pages)

    def _apply(self, log_id: str, frame_no: int, page_size: int, min_pages: int, db_pages: int,
               pages: Sequence[Page], lock: bool = True) -> None:
        conn = self._lock_conn
        if lock:
            conn.execute("BEGIN EXCLUSIVE")
        try:
            if os.fstat(self.fd).st_size > min_pages * page_size:
                os.ftruncate(self.fd, min_pages * page_size)
            for n, img in pages:
                os.pwrite(self.fd, img, (n - 1) * page_size)
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


def _decode_pending(data: bytes):
    if len(data) < _PENDING.size + 4 or zlib.crc32(data[:-4]) != struct.unpack(">I", data[-4:])[0]:
        return None
    magic, lid, frame_no, page_size, min_pages, db_pages, n = _PENDING.unpack_from(data, 0)
    if magic != _MAGIC:
        return None
    pages, p = [], _PENDING.size
    for _ in range(n):
        (no,) = _FRAME.unpack_from(data, p)
        pages.append((no, data[p + 4:p + 4 + page_size]))
        p += 4 + page_size
    return lid.rstrip(b"\0").decode(), frame_no, page_size, min_pages, db_pages, pages


def pages_of(transactions, current_pages: int) -> tuple[int, list[Page], int, int]:
    """(last frame no, the newest image of each page, smallest size, final size) of whole
    transactions applied to a database of `current_pages` pages."""
    latest: dict[int, bytes] = {}
    size = smallest = current_pages
    last = 0
    for txn in transactions:
        for f in txn.frames:
            latest[f.page_no] = f.page
            last = f.frame_no
            if f.commit_size:
                size = f.commit_size
                if size < smallest:
                    smallest = size
                    latest = {n: img for n, img in latest.items() if n <= size}
    return last, sorted(latest.items()), smallest, size
