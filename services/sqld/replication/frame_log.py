"""The durable, append-only frame log of one database, and its compaction.

Files in the log's folder:
  meta.json          log id, page size, record format, the primary that writes this
                     history, the snapshot the log starts after and its chain value
  log                one record per committed transaction, appended and fsynced
  snapshot-<N>.db    the database as of frame N (frames up to N are no longer in `log`)

A record: magic, CRC-32 of the rest, first frame number, frame count, page size,
commit time, the primary's position after the transaction (WAL salts, offset and
checksums, then the page store's version and id), the transaction's chain value
(`common.log_chain`), then per frame its page number, commit size and page image. At
open, a torn tail (crash mid-append) fails its CRC and is cut off. Compaction folds old
transactions into a new snapshot file, then rewrites the log without them; each step is
a rename, so a crash leaves either state.

The chain: an Append names the chain value it continues (`prev_chain`) and who appends
(`primary_id`); it is refused (LOG_FORKED) unless the log's chain agrees at every
transaction boundary it covers that the log still holds. A retry of transactions the log
already holds is accepted when they are the same (same chain value), and refused when they
differ: nothing is ever skipped silently. A log from before the chain (records SQLG/SQLF,
meta without "format") starts a new history when opened.

Size: a transaction may be larger than any message. Its parts (Append with `more`) are
staged in `staging` (not fsynced, emptied at open: a primary that dies mid-sequence leaves
nothing visible) with a running chain value; the last part completes it, and its record is
written from the staging file in PART_BYTES pieces: the body first, then the header
that carries the CRC, then one fsync. Records are never read
whole: at open only their headers (the CRC is checked piecewise), and Frames, snapshots and
compaction read PART_BYTES at a time, so memory per reader stays within a few PART_BYTES
whatever the transaction's size.
"""
from __future__ import annotations

import bisect
import json
import os
import struct
import uuid
import zlib

from sqld.common import log_chain, replication_state
from sqld.common.durable import fsync_dir, write_atomic
from sqld.common.replication_state import FRAME_GAP, LOG_FORKED, LOG_ID_MISMATCH
from sqld.replication import snapshot
from sqld.v1 import replication_pb2 as pb

_MAGIC = b"SQLH"
FORMAT = 2                          # meta.json "format": records carry chain values
_HEAD = struct.Struct(">4sIQIIq")   # magic, crc, first frame no, frames, page size, commit ms
_POS = struct.Struct(">IIQIIQQ")    # wal salt1, salt2, offset, checksum1, checksum2; page store version, id
_POS_FIELDS = ("salt1", "salt2", "offset", "checksum1", "checksum2", "page_store_version", "page_store_id")
_OLD = {b"SQLG": _POS, b"SQLF": struct.Struct(">IIQII")}  # earlier record formats (no chain), still read
_CHAIN = log_chain.DIGEST_SIZE
_FRAME = struct.Struct(">II")       # page no, commit size
_PREFIX = _HEAD.size + _POS.size + _CHAIN  # a record's bytes before its first frame
PART_BYTES = 4 << 20                # page bytes per message (Frames, staging copies, reads)



class LogError(Exception):
    """A request the log cannot serve, named by a ReplicationState (common.replication_state);
    the text starts with the state's short name, as the details the client sees."""

    def __init__(self, state: int, message: str) -> None:
        super().__init__(f"{replication_state.short_name(state)}: {message}")
        self.state = state


