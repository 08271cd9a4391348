"""The page store's key layout in FoundationDB (one namespace per database).

    <ns> p <pgno:u32 BE> <versionstamp:10>   → sha256 of the page image    (page index)
    <ns> c <sha256:32>                        → page image                   (content, deduplicated)
    <ns> n <versionstamp:10>                  → page count u32 BE            (file size history)
    <ns> t <unix ms:u64 BE> <versionstamp:10> → b""                          (time index, time travel)
    <ns> l <versionstamp:10> <chunk:u16 BE>   → page count, then changed page numbers (u32 BE each)
    <ns> w                                    → a random id of the last commit (GC's race guard)

A versionstamp is the commit version (8 bytes BE) and a batch order (2 bytes), so keys of one
page sort by version and "page P as of version V" is a reverse range read, limit 1, ending
before <pgno> <V+1>. <ns> is 0x15 and 8 bytes of SHA-256("<prefix><database>"). And:
    <ns> g                                    → GC sweep epoch (commits re-check images when it moved)
    <ns> h                                    → GC horizon u64 BE: reads below this version may miss pages
    <ns> s                                    → page store id u64 BE, random, made once (replication)
    <ns> f                                    → changelog floor u64 BE: entries at or below may be pruned
    <ns> i <unix ms:u64 BE> <random:8>        → versionstamp + attempt (a commit's id: idempotent under 1021)
    <ns> r <log:8> <frame no:u64 BE>          → version u64 BE: the replication log's frames (capture.py)

`r`: for each page-store version the capturer logged, the last frame number of its commits
in the replication history whose id hashes to <log> (8 bytes of SHA-256 of the log id), so a
restore AS_OF_FRAME N finds the newest version whose frames end at or before N.
"""
from __future__ import annotations

import hashlib
import struct

PAGE, CONTENT, SIZE, TIME, WRITE, CHANGES, FRAMES = b"p", b"c", b"n", b"t", b"w", b"l", b"r"
CHANGES_PER_KEY = 20_000  # page numbers per changelog value (FoundationDB values: 100 kB)
STAMP_LEN = 10
PLACEHOLDER = b"\x00" * STAMP_LEN


def namespace(prefix: str, database: str) -> bytes:
    """A short namespace for "<prefix><database>": 8 bytes of its SHA-256 after a tag byte, so
    that per-page keys stay small (conflict ranges count against the 10 MB limit)."""
    return b"\x15" + hashlib.sha256(f"{prefix}{database}".encode()).digest()[:8]


def version_bound(version: int) -> bytes:
    """The first versionstamp of version+1: keys below it were committed at or before `version`."""
    return struct.pack(">Q", version + 1)


def stamp_version(stamp: bytes) -> int:
    return struct.unpack(">Q", stamp[:8])[0]


def page_prefix(ns: bytes, pgno: int) -> bytes:
    return ns + PAGE + struct.pack(">I", pgno)


def page_key_pgno(ns: bytes, key: bytes) -> int:
    return struct.unpack(">I", key[len(ns) + 1:len(ns) + 5])[0]


def content_key(ns: bytes, digest: bytes) -> bytes:
    return ns + CONTENT + digest


def size_prefix(ns: bytes) -> bytes:
    return ns + SIZE


def time_prefix(ns: bytes) -> bytes:
    return ns + TIME


def time_key(ns: bytes, unix_ms: int) -> bytes:
    return ns + TIME + struct.pack(">Q", unix_ms)


def gc_epoch(ns: bytes) -> bytes:
    return ns + b"g"


def write_marker(ns: bytes) -> bytes:
    return ns + WRITE


def changelog_prefix(ns: bytes) -> bytes:
    return ns + CHANGES


def horizon(ns: bytes) -> bytes:
    return ns + b"h"


def store_id(ns: bytes) -> bytes:
    return ns + b"s"


def changelog_floor(ns: bytes) -> bytes:
    return ns + b"f"


def commit_id_prefix(ns: bytes) -> bytes:
    return ns + b"i"


def frames_prefix(ns: bytes, log_id: str = "") -> bytes:
    """The frame index of history `log_id` (all histories when empty)."""
    return ns + FRAMES + (hashlib.sha256(log_id.encode()).digest()[:8] if log_id else b"")


def frame_key(ns: bytes, log_id: str, frame_no: int) -> bytes:
    return frames_prefix(ns, log_id) + struct.pack(">Q", frame_no)
