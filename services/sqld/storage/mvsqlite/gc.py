"""Garbage collection of old page versions, behind a retention window.

Versions committed within the last `retention_seconds` stay readable (time travel); older
ones are removed except the newest version of each page at the window's edge, which is still
what a read at the edge sees. Then page images no index entry points at are deleted. Every
step runs in small FoundationDB transactions (CHUNK keys each).

Before it removes anything, a round raises the GC horizon key to its cutoff: a reader of old
versions (the replication capture) checks after its reads that the horizon is not above the
version it read from; if it is, what it read may be incomplete. Changelog entries and commit
ids (commit.py) are kept for at least CHANGELOG_MIN_SECONDS: connections use the changelog to
keep their page index fresh, a commit retried after 1021 looks for its id, and the sweep
below reads the changelog. The changelog is pruned in the transaction that records how far
(the `f` key, its floor).

What retention needs, and no more: the state as of every commit at or after the cutoff (the
last commit at or before now − retention), i.e. each page's newest index entry at or before
the cutoff and every later one, the page count likewise, the time index from the cutoff's
entry on (a restore to a time inside the window finds its commit), and the frame notes
(`r`, restore AS_OF_FRAME) of versions from the cutoff on. Everything older goes.

The image sweep, and why no commit can end up pointing at a deleted image. The round takes a
read version S, then scans the page index (every chunk at a version >= S, so it sees every
commit up to S) and then the images, which are the candidates: those no index entry seen
points at. Each deletion transaction D (read version R, commit version Vd):
  1. reads the `w` key serializably: every commit writes it, so a commit landing in (R, Vd)
     makes D fail with 1020 and run again at a newer read version;
  2. reads, at R, the changelog after S (after where the previous D read it) and the index
     entries those commits wrote, and spares every image they point at; it gives up the round
     when the changelog floor is above S (what it would read may be gone);
  3. deletes the other candidates, and moves the GC epoch key when it deletes any.
So the images D deletes are referenced by no commit at or before Vd: commits up to S are in
the scan, those in (S, R] are in the changelog at R (written in the same transaction as their
index entries), and none lands in (R, Vd). A commit C landing after Vd reads the epoch
before it uploads its images (commit.py). If it uploaded an image D deletes, that upload
came before Vd, and so did its epoch read; C's final transaction reads the epoch
serializably, after Vd, and finds it moved (at a read version below Vd it fails with 1020
on D's epoch write and runs again), so it checks its images in FoundationDB, not in a
cache, and writes the missing ones again, atomically with its index entries. An upload
after Vd rewrites the image, which D then has not deleted. An index entry GC itself prunes
(older than the newest at the cutoff) may lose its image: reads below the horizon are not
promised. Commits never stop the sweep: at worst a D is retried (bounded by kv.run).
"""
from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Iterator

from sqld.storage.mvsqlite import keys
from sqld.storage.mvsqlite.kv import KeyValues, Transaction, get, run, strinc
from sqld.storage.mvsqlite.pagestore import PageStore

log = logging.getLogger(__name__)

CHUNK = 1000
CHANGELOG_MIN_SECONDS = 120.0


