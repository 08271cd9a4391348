"""Snapshots: a database file as of a frame number, built by applying logged frames.

The replication service never runs SQLite on these files: a transaction's frames are
page images, so writing each at (page_no - 1) * page_size and cutting the file to the
commit size gives the database as of that commit. Files are built under a temporary
name and renamed into place, so a reader never sees half of one. Frames come from an
iterator (the log reads them a part at a time) and chunks hold CHUNK_BYTES of pages, so
neither needs the database or a transaction in memory.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator

from sqld.v1 import replication_pb2 as pb

CHUNK_BYTES = 4 << 20  # page bytes per SnapshotChunk


def build(base: str, dest: str, page_size: int, frames: Iterable[pb.Frame]) -> int:
    """Write `dest` = `base` (may be missing: empty) with `frames` (whole transactions, in
    order) applied; its size in pages."""
    tmp = dest + ".tmp"
    if os.path.exists(base):
        shutil.copyfile(base, tmp)
    else:
        open(tmp, "wb").close()
    fd = os.open(tmp, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size // page_size if page_size else 0
        for f in frames:
            os.pwrite(fd, f.page, (f.page_no - 1) * page_size)
            if f.commit_size:
                size = f.commit_size
                os.ftruncate(fd, size * page_size)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest)
    return size


def chunks(path: str, log_id: str, frame_no: int, page_size: int) -> Iterator[pb.SnapshotChunk]:
    """The file at `path` as SnapshotChunk messages (at least one, even for an empty database)."""
    with open(path, "rb") as f:
        data_size = os.fstat(f.fileno()).st_size
        db_pages = data_size // page_size if page_size else 0
        page_no = 1
        per_chunk = max(1, CHUNK_BYTES // page_size) if page_size else 1
        while True:
            pages: list[pb.Frame] = []
            while len(pages) < per_chunk and page_no <= db_pages:
                pages.append(pb.Frame(page_no=page_no, page=f.read(page_size)))
                page_no += 1
            yield pb.SnapshotChunk(log_id=log_id, frame_no=frame_no, page_size=page_size,
                                   db_pages=db_pages, pages=pages)
            if page_no > db_pages:
                return
