"""Committing a SQLite write transaction to the page store.

1. Upload: page images go to `c <hash>` in earlier FoundationDB transactions, at most
   UPLOAD_PAGES pages / UPLOAD_BYTES per transaction, so a large SQLite transaction never
   meets FoundationDB's 10 MB / 5 s limits (identical images are written once).
2. Commit: one small FoundationDB transaction checks page-level conflicts (no page in the
   conflict set was committed after the SQLite transaction's snapshot), writes the index keys
   with versionstamped keys; it re-checks that its images exist only when a GC sweep ran
   meanwhile (the GC epoch key moved). FoundationDB's own conflict check covers the window
   between these reads and the commit (1020 → retry the small transaction).
3. Idempotency: FoundationDB may apply a commit and still answer 1021 (commit_unknown_result).
   Retried blindly, the commit would find its own index keys newer than its snapshot and
   report a false conflict for a transaction that is durable. So, as FoundationDB
   recommends, each commit writes a key of its own, `i <unix ms> <random>`, whose value is
   the versionstamp (a versionstamped value) and the attempt number; every attempt first
   reads that key, and when it is there an earlier attempt committed: its version and what
   it wrote are the result. The read is serializable, so an earlier attempt still in flight
   that lands after it makes this attempt fail with 1020 and look again. GC removes these
   keys behind the retention window, and never before CHANGELOG_MIN_SECONDS (gc.py).

Page 1 holds SQLite's change counter, which every write transaction bumps. When a
transaction changed nothing else in page 1, and another writer's later page 1 differs from
ours only in header fields that do not affect our pages (change counter, page count,
freelist head and count, version-valid-for), page 1 is rebased instead of conflicting: the
latest page 1 with its counter bumped. That is what lets writers of different tables commit
concurrently.
"""
from __future__ import annotations

import hashlib
import logging
import os
import struct
import time

from sqld.storage.mvsqlite import keys
from sqld.storage.mvsqlite.kv import Transaction, get, run, run_stamped, strinc
from sqld.storage.mvsqlite.pagestore import PageStore

log = logging.getLogger(__name__)

UPLOAD_PAGES = 100
UPLOAD_BYTES = 2_000_000
# Header bytes another writer may change without conflicting with a rebased page 1.
_REBASABLE = [(24, 40), (92, 100)]
_COUNTERS = [(24, 28), (92, 96)]  # the only bytes a rebased transaction may have changed


class Conflict(Exception):
    """A page this transaction read or wrote was committed by another writer after its snapshot."""


class Dropped(Exception):
    """The database left the page store's list (DROP DATABASE, perhaps in another process)."""


def _strip(page: bytes, spans: list[tuple[int, int]] = _REBASABLE) -> bytes:
    out = bytearray(page)
    for lo, hi in spans:
        out[lo:hi] = bytes(hi - lo)
    return bytes(out)


def _counter(page: bytes) -> int:
    return struct.unpack(">I", page[24:28])[0]


def _with_counter(page: bytes, n: int) -> bytes:
    """Page 1 with its change counter and version-valid-for set to `n`."""
    counter = struct.pack(">I", n & 0xFFFFFFFF)
    return page[:24] + counter + page[28:92] + counter + page[96:]


def upload(store: PageStore, images: dict[bytes, bytes]) -> None:
    """Write page images by hash, in FoundationDB transactions small enough for its limits."""
    batch: list[tuple[bytes, bytes]] = []
    size = 0

    def flush() -> None:
        def body(tr: Transaction) -> None:
            for d, data in batch:
                tr.set(keys.content_key(store.ns, d), data)
        run(store.kv, body)

    for d, data in images.items():
        batch.append((d, data))
        size += len(data)
        if len(batch) >= UPLOAD_PAGES or size >= UPLOAD_BYTES:
            flush()
            batch, size = [], 0
    if batch:
        flush()


def _missing(store: PageStore, tr: Transaction, images: dict[bytes, bytes]) -> list[bytes]:
    """Hashes of `images` whose content key is not in FoundationDB (serializable reads)."""
    digests = list(images)
    ranges = [(keys.content_key(store.ns, d), keys.content_key(store.ns, d) + b"\x00", 1, False) for d in digests]
    return [d for d, kvs in zip(digests, tr.get_ranges(ranges)) if not kvs]


def _clear_dropped(store: PageStore) -> None:
    """What this commit uploaded into a dropped database's namespace goes, with anything else
    left there (while the list still does not name this namespace: serializable)."""
    def body(tr: Transaction) -> None:
        if get(tr, store.entry_key) != store.ns:
            tr.clear_range(store.ns, strinc(store.ns))
    run(store.kv, body)


