"""Garbage collection of old page versions, behind a retention window.

Versions committed within the last `retention_seconds` stay readable (time travel); older
ones are removed except the newest version of each page at the window's edge, which is still
what a read at the edge sees. Then page images no index entry points at are deleted.

Every step runs in small FoundationDB transactions (CHUNK keys each). Deleting images races
with commits that point at them; every commit writes the namespace's `w` key, and each image
deletion transaction reads it: when a commit landed since the index scan, the sweep stops
(FoundationDB's conflict check covers the last window) and the next round tries again. Each
sweep transaction also moves the GC epoch key; a commit whose upload overlapped a sweep sees
the epoch moved, re-checks its images and writes missing ones again (commit.py).

Before it removes anything, a round raises the GC horizon key to its cutoff: a reader of old
versions (the replication capture) checks after its reads that the horizon is not above the
version it read from; if it is, what it read may be incomplete. Changelog entries and commit
ids (commit.py) are kept for at least CHANGELOG_MIN_SECONDS: connections use the changelog to
keep their page index fresh, and a commit retried after 1021 looks for its id.
"""
from __future__ import annotations

import logging
import os
import struct
import time

from storage.fdb import keys
from storage.fdb.commit import commit_id_prefix
from storage.fdb.kv import Transaction, get, run, strinc
from storage.fdb.pagestore import PageStore

log = logging.getLogger(__name__)

CHUNK = 1000
CHANGELOG_MIN_SECONDS = 120.0


def _scan(store: PageStore, begin: bytes, end: bytes):
    """Every key-value in [begin, end), in chunks, each chunk in its own transaction."""
    while True:
        kvs = run(store.kv, lambda tr: tr.get_ranges([(begin, end, CHUNK, False)], True)[0])
        yield from kvs
        if len(kvs) < CHUNK:
            return
        begin = kvs[-1][0] + b"\x00"


def _clear(store: PageStore, doomed: list[bytes]) -> None:
    for i in range(0, len(doomed), CHUNK):
        part = doomed[i:i + CHUNK]

        def body(tr: Transaction) -> None:
            for key in part:
                tr.clear(key)
        run(store.kv, body)


def _prune_versions(store: PageStore, prefix: bytes, group_len: int, cutoff: int) -> tuple[list[bytes], set[bytes]]:
    """Keys under `prefix` older than the newest one at or before `cutoff`, per group
    (keys sharing their first `group_len` bytes after the prefix); and the live values."""
    doomed: list[bytes] = []
    values: dict[bytes, bytes] = {}
    group, older = b"", []
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


def collect(store: PageStore, retention_seconds: float) -> dict[str, int]:
    """One GC round; returns how many index entries and images it removed."""
    now_ms = int(time.time() * 1000)
    cutoff = store.version_at(now_ms - int(retention_seconds * 1000))
    if not cutoff:
        return {"index": 0, "images": 0}
    _raise_horizon(store, cutoff)
    marker = keys.write_marker(store.ns)
    before = run(store.kv, lambda tr: get(tr, marker, snapshot=True))
    doomed, live = _prune_versions(store, store.ns + keys.PAGE, 4, cutoff)
    size_doomed, _ = _prune_versions(store, keys.size_prefix(store.ns), 0, cutoff)
    _clear(store, doomed + size_doomed)
    keep_ms = now_ms - int(max(retention_seconds, CHANGELOG_MIN_SECONDS) * 1000)
    log_cutoff = min(cutoff, store.version_at(keep_ms))
    if log_cutoff:
        changelog = keys.changelog_prefix(store.ns)
        run(store.kv, lambda tr: tr.clear_range(changelog, changelog + keys.version_bound(log_cutoff - 1)))
    ids = commit_id_prefix(store.ns)
    run(store.kv, lambda tr: tr.clear_range(ids, ids + struct.pack(">Q", max(keep_ms, 0))))
    time_keys = [k for k, _ in _scan(store, keys.time_prefix(store.ns), keys.time_key(store.ns, now_ms))
                 if keys.stamp_version(k[-keys.STAMP_LEN:]) <= cutoff]
    _clear(store, time_keys[:-1])
    kept = set(live)
    images = [k for k, _ in _scan(store, store.ns + keys.CONTENT, strinc(store.ns + keys.CONTENT))
              if k[len(store.ns) + 1:] not in kept]
    removed = 0
    for i in range(0, len(images), CHUNK):
        part = images[i:i + CHUNK]

        def body(tr: Transaction) -> bool:
            if get(tr, marker) != before:
                return False
            tr.set(keys.gc_epoch(store.ns), os.urandom(8))
            for key in part:
                tr.clear(key)
            return True
        if not run(store.kv, body):
            log.info("gc: a commit landed during the sweep; images are left for the next round")
            break
        removed += len(part)
    log.debug("gc ns=%r cutoff=%d index=%d images=%d", store.ns, cutoff, len(doomed), removed)
    return {"index": len(doomed) + len(size_doomed), "images": removed}