def _scan(store: PageStore, begin: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every key-value in [begin, end), in chunks, each chunk in its own transaction."""
    while True:
        def chunk(tr: Transaction, begin: bytes = begin) -> KeyValues:
            return tr.get_ranges([(begin, end, CHUNK, False)], True)[0]
        kvs = run(store.kv, chunk)
        yield from kvs
        if len(kvs) < CHUNK:
            return
        begin = kvs[-1][0] + b"\x00"


def _clear(store: PageStore, doomed: list[bytes]) -> None:
    for i in range(0, len(doomed), CHUNK):
        part = doomed[i:i + CHUNK]

        def body(tr: Transaction, part: list[bytes] = part) -> None:
            for key in part:
                tr.clear(key)
        run(store.kv, body)


def _prune_versions(store: PageStore, prefix: bytes, group_len: int, cutoff: int) -> tuple[list[bytes], set[bytes]]:
    """Keys under `prefix` older than the newest one at or before `cutoff`, per group
    (keys sharing their first `group_len` bytes after the prefix); and the live values."""
    doomed: list[bytes] = []
    values: dict[bytes, bytes] = {}
    group: bytes = b""
    older: list[bytes] = []
    bound = keys.version_bound(cutoff)
    for key, value in _scan(store, prefix, strinc(prefix)):
        values[key] = value
        g = key[len(prefix):len(prefix) + group_len]
        if g != group:
            group, older = g, []
        if key[len(prefix) + group_len:] < bound:
            doomed.extend(older)
            older = [key]
    gone = set(doomed)
    return doomed, {v for k, v in values.items() if k not in gone}


def _raise_horizon(store: PageStore, cutoff: int) -> None:
    key = keys.horizon(store.ns)

    def body(tr: Transaction) -> None:
        old = get(tr, key)
        if old is None or struct.unpack(">Q", old)[0] < cutoff:
            tr.set(key, struct.pack(">Q", cutoff))
    run(store.kv, body)


def _prune_logs(store: PageStore, log_cutoff: int, keep_ms: int) -> None:
    """Changelog entries below `log_cutoff` (recording the floor), commit ids made before `keep_ms`."""
    changelog, floor = keys.changelog_prefix(store.ns), keys.changelog_floor(store.ns)
    ids = keys.commit_id_prefix(store.ns)

    def body(tr: Transaction) -> None:
        if log_cutoff:
            old = get(tr, floor)
            if old is None or struct.unpack(">Q", old)[0] < log_cutoff - 1:
                tr.set(floor, struct.pack(">Q", log_cutoff - 1))
            tr.clear_range(changelog, changelog + keys.version_bound(log_cutoff - 1))
        tr.clear_range(ids, ids + struct.pack(">Q", max(keep_ms, 0)))
    run(store.kv, body)


class _Recent:
    """Images pointed at by commits after version `since`, found through the changelog. Each
    deletion transaction reads on from where the last one stopped: what a transaction read
    at its read version stays true, even if it then fails to commit."""

    def __init__(self, store: PageStore, since: int) -> None:
        self.store = store
        self.since = self.upto = since
        self.digests: set[bytes] = set()

    def read(self, tr: Transaction) -> bool:
        """Catch up to `tr`'s read version; False when the changelog after `since` may be gone."""
        ns, prefix = self.store.ns, keys.changelog_prefix(self.store.ns)
        floor, entries = tr.get_ranges([(keys.changelog_floor(ns), keys.changelog_floor(ns) + b"\x00", 1, False),
                                        (prefix + keys.version_bound(self.upto), strinc(prefix), 0, False)], True)
        if floor and struct.unpack(">Q", floor[0][1])[0] > self.since:
            return False
        ranges = []
        for key, value in entries:
            stamp = key[len(prefix):len(prefix) + keys.STAMP_LEN]
            for pgno in struct.unpack(f">{len(value) // 4 - 1}I", value[4:]):
                k = keys.page_prefix(ns, pgno) + stamp
                ranges.append((k, k + b"\x00", 1, False))
        for kvs in tr.get_ranges(ranges, True) if ranges else []:
            self.digests.update(v for _, v in kvs)
        self.upto = max(self.upto, tr.read_version())
        return True


def collect(store: PageStore, retention_seconds: float) -> dict[str, int]:
    """One GC round; returns how many index entries and images it removed."""
    now_ms = int(time.time() * 1000)
    cutoff = store.version_at(now_ms - int(retention_seconds * 1000))
    if not cutoff:
        return {"index": 0, "images": 0}
    _raise_horizon(store, cutoff)
    since = store.current_version()  # the index scan sees every commit up to here
    doomed, live = _prune_versions(store, store.ns + keys.PAGE, 4, cutoff)
    size_doomed, _ = _prune_versions(store, keys.size_prefix(store.ns), 0, cutoff)
    _clear(store, doomed + size_doomed)
    keep_ms = now_ms - int(max(retention_seconds, CHANGELOG_MIN_SECONDS) * 1000)
    _prune_logs(store, min(cutoff, store.version_at(keep_ms)), keep_ms)
    frames = keys.frames_prefix(store.ns)  # restore AS_OF_FRAME: notes of versions behind the cutoff go
    _clear(store, [k for k, v in _scan(store, frames, strinc(frames)) if struct.unpack(">Q", v)[0] < cutoff])
    time_keys = [k for k, _ in _scan(store, keys.time_prefix(store.ns), keys.time_key(store.ns, now_ms))
                 if keys.stamp_version(k[-keys.STAMP_LEN:]) <= cutoff]
    _clear(store, time_keys[:-1])
    kept = set(live)
    images = [k for k, _ in _scan(store, store.ns + keys.CONTENT, strinc(store.ns + keys.CONTENT))
              if k[len(store.ns) + 1:] not in kept]
    recent = _Recent(store, since)
    marker = keys.write_marker(store.ns)
    removed = 0
    for i in range(0, len(images), CHUNK):
        part = images[i:i + CHUNK]

        def body(tr: Transaction, part: list[bytes] = part) -> int | None:
            get(tr, marker)  # serializable: a commit landing between this read and this commit fails it
            if not recent.read(tr):
                return None
            gone = [key for key in part if key[len(store.ns) + 1:] not in recent.digests]
            if gone:
                tr.set(keys.gc_epoch(store.ns), os.urandom(8))
            for key in gone:
                tr.clear(key)
            return len(gone)
        n = run(store.kv, body)
        if n is None:
            log.info("gc: the changelog was pruned past this round's scan; images are left for the next round")
            break
        removed += n
    log.debug("gc ns=%r cutoff=%d index=%d images=%d", store.ns, cutoff, len(doomed), removed)
    return {"index": len(doomed) + len(size_doomed), "images": removed}