def commit(store: PageStore, snapshot: int, conflict_set: set[int], pages: dict[int, bytes],
           old_count: int, new_count: int, base_page1: bytes | None) -> tuple[int, dict[int, bytes], int]:
    """Commit `pages` written on top of `snapshot`; return the commit version, the hash of
    every page written (page 1 as stored) and the page count after the commit (a rebased
    commit keeps the count another writer left: its page 1 says so).

    Raises Conflict when a page in `conflict_set` or `pages` changed after `snapshot`."""
    digests = {p: hashlib.sha256(data).digest() for p, data in pages.items()}
    images = {digests[p]: data for p, data in pages.items()}
    epoch_key = keys.gc_epoch(store.ns)
    epoch = run(store.kv, lambda tr: get(tr, epoch_key, snapshot=True))
    upload(store, images)
    rebase = (1 in pages and base_page1 is not None and new_count == old_count
              and _strip(base_page1, _COUNTERS) == _strip(pages[1], _COUNTERS))
    check = (conflict_set | set(pages)) - ({1} if rebase else set())
    id_key = keys.commit_id_prefix(store.ns) + struct.pack(">Q", int(time.time() * 1000)) + os.urandom(8)
    attempts: list[tuple[dict[int, bytes], dict[int, bytes], int]] = []  # pages, hashes, count of each attempt

    def body(tr: Transaction) -> bytes | None:
        # Serializable reads: an earlier attempt landing after them fails this one (1020).
        ranges = [(id_key, id_key + b"\x00", 1, False), (epoch_key, epoch_key + b"\x00", 1, False)]
        if store.entry_key:  # listed: a drop (catalog.remove) landing first fails this commit
            ranges.append((store.entry_key, store.entry_key + b"\x00", 1, False))
        done, now, *listed = [kvs[0][1] if kvs else None for kvs in tr.get_ranges(ranges)]
        if done is not None:
            return done  # an earlier attempt committed; its answer was lost (1021)
        if listed and listed[0] != store.ns:
            raise Dropped("the database was dropped (DROP DATABASE) while this transaction ran")
        final, count = dict(pages), new_count
        conflicted = store.changed_since(sorted(check), snapshot, tr)
        if conflicted:
            raise Conflict(f"pages {conflicted[:5]} were committed by another writer after this "
                           "transaction's snapshot")
        if now != epoch:
            # A GC sweep ran since the upload: make sure every image is still in FoundationDB
            # (not only in the cache, which keeps images GC may have deleted).
            for d in _missing(store, tr, images):
                tr.set(keys.content_key(store.ns, d), images[d])
        index = dict(digests)
        if rebase:
            assert base_page1 is not None
            latest_hash = store._index(tr, [1], 2**63 - 2, snapshot=False).get(1)  # noqa: SLF001
            latest = store._content(tr, [latest_hash], snapshot=False)[latest_hash] if latest_hash else base_page1  # noqa: SLF001
            if _strip(latest) != _strip(base_page1):
                raise Conflict("page 1 (the schema) was changed by another writer after this "
                               "transaction's snapshot")
            final[1] = _with_counter(latest, _counter(latest) + 1)
            count = struct.unpack(">I", latest[28:32])[0] or new_count
        elif 1 in pages:
            # The VFS shows SQLite a per-transaction change counter; store the real one.
            final[1] = _with_counter(pages[1], _counter(base_page1) + 1 if base_page1 else 1)
        if 1 in pages:
            index[1] = hashlib.sha256(final[1]).digest()
            tr.set(keys.content_key(store.ns, index[1]), final[1])
        for p, d in index.items():
            key = keys.page_prefix(store.ns, p) + keys.PLACEHOLDER
            tr.set_versionstamped_key(key, len(key) - keys.STAMP_LEN, d)
        if new_count != old_count:
            key = keys.size_prefix(store.ns) + keys.PLACEHOLDER
            tr.set_versionstamped_key(key, len(key) - keys.STAMP_LEN, struct.pack(">I", new_count))
        changed = sorted(pages)
        for i in range(0, len(changed), keys.CHANGES_PER_KEY):
            part = changed[i:i + keys.CHANGES_PER_KEY]
            key = keys.changelog_prefix(store.ns) + keys.PLACEHOLDER + struct.pack(">H", i // keys.CHANGES_PER_KEY)
            tr.set_versionstamped_key(key, len(key) - keys.STAMP_LEN - 2,
                                      struct.pack(f">I{len(part)}I", count, *part))
        tr.set(keys.write_marker(store.ns), os.urandom(8))
        key = keys.time_key(store.ns, int(time.time() * 1000)) + keys.PLACEHOLDER
        tr.set_versionstamped_key(key, len(key) - keys.STAMP_LEN, b"")
        attempts.append((final, index, count))
        tr.set_versionstamped_value(id_key, keys.PLACEHOLDER + struct.pack(">H", len(attempts) - 1), 0)
        return None

    try:
        done, stamp = run_stamped(store.kv, body)
    except Dropped:
        _clear_dropped(store)
        raise
    attempt = len(attempts) - 1
    if done is not None:
        stamp, attempt = done[:keys.STAMP_LEN], struct.unpack(">H", done[keys.STAMP_LEN:])[0]
        log.info("commit ns=%r: attempt %d had committed although FoundationDB could not say so", store.ns,
                 attempt + 1)
    final, final_digests, count = attempts[attempt]
    version = keys.stamp_version(stamp)
    for p, data in final.items():
        store.cache.put(final_digests[p], data)
    log.debug("commit ns=%r version=%d pages=%d", store.ns, version, len(pages))
    return version, final_digests, count