def _copy_atomic(src_fd: int, start: int, end: int, path: str) -> None:
    """Write bytes start..end of `src_fd` to `path` atomically, PART_BYTES at a time."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        while start < end:
            chunk = os.pread(src_fd, min(PART_BYTES, end - start), start)
            if not chunk:
                raise OSError(f"copy to {path}: the source ended at {start}, expected {end}")
            f.write(chunk)
            start += len(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


def _body(frames) -> bytes:
    return b"".join(_FRAME.pack(f.page_no, f.commit_size) + f.page for f in frames)


def encode(txn: pb.Transaction, page_size: int, pos: pb.WalPosition) -> bytes:
    """The record of `txn`, whose `chain` must be set (to the log's own computation)."""
    assert len(txn.chain) == _CHAIN, "a record needs the transaction's chain value"
    body = b"".join(_FRAME.pack(f.page_no, f.commit_size) + f.page for f in txn.frames)
    rest = (_HEAD.pack(_MAGIC, 0, txn.frames[0].frame_no, len(txn.frames), page_size, txn.commit_time_ms)[8:]
            + _POS.pack(*(getattr(pos, f) for f in _POS_FIELDS)) + txn.chain + body)
    return _MAGIC + struct.pack(">I", zlib.crc32(rest)) + rest


def decode(data: bytes, offset: int) -> tuple[pb.Transaction, pb.WalPosition, int] | None:
    """The record at `offset` and its length, or None when it is torn or absent. Records of
    the older formats have no chain value (`chain` empty)."""
    if offset + _HEAD.size > len(data):
        return None
    magic, crc, first, n, page_size, ms = _HEAD.unpack_from(data, offset)
    pos_struct = _POS if magic == _MAGIC else _OLD.get(magic)
    if pos_struct is None:
        return None
    chain_size = _CHAIN if magic == _MAGIC else 0
    length = _HEAD.size + pos_struct.size + chain_size + n * (_FRAME.size + page_size)
    if offset + length > len(data) or zlib.crc32(data[offset + 8:offset + length]) != crc:
        return None
    pos = pb.WalPosition(**dict(zip(_POS_FIELDS, pos_struct.unpack_from(data, offset + _HEAD.size))))
    p = offset + _HEAD.size + pos_struct.size
    chain = data[p:p + chain_size]
    frames, p = [], p + chain_size
    for i in range(n):
        page_no, commit = _FRAME.unpack_from(data, p)
        frames.append(pb.Frame(frame_no=first + i, page_no=page_no, commit_size=commit,
                               page=data[p + _FRAME.size:p + _FRAME.size + page_size]))
        p += _FRAME.size + page_size
    return pb.Transaction(frames=frames, commit_time_ms=ms, chain=chain), pos, length


class _Staged:
    """A transaction arriving in parts: its frames so far are in the staging file."""

    def __init__(self, log_id: str, prev_chain: bytes, primary_id: str, page_size: int, first: int) -> None:
        self.key = (log_id, prev_chain, primary_id, page_size)
        self.frame_size = _FRAME.size + page_size
        self.first = first
        self.end = first - 1        # last staged frame no
        self.chainer = log_chain.Chainer(prev_chain, primary_id)


class FrameLog:
    """One database's log. Not thread-safe: the caller serializes appends and compaction."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.meta_path = os.path.join(folder, "meta.json")
        self.log_path = os.path.join(folder, "log")
        self.staging_path = os.path.join(folder, "staging")
        self._staging_fd = os.open(self.staging_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self._staged: _Staged | None = None
        if os.path.exists(self.meta_path):
            with open(self.meta_path) as f:
                self.meta = json.load(f)
        else:
            self.meta = {"log_id": "", "page_size": 0, "snapshot_frame_no": 0}
        self._load()
        if self.meta["log_id"] and self.meta.get("format") != FORMAT:
            # written before the chain: its transactions have no chain values to continue
            old = self.meta["log_id"]
            self.reset()
            self.migrated_from = old
        else:
            self.migrated_from = ""

    # -- state -------------------------------------------------------------------
    @property
    def log_id(self) -> str:
        return self.meta["log_id"]

    @property
    def page_size(self) -> int:
        return self.meta["page_size"]

    @property
    def snapshot_frame_no(self) -> int:
        return self.meta["snapshot_frame_no"]

    @property
    def head(self) -> int:
        return self._last[-1] if self._last else self.snapshot_frame_no

    @property
    def primary_id(self) -> str:
        """Who writes this history ("" until its first transaction)."""
        return self.meta.get("primary_id", "")

    @property
    def head_chain(self) -> bytes:
        return self._chain[-1] if self._chain else bytes.fromhex(self.meta.get("snapshot_chain", ""))

    def chain_at(self, frame_no: int) -> bytes | None:
        """The chain value after the transaction ending at `frame_no` (the snapshot's, for the
        snapshot's frame), or None when no transaction the log holds ends there."""
        if frame_no == self.snapshot_frame_no:
            return bytes.fromhex(self.meta.get("snapshot_chain", ""))
        i = bisect.bisect_left(self._last, frame_no)
        return self._chain[i] if i < len(self._last) and self._last[i] == frame_no else None

    def snapshot_path(self, frame_no: int | None = None) -> str:
        n = self.snapshot_frame_no if frame_no is None else frame_no
        return os.path.join(self.folder, f"snapshot-{n}.db")

    def _load(self) -> None:
        """Index the log's records (headers only; each CRC checked PART_BYTES at a time); cut
        off a torn tail."""
        self._first: list[int] = []   # first frame no of each transaction
        self._last: list[int] = []    # last frame no of each transaction
        self._offset: list[int] = []
        self._time: list[int] = []
        self._chain: list[bytes] = []
        self.wal_position = pb.WalPosition(**self.meta.get("wal_position", {}))
        self._fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT, 0o644)
        file_size = os.fstat(self._fd).st_size
        off = 0
        while (rec := self._record_at(off, file_size)) is not None:
            first, n, ms, pos, chain, length = rec
            last = first + n - 1
            if last > self.snapshot_frame_no:
                self._index(first, last, off, ms, chain)
            self.wal_position = pos
            off += length
        if off != file_size:
            os.ftruncate(self._fd, off)
            os.fsync(self._fd)
        self._size = off

    def _record_at(self, off: int, file_size: int):
        """(first frame no, frames, commit ms, position, chain, length) of the record at `off`,
        or None when it is torn or absent."""
        if off + _HEAD.size > file_size:
            return None
        head = os.pread(self._fd, _HEAD.size + _POS.size + _CHAIN, off)
        magic, crc, first, n, page_size, ms = _HEAD.unpack_from(head, 0)
        pos_struct = _POS if magic == _MAGIC else _OLD.get(magic)
        if pos_struct is None or n == 0:
            return None
        chain_size = _CHAIN if magic == _MAGIC else 0
        length = _HEAD.size + pos_struct.size + chain_size + n * (_FRAME.size + page_size)
        if off + length > file_size:
            return None
        got, p = 0, off + 8
        while p < off + length:
            chunk = os.pread(self._fd, min(PART_BYTES, off + length - p), p)
            got = zlib.crc32(chunk, got)
            p += len(chunk)
        if got != crc:
            return None
        pos = pb.WalPosition(**dict(zip(_POS_FIELDS, pos_struct.unpack_from(head, _HEAD.size))))
        chain = head[_HEAD.size + pos_struct.size:_HEAD.size + pos_struct.size + chain_size]
        return first, n, ms, pos, chain, length

    def _index(self, first: int, last: int, offset: int, ms: int, chain: bytes) -> None:
        self._first.append(first)
        self._last.append(last)
        self._offset.append(offset)
        self._time.append(ms)
        self._chain.append(chain)

    # -- writing -----------------------------------------------------------------
    def reset(self, page_size: int = 0) -> str:
        """Start a new history: a new log id, no frames, an empty snapshot at frame 0."""
        old = self.snapshot_path()
        os.close(self._fd)
        log_id = uuid.uuid4().hex
        self.meta = {"log_id": log_id, "page_size": page_size, "snapshot_frame_no": 0, "format": FORMAT,
                     "primary_id": "", "snapshot_chain": log_chain.genesis(log_id).hex()}
        open(self.snapshot_path(0), "wb").close()
        write_atomic(self.log_path, b"")
        write_atomic(self.meta_path, json.dumps(self.meta).encode())
        if os.path.exists(old) and old != self.snapshot_path(0):
            os.remove(old)
        self._drop_staged()
        self._load()
        return self.log_id

    def append(self, log_id: str, page_size: int, txns: list[pb.Transaction], pos: pb.WalPosition,
               prev_chain: bytes = b"", primary_id: str = "", more: bool = False) -> int:
        """Make `txns` durable; the new head. They must continue the log: frame numbers that
        follow on, chain values that agree with the log's wherever the log holds them.

        Transactions the log already holds are checked, not written again: a retried append of
        the same transactions is harmless, one of different transactions is LOG_FORKED.

        `more`: `txns` is one part of a transaction that goes on (see `_stage`); nothing becomes
        visible. Without it, a first transaction that continues the staged frames completes them.
        """
        if log_id != self.log_id:
            raise LogError(LOG_ID_MISMATCH, f"the log of this database is {self.log_id!r}, not {log_id!r}; "
                           "call Hello again")
        if self.page_size and page_size != self.page_size:
            raise LogError(FRAME_GAP, f"page size {page_size} differs from the log's {self.page_size}")
        txns = [t for t in txns if t.frames]
        if not txns:
            return self.head
        if self.primary_id and primary_id != self.primary_id:
            raise LogError(LOG_FORKED, f"this history is written by primary {self.primary_id!r}, "
                           f"not {primary_id!r}")
        for t in txns:
            first, last = t.frames[0].frame_no, t.frames[-1].frame_no
            if last - first + 1 != len(t.frames) or any(f.frame_no != first + i for i, f in enumerate(t.frames)):
                raise ValueError(f"append: frames {first}..{last} are not numbered one by one")
            if any(len(f.page) != page_size for f in t.frames):
                raise ValueError(f"append: frames {first}..{last} hold pages of another size than {page_size}")
        if more:
            if len(txns) != 1 or any(f.commit_size for f in txns[0].frames):
                raise ValueError("append: a part (more) holds one transaction's frames, without its commit frame")
            self._stage(log_id, page_size, txns[0], prev_chain, primary_id)
            return self.head
        staged = self._staged
        head = self.head
        start = txns[0].frames[0].frame_no
        if staged is not None and staged.key == (log_id, prev_chain, primary_id, page_size) \
                and start == staged.end + 1 \
                and start > staged.first:
            base = staged.first - 1
        else:
            base = start - 1
            staged = None
        if base > head:
            raise LogError(FRAME_GAP, f"append starts at frame {base + 1}, the log's head is {head}")
        self._check_chain(base, prev_chain, "the chain value it continues")
        fresh: list[tuple[pb.Transaction, bytes, _Staged | None]] = []
        chain, end = prev_chain, base
        for k, t in enumerate(txns):
            first, last = t.frames[0].frame_no, t.frames[-1].frame_no
            part_of = staged if k == 0 else None
            begin = part_of.first if part_of is not None else first
            if begin != end + 1 or (part_of is not None and first != part_of.end + 1):
                raise ValueError(f"append: frames {first}..{last} do not follow frame {end} one by one")
            if part_of is not None:
                chainer = part_of.chainer.copy()  # the staged state stays as it was if this fails
                chainer.update(t.frames)
                chain = chainer.digest()
            else:
                chain = log_chain.next_chain(chain, primary_id, t.frames)
            if t.chain and t.chain != chain:
                raise ValueError(f"append: the chain value of frames {begin}..{last} does not match them")
            if last <= head:
                self._check_chain(last, chain, f"frames {begin}..{last}")
            elif begin <= head:
                raise LogError(LOG_FORKED, f"frames {begin}..{last} overlap the log's head transaction, "
                               f"which ends at frame {head}")
            else:
                fresh.append((t, chain, part_of))
            end = last
        if not fresh:
            if self._staged is not None:
                self._drop_staged()  # completed, and held already
            return head
        if not self.page_size or not self.primary_id:
            self.meta["page_size"], self.meta["primary_id"] = page_size, primary_id
            write_atomic(self.meta_path, json.dumps(self.meta).encode())
        for t, chain, part_of in fresh:
            first = part_of.first if part_of is not None else t.frames[0].frame_no
            last = t.frames[-1].frame_no
            pieces = self._staged_pieces(part_of) if part_of is not None else iter(())
            length = self._write_record(first, last - first + 1, page_size, t.commit_time_ms, pos, chain,
                                        pieces, _body(t.frames))
            self._index(first, last, self._size, t.commit_time_ms, chain)
            self._size += length
        os.fsync(self._fd)
        self.wal_position = pos
        if self._staged is not None:
            self._drop_staged()  # completed, or the log moved past it
        return self.head

    def _write_record(self, first: int, n: int, page_size: int, ms: int, pos: pb.WalPosition, chain: bytes,
                      pieces, tail: bytes) -> int:
        """Write a record at the end of the log: the body (`pieces`, then `tail`) first, then the
        header with the CRC over both; its length. Not fsynced: the caller does."""
        rest = (_HEAD.pack(_MAGIC, 0, first, n, page_size, ms)[8:]
                + _POS.pack(*(getattr(pos, f) for f in _POS_FIELDS)) + chain)
        crc = zlib.crc32(rest)
        p = self._size + _PREFIX
        for piece in _then(pieces, tail):
            os.pwrite(self._fd, piece, p)
            crc = zlib.crc32(piece, crc)
            p += len(piece)
        os.pwrite(self._fd, _MAGIC + struct.pack(">I", crc) + rest, self._size)
        return p - self._size

    def _stage(self, log_id: str, page_size: int, part: pb.Transaction, prev_chain: bytes, primary_id: str) -> None:
        """Keep a part of a transaction: the first part (at a transaction boundary the log's chain
        agrees with), the next one, or a retry of a staged one (checked to be the same)."""
        first, last = part.frames[0].frame_no, part.frames[-1].frame_no
        s = self._staged
        if s is not None and s.key == (log_id, prev_chain, primary_id, page_size) and s.first < first <= s.end + 1:
            if first <= s.end:
                if last > s.end or self._staged_bytes(s, first, last) != _body(part.frames):
                    self._drop_staged()
                    raise LogError(FRAME_GAP, f"part {first}..{last} differs from the staged frames; "
                                   "send the transaction again from its start")
                return  # a retried part
        else:
            if first - 1 > self.head:
                self._drop_staged()
                raise LogError(FRAME_GAP, f"part {first}..{last} follows nothing staged and not the log's "
                               f"head {self.head}; send the transaction again from its start")
            self._check_chain(first - 1, prev_chain, "the chain value it continues")
            self._drop_staged()
            s = self._staged = _Staged(log_id, prev_chain, primary_id, page_size, first)
        os.pwrite(self._staging_fd, _body(part.frames), (first - s.first) * s.frame_size)
        s.chainer.update(part.frames)
        s.end = last

    def _staged_bytes(self, s: _Staged, first: int, last: int) -> bytes:
        return os.pread(self._staging_fd, (last - first + 1) * s.frame_size, (first - s.first) * s.frame_size)

    def _staged_pieces(self, s: _Staged):
        """The staged frames' bytes, PART_BYTES at a time."""
        size, p = (s.end - s.first + 1) * s.frame_size, 0
        while p < size:
            chunk = os.pread(self._staging_fd, min(PART_BYTES, size - p), p)
            yield chunk
            p += len(chunk)

    def _drop_staged(self) -> None:
        self._staged = None
        os.ftruncate(self._staging_fd, 0)

    def _check_chain(self, frame_no: int, chain: bytes, what: str) -> None:
        """LOG_FORKED unless the log's chain value after `frame_no` is `chain` (frames folded
        into the snapshot before it cannot be compared; they are never written again)."""
        if frame_no < self.snapshot_frame_no:
            return
        held = self.chain_at(frame_no)
        if held is None:
            raise LogError(LOG_FORKED, f"{what}: no transaction of the log ends at frame {frame_no}")
        if held != chain:
            raise LogError(LOG_FORKED, f"{what}: the log holds other transactions up to frame {frame_no} "
                           f"(chain {held.hex()[:16]}, append {chain.hex()[:16]})")

    # -- reading -----------------------------------------------------------------
    def read_part(self, frame_no: int, max_bytes: int = PART_BYTES) -> tuple[list[pb.Transaction], bool]:
        """Transactions from `frame_no` on (a transaction boundary, or the next frame of one being
        sent in parts), about `max_bytes` of pages (at least one frame if any); whether the last
        one is cut short (its next frames follow). A part carries the chain value only when it
        ends its transaction."""
        i = bisect.bisect_left(self._last, frame_no)
        fsz = _FRAME.size + self.page_size
        out: list[pb.Transaction] = []
        size = 0
        while i < len(self._last) and (not out or size < max_bytes):
            first, last = self._first[i], self._last[i]
            start = max(first, frame_no)
            n = min(last - start + 1, max(1, (max_bytes - size) // fsz))
            data = os.pread(self._fd, n * fsz, self._offset[i] + _PREFIX + (start - first) * fsz)
            frames = [pb.Frame(frame_no=start + k, page_no=_FRAME.unpack_from(data, k * fsz)[0],
                               commit_size=_FRAME.unpack_from(data, k * fsz)[1],
                               page=data[k * fsz + _FRAME.size:(k + 1) * fsz]) for k in range(n)]
            whole = start + n - 1 == last
            out.append(pb.Transaction(frames=frames, commit_time_ms=self._time[i],
                                      chain=self._chain[i] if whole else b""))
            size += n * fsz
            if not whole:
                return out, True
            i += 1
        return out, False

    def read_from(self, frame_no: int, max_bytes: int = PART_BYTES) -> list[pb.Transaction]:
        """Whole transactions whose frames start at or after `frame_no` (at least one if any);
        for tests and small logs: a transaction is read whole."""
        i = bisect.bisect_left(self._last, frame_no)
        out: list[pb.Transaction] = []
        size = 0
        while i < len(self._last) and (not out or size < max_bytes):
            txns, _ = self.read_part(self._first[i], max_bytes=1 << 62)
            out.append(txns[0])
            size += sum(len(f.page) for f in txns[0].frames)
            i += 1
        return out

    def frames(self, upto: int):
        """Every frame of the log's transactions that end at or before `upto`, in order,
        PART_BYTES at a time (for building snapshots)."""
        nxt = self.snapshot_frame_no + 1
        while nxt <= upto:
            txns, _ = self.read_part(nxt)
            if not txns:
                return
            for t in txns:
                for f in t.frames:
                    if f.frame_no > upto:
                        return
                    yield f
                nxt = t.frames[-1].frame_no + 1

    def commit_time_after(self, frame_no: int) -> int | None:
        """Commit time (ms) of the first transaction after `frame_no`, None if there is none."""
        i = bisect.bisect_right(self._last, frame_no)
        return self._time[i] if i < len(self._time) else None

    # -- point-in-time restore (commit times rise with frame numbers: one primary's clock) ------
    def commit_at_or_before(self, frame_no: int) -> int | None:
        """The last frame of the last transaction ending at or before `frame_no`; the snapshot's
        frame when that is the log's start; None when `frame_no` is older than the log keeps."""
        if frame_no < self.snapshot_frame_no:
            return None
        i = bisect.bisect_right(self._last, frame_no)
        return self._last[i - 1] if i else self.snapshot_frame_no

    def commit_at_time(self, unix_ms: int) -> int | None:
        """The last frame of the last transaction committed at or before `unix_ms`; None when
        the log keeps nothing that old (every transaction it holds is later and it starts from
        a snapshot, whose time is unknown)."""
        i = bisect.bisect_right(self._time, unix_ms)
        if i:
            return self._last[i - 1]
        return 0 if self.snapshot_frame_no == 0 else None

    def first_frame_since(self, unix_ms: int) -> int | None:
        """The first frame of the first transaction committed at or after `unix_ms` (None: none)."""
        i = bisect.bisect_left(self._time, unix_ms)
        return self._first[i] if i < len(self._first) else None

    @property
    def transactions(self) -> int:
        return len(self._last)

    # -- compaction --------------------------------------------------------------
    def compact(self, keep_frames: int) -> int:
        """Fold transactions older than head - keep_frames into a new snapshot; the snapshot's frame no."""
        i = bisect.bisect_right(self._last, self.head - keep_frames)
        if i == 0:
            return self.snapshot_frame_no
        upto = self._last[i - 1]
        new_path = self.snapshot_path(upto)
        snapshot.build(self.snapshot_path(), new_path, self.page_size, self.frames(upto))
        old_path = self.snapshot_path()
        self.meta["snapshot_frame_no"] = upto
        self.meta["snapshot_chain"] = self._chain[i - 1].hex()
        p = self.wal_position
        self.meta["wal_position"] = {f: getattr(p, f) for f in _POS_FIELDS}
        write_atomic(self.meta_path, json.dumps(self.meta).encode())
        os.remove(old_path)
        start = self._offset[i] if i < len(self._offset) else self._size
        _copy_atomic(self._fd, start, self._size, self.log_path)
        os.close(self._fd)
        self._load()
        return upto

    def close(self) -> None:
        os.close(self._fd)
        os.close(self._staging_fd)


def _then(pieces, tail: bytes):
    yield from pieces
    if tail:
        yield tail
