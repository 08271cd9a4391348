"""Reading the page store: pages, file size and versions as of a snapshot version.

Every call runs in a fresh FoundationDB transaction: the snapshot is the version bound in
the keys, not the transaction's read version, so a SQLite transaction may outlive
FoundationDB's 5 s limit (as in mvSQLite). Page images are immutable by hash, so they are
cached process-wide.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import struct
import threading
from collections.abc import Iterable

from sqld.storage.mvsqlite import keys
from sqld.storage.mvsqlite.kv import Kv, Transaction, get, run, strinc

READ_CHUNK = 500  # pages per FoundationDB read transaction in bulk reads (pages_at)
CHANGELOG_LIMIT = 1000  # changelog entries per read (a commit has at most a few)
Commits = list[tuple[int, list[tuple[int, list[int]]]]]  # [(version, [(page count, pages), ...])]


@dataclasses.dataclass
class Batch:
    """What changelog_batch read: the commits, and whether more come after them."""
    commits: Commits
    horizon: int                 # the GC horizon at the read version
    more: bool = False           # cut short: read again from `version`
    images: dict[tuple[int, int], bytes] | None = None  # (version, page) → image, when read


def _group(prefix: bytes, kvs: list[tuple[bytes, bytes]], max_pages: int) -> tuple[Commits, bool]:
    """Changelog entries grouped by version and commit, cut after `max_pages` pages (and
    whether it was cut)."""
    out: Commits = []
    stamps: dict[bytes, tuple[int, list[int]]] = {}
    pages = 0
    for key, value in kvs:
        stamp = key[len(prefix):len(prefix) + keys.STAMP_LEN]
        version = keys.stamp_version(stamp)
        if out and out[-1][0] != version:
            if pages >= max_pages:
                return out, True
            stamps = {}
        if not out or out[-1][0] != version:
            out.append((version, []))
        changed = list(struct.unpack(f">{len(value) // 4 - 1}I", value[4:]))
        if stamp in stamps:
            stamps[stamp][1].extend(changed)  # a further chunk of the same commit
        else:
            stamps[stamp] = (struct.unpack(">I", value[:4])[0], changed)
            out[-1][1].append(stamps[stamp])
        pages += len(changed)
    return out, False


class SnapshotTooOld(Exception):
    """A read asked for a version that garbage collection has already removed."""


class ContentCache:
    """A bounded LRU of page images by content hash, shared by every connection."""

    def __init__(self, capacity: int) -> None:
        self._items: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> bytes | None:
        with self._lock:
            data = self._items.get(digest)
            if data is not None:
                self._items.move_to_end(digest)
            return data

    def put(self, digest: bytes, data: bytes) -> None:
        with self._lock:
            self._items[digest] = data
            self._items.move_to_end(digest)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)


class PageStore:
    """One database's pages in FoundationDB, under namespace `ns`."""

    def __init__(self, kv: Kv, ns: bytes, cache_pages: int = 20_000, entry_key: bytes = b"") -> None:
        """`entry_key`: the database's key in the page store's list (catalog.py); a commit
        checks that it still names `ns` (empty: not checked)."""
        self.kv = kv
        self.ns = ns
        self.entry_key = entry_key
        self.cache = ContentCache(cache_pages)

    def current_version(self) -> int:
        """A fresh read version: every commit acknowledged so far is visible at it."""
        return self.kv.transaction().read_version()

    def _index(self, tr: Transaction, pgnos: list[int], version: int, snapshot: bool = True
               ) -> dict[int, bytes]:
        ranges = [(keys.page_prefix(self.ns, p), keys.page_prefix(self.ns, p) + keys.version_bound(version), 1, True)
                  for p in pgnos]
        found = tr.get_ranges(ranges, snapshot)
        return {p: kvs[0][1] for p, kvs in zip(pgnos, found) if kvs}

    def _content(self, tr: Transaction, digests: Iterable[bytes], snapshot: bool = True) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        missing = []
        for d in set(digests):
            data = self.cache.get(d)
            if data is None:
                missing.append(d)
            else:
                out[d] = data
        if missing:
            ranges = [(keys.content_key(self.ns, d), keys.content_key(self.ns, d) + b"\x00", 1, False) for d in missing]
            for d, kvs in zip(missing, tr.get_ranges(ranges, snapshot)):
                if kvs:
                    out[d] = kvs[0][1]
                    self.cache.put(d, kvs[0][1])
        return out

    def read_pages(self, pgnos: list[int], version: int) -> dict[int, tuple[bytes, bytes]]:
        """(hash, image) of pages as of `version`; pages never written are absent."""
        def body(tr: Transaction) -> dict[int, tuple[bytes, bytes]]:
            index = self._index(tr, pgnos, version)
            content = self._content(tr, index.values())
            if len(content) < len(set(index.values())):
                raise SnapshotTooOld(f"read at version {version}: page images were garbage-collected; "
                                     "read at a newer version (inside the retention window)")
            return {p: (d, content[d]) for p, d in index.items()}
        return run(self.kv, body)

    def image(self, digest: bytes) -> bytes:
        """A page image by hash (from the cache when possible)."""
        data = self.cache.get(digest)
        if data is None:
            data = run(self.kv, lambda tr: self._content(tr, [digest])).get(digest)
            if data is None:
                raise SnapshotTooOld("read: a page image was garbage-collected; start a new transaction")
        return data

    def changes(self, since: int, until: int) -> tuple[set[int], int | None]:
        """Pages committed in (since, until] from the changelog, and the last page count (None
        when nothing was committed)."""
        prefix = keys.changelog_prefix(self.ns)

        def body(tr: Transaction) -> list[tuple[bytes, bytes]]:
            return tr.get_ranges([(prefix + keys.version_bound(since), prefix + keys.version_bound(until), 0, False)],
                                 True)[0]
        pages: set[int] = set()
        count = None
        for _, value in run(self.kv, body):
            count = struct.unpack(">I", value[:4])[0]
            pages.update(struct.unpack(f">{len(value) // 4 - 1}I", value[4:]))
        return pages, count

    def changelog_batch(self, since: int, max_pages: int) -> Batch:
        """The next commits after version `since`, read in one FoundationDB transaction: the
        changelog up to its read version (grouped by version, cut after the version that
        brings the total past `max_pages`; a version is never split), the GC horizon, and,
        when they fit in READ_CHUNK pages, every commit's page images as of its version."""
        prefix = keys.changelog_prefix(self.ns)
        horizon_key = keys.horizon(self.ns)

        def body(tr: Transaction) -> Batch:
            kvs, hz = tr.get_ranges([(prefix + keys.version_bound(since), strinc(prefix), CHANGELOG_LIMIT, False),
                                     (horizon_key, horizon_key + b"\x00", 1, False)], True)
            commits, cut = _group(prefix, kvs, max_pages)
            if len(kvs) == CHANGELOG_LIMIT and not cut:
                if len(commits) < 2:
                    raise RuntimeError("changelog: one version has more entries than a read takes")
                commits.pop()  # the last version may continue past the limit
                cut = True
            batch = Batch(commits, struct.unpack(">Q", hz[0][1])[0] if hz else 0, cut)
            wanted = [(v, p) for v, parts in batch.commits for _, pages in parts for p in pages]
            if len(wanted) <= READ_CHUNK:
                ranges = [(keys.page_prefix(self.ns, p), keys.page_prefix(self.ns, p) + keys.version_bound(v), 1, True)
                          for v, p in wanted]
                digests = {vp: kv[0][1] for vp, kv in zip(wanted, tr.get_ranges(ranges, True)) if kv}
                content = self._content(tr, digests.values())
                batch.images = {vp: content[d] for vp, d in digests.items() if d in content}
            return batch
        return run(self.kv, body)

    def pages_at(self, pgnos: list[int], version: int) -> dict[int, bytes]:
        """Images of many pages as of `version`, in FoundationDB transactions of READ_CHUNK pages."""
        out: dict[int, bytes] = {}
        for i in range(0, len(pgnos), READ_CHUNK):
            out.update({p: image for p, (_, image) in self.read_pages(pgnos[i:i + READ_CHUNK], version).items()})
        return out

    def horizon(self) -> int:
        """The GC horizon: reads at versions below it may miss pages (see gc.py)."""
        value = run(self.kv, lambda tr: get(tr, keys.horizon(self.ns), snapshot=True))
        return struct.unpack(">Q", value)[0] if value else 0

    def store_id(self) -> int:
        """This page store's random id, made by the first process that asks."""
        key = keys.store_id(self.ns)

        def body(tr: Transaction) -> int:
            value = get(tr, key)
            if value is None:
                value = os.urandom(8)
                tr.set(key, value)
            return struct.unpack(">Q", value)[0]
        return run(self.kv, body)

    def page_count(self, version: int) -> int:
        prefix = keys.size_prefix(self.ns)

        def body(tr: Transaction) -> int:
            kvs = tr.get_ranges([(prefix, prefix + keys.version_bound(version), 1, True)], True)[0]
            return struct.unpack(">I", kvs[0][1])[0] if kvs else 0
        return run(self.kv, body)

    def version_at(self, unix_ms: int) -> int:
        """The version of the last commit at or before wall-clock time `unix_ms` (0 if none)."""
        prefix = keys.time_prefix(self.ns)

        def body(tr: Transaction) -> int:
            kvs = tr.get_ranges([(prefix, keys.time_key(self.ns, unix_ms + 1), 1, True)], True)[0]
            return keys.stamp_version(kvs[0][0][-keys.STAMP_LEN:]) if kvs else 0
        return run(self.kv, body)

    def record_frames(self, log_id: str, marks: list[tuple[int, int]]) -> None:
        """Note, for history `log_id`, each (last frame number, version) the capturer is about
        to log (keys.frame_key). Written before the Append: every process that logs the same
        commits from the same position numbers their frames alike, so a rewrite is the same."""
        if not marks:
            return

        def body(tr: Transaction) -> None:
            for frame_no, version in marks:
                tr.set(keys.frame_key(self.ns, log_id, frame_no), struct.pack(">Q", version))
        run(self.kv, body)

    def version_of_frame(self, log_id: str, frame_no: int) -> int:
        """The version of the newest commit of history `log_id` whose frames end at or before
        `frame_no` (0: none is recorded, or GC pruned it)."""
        prefix = keys.frames_prefix(self.ns, log_id)
        frame_no = min(frame_no, 2**63)

        def body(tr: Transaction) -> int:
            kvs = tr.get_ranges([(prefix, keys.frame_key(self.ns, log_id, frame_no + 1), 1, True)], True)[0]
            return struct.unpack(">Q", kvs[0][1])[0] if kvs else 0
        return run(self.kv, body)

    def changed_since(self, pgnos: Iterable[int], version: int, tr: Transaction) -> list[int]:
        """Pages among `pgnos` committed after `version` (serializable reads: they conflict)."""
        pgnos = list(pgnos)
        ranges = [(keys.page_prefix(self.ns, p) + keys.version_bound(version),
                   strinc(keys.page_prefix(self.ns, p)), 1, False) for p in pgnos]
        return [p for p, kvs in zip(pgnos, tr.get_ranges(ranges)) if kvs]
