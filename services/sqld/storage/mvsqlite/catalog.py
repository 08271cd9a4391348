"""The page store's list of databases, kept in FoundationDB, and what changes it: create,
drop, fork (a copy of a version) and point-in-time restore (a fork of a past version).

Every storage process on one cluster (and namespace prefix) reads the same list, so a
database created through one is served by all (storage.registry looks at the list every
DISCOVER_EVERY seconds, and at once when a Connect names a database it does not know).

    0x16 <prefix> 0x00 <name>   → the database's namespace (9 bytes: 0x15 + 8)

Databases named at start (`--databases`, `postgres`) that the list lacks are entered with
their historical namespace, keys.namespace(prefix, name), so existing data stays where it
is. A database created at runtime gets a random namespace: a drop followed by a create of
the same name never meets the old incarnation's keys, nor a writer still committing to it
(commit.py checks, in its final transaction, that the list still maps the name to its
namespace).

Drop: one transaction takes the name out of the list and clears the namespace's key range.
A range clear is one mutation of a few bytes whatever the range holds, so the transaction
stays far inside FoundationDB's 10 MB / 5 s limits for any database size.

Fork (copy): pages are copied as of one version V of the source, READ_CHUNK pages per
FoundationDB read transaction, each read bounded by V in the keys (not by the transaction's
read version: mvSQLite's trick, so the copy may take longer than 5 s), images uploaded in
commit.upload's small transactions and index entries written COPY_CHUNK per transaction,
all into the new namespace, which no one reads until the final transaction lists it. The
source keeps taking writes; versions after V are not seen. Copying (rather than sharing
images copy-on-write across namespaces) keeps GC per namespace and a drop a range clear;
its cost is one read and one write of every page. GC keeps every version inside the
retention window (gc.py), and V is checked against the source's GC horizon after the copy:
past it, the copy may be incomplete and is abandoned (SnapshotTooOld).

Load (`load_file`): a SQLite file, e.g. a backup being restored, written the same way, its
pages read from the file instead of from a version of another namespace.
"""
from __future__ import annotations

import hashlib
import logging
import os
import struct
import time
from collections.abc import Callable

from sqld.storage.mvsqlite import commit, keys
from sqld.storage.mvsqlite.kv import Kv, Transaction, get, run, strinc
from sqld.storage.mvsqlite.pagestore import READ_CHUNK, PageStore, SnapshotTooOld
from sqld.storage.mvsqlite.vfs import PAGE_SIZE

log = logging.getLogger(__name__)

TAG = b"\x16"
COPY_CHUNK = 1000  # index entries per FoundationDB transaction when copying (~60 kB)


class Exists(Exception):
    """The list names that database already."""


def _prefix(prefix: str) -> bytes:
    return TAG + prefix.encode() + b"\x00"


def entry_key(prefix: str, name: str) -> bytes:
    return _prefix(prefix) + name.encode()


def listing(kv: Kv, prefix: str) -> dict[str, bytes]:
    """Every database of the list: name → namespace."""
    begin = _prefix(prefix)

    def body(tr: Transaction) -> list[tuple[bytes, bytes]]:
        return tr.get_ranges([(begin, strinc(begin), 0, False)], True)[0]
    return {key[len(begin):].decode(): value for key, value in run(kv, body)}


def lookup(kv: Kv, prefix: str, name: str) -> bytes | None:
    return run(kv, lambda tr: get(tr, entry_key(prefix, name), snapshot=True))


def ensure(kv: Kv, prefix: str, name: str) -> bytes:
    """`name`'s namespace, entering it with its historical one when the list lacks it."""
    key = entry_key(prefix, name)

    def body(tr: Transaction) -> bytes:
        ns = get(tr, key)
        if ns is None:
            ns = keys.namespace(prefix, name)
            tr.set(key, ns)
        return ns
    return run(kv, body)


def new_namespace() -> bytes:
    return b"\x15" + os.urandom(8)


def add(kv: Kv, prefix: str, name: str, ns: bytes) -> None:
    """List `name` with namespace `ns`; Exists when it is listed (by any process)."""
    key = entry_key(prefix, name)

    def body(tr: Transaction) -> None:
        if get(tr, key) is not None:  # serializable: two creates of one name cannot both list it
            raise Exists(name)
        tr.set(key, ns)
    run(kv, body)


def remove(kv: Kv, prefix: str, name: str) -> bytes | None:
    """Take `name` out of the list and clear its keys, in one transaction; its namespace
    (None when it was not listed)."""
    key = entry_key(prefix, name)

    def body(tr: Transaction) -> bytes | None:
        ns = get(tr, key)
        if ns is not None:
            tr.clear(key)
            tr.clear_range(ns, strinc(ns))
        return ns
    return run(kv, body)


def clear(kv: Kv, ns: bytes) -> None:
    """Every key of namespace `ns` (an abandoned copy)."""
    run(kv, lambda tr: tr.clear_range(ns, strinc(ns)))


def copy(source: PageStore, dest: PageStore, version: int) -> int:
    """Copy `source` as of `version` into the empty namespace of `dest` (see the module's
    doc); returns the number of pages. Raises SnapshotTooOld when GC passed `version`."""
    written = write_pages(dest, source.page_count(version), lambda pgnos: source.read_pages(pgnos, version))
    if source.horizon() > version:
        raise SnapshotTooOld(f"copy as of version {version}: garbage collection passed it while copying")
    log.debug("copied ns=%s version=%d pages=%d into ns=%s", source.ns.hex(), version, written, dest.ns.hex())
    return written


def load_file(kv: Kv, prefix: str, name: str, path: str) -> int:
    """A SQLite file (a backup: `python -m sqld.backup restore` into a page store) as the new
    database `name`: its pages written into a new namespace as a fork writes them, then listed
    (Exists when the list names it). Page 1 is marked as a rollback-journal database (the
    page store serves no WAL mode). Returns the number of pages."""
    if lookup(kv, prefix, name) is not None:
        raise Exists(name)
    fd = os.open(path, os.O_RDONLY)
    ns = new_namespace()
    try:
        header = os.pread(fd, 100, 0)
        page_size = struct.unpack(">H", header[16:18])[0] if len(header) == 100 else 0
        if header[:16] != b"SQLite format 3\x00" or page_size != PAGE_SIZE:
            raise ValueError(f"{path}: not a SQLite database with {PAGE_SIZE}-byte pages (the page store's "
                             "size): VACUUM a copy with PRAGMA page_size=4096 first")

        def read(pgnos: list[int]) -> dict[int, tuple[bytes, bytes]]:
            out = {}
            for p in pgnos:
                image = os.pread(fd, PAGE_SIZE, (p - 1) * PAGE_SIZE)
                if p == 1:
                    image = image[:18] + b"\x01\x01" + image[20:]
                out[p] = (hashlib.sha256(image).digest(), image)
            return out
        written = write_pages(PageStore(kv, ns), os.fstat(fd).st_size // PAGE_SIZE, read)
        add(kv, prefix, name, ns)
    except BaseException:
        clear(kv, ns)
        raise
    finally:
        os.close(fd)
    return written


def write_pages(dest: PageStore, count: int, read: Callable[[list[int]], dict[int, tuple[bytes, bytes]]]) -> int:
    """Pages 1..count, given by `read` (page numbers → (hash, image)) READ_CHUNK at a time,
    into the empty namespace of `dest` in FoundationDB transactions within its limits, and
    its page count and a time entry last; returns the number of pages written."""
    written = 0
    for first in range(1, count + 1, READ_CHUNK):
        found = read(list(range(first, min(first + READ_CHUNK, count + 1))))
        commit.upload(dest, {digest: image for digest, image in found.values()})
        entries = sorted((p, digest) for p, (digest, _) in found.items())
        for i in range(0, len(entries), COPY_CHUNK):
            part = entries[i:i + COPY_CHUNK]

            def body(tr: Transaction, part: list[tuple[int, bytes]] = part) -> None:
                for p, digest in part:
                    key = keys.page_prefix(dest.ns, p) + keys.PLACEHOLDER
                    tr.set_versionstamped_key(key, len(key) - keys.STAMP_LEN, digest)
            run(dest.kv, body)
        written += len(found)

    def finish(tr: Transaction) -> None:
        key = keys.size_prefix(dest.ns) + keys.PLACEHOLDER
        tr.set_versionstamped_key(key, len(key) - keys.STAMP_LEN, struct.pack(">I", count))
        key = keys.time_key(dest.ns, int(time.time() * 1000)) + keys.PLACEHOLDER
        tr.set_versionstamped_key(key, len(key) - keys.STAMP_LEN, b"")
        tr.set(keys.write_marker(dest.ns), os.urandom(8))
    run(dest.kv, finish)
    return written
