"""SQLite's WAL file format, read from outside SQLite: header, frames, salts, checksums.

Format (https://sqlite.org/fileformat2.html#walformat): a 32-byte header (magic, format
version, page size, checkpoint sequence, salt-1, salt-2, checksum of the first 24 bytes),
then frames of a 24-byte header (page number, database size in pages on a commit frame
else 0, salt-1, salt-2, cumulative checksum) and a page image. All integers big-endian;
the checksum adds 32-bit words in the byte order the magic names. A frame is valid when
its salts equal the header's and its checksum continues the chain; the first invalid
frame ends the log (what follows is left over from an earlier generation or is being
written now).
"""
from __future__ import annotations

import dataclasses
import os
import struct

HEADER_SIZE = 32
FRAME_HEADER_SIZE = 24
MAGIC_LE = 0x377F0682  # checksums over little-endian words
MAGIC_BE = 0x377F0683  # checksums over big-endian words
_MASK = 0xFFFFFFFF


class WalError(Exception):
    """The WAL header cannot be used."""


@dataclasses.dataclass(frozen=True)
class WalHeader:
    magic: int
    page_size: int
    checkpoint_seq: int
    salt1: int
    salt2: int
    checksum1: int
    checksum2: int

    @property
    def big_endian(self) -> bool:
        return self.magic == MAGIC_BE

    @property
    def frame_size(self) -> int:
        return FRAME_HEADER_SIZE + self.page_size


@dataclasses.dataclass(frozen=True)
class WalFrame:
    page_no: int
    commit_size: int  # database size in pages on a commit frame, else 0
    page: bytes


@dataclasses.dataclass
class WalRead:
    """What `read_frames` found: whole committed transactions and where they end."""
    transactions: list[list[WalFrame]]
    end_offset: int          # file offset just after the last commit frame
    checksum: tuple[int, int]  # running checksum at end_offset
    stop: str                # why reading stopped: eof, salt-mismatch, checksum-mismatch


def checksum(data: bytes, s1: int, s2: int, big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum of `data` (a multiple of 8 bytes), continuing from (s1, s2)."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    it = iter(words)
    for a, b in zip(it, it):
        s1 = (s1 + a + s2) & _MASK
        s2 = (s2 + b + s1) & _MASK
    return s1, s2


def parse_header(data: bytes) -> WalHeader:
    """The WAL header in the first 32 bytes of `data`; raises WalError when it is not valid."""
    if len(data) < HEADER_SIZE:
        raise WalError(f"read wal header: {len(data)} bytes, need {HEADER_SIZE}")
    magic, version, page_size, seq, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:HEADER_SIZE])
    if magic not in (MAGIC_LE, MAGIC_BE):
        raise WalError(f"read wal header: bad magic {magic:#x}")
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise WalError(f"read wal header: bad page size {page_size}")
    if checksum(data[:24], 0, 0, magic == MAGIC_BE) != (c1, c2):
        raise WalError("read wal header: checksum mismatch")
    return WalHeader(magic, page_size, seq, salt1, salt2, c1, c2)


def read_frames(data: bytes, header: WalHeader, offset: int, running: tuple[int, int]) -> WalRead:
    """Committed transactions in `data` (the WAL file's bytes from `offset` on).

    `running` is the checksum chain at `offset` (the header's checksum at offset 32).
    Frames after the last commit frame are not returned: they belong to a transaction
    that has not committed (or was rolled back and will be overwritten).
    """
    fs = header.frame_size
    pos = 0
    s1, s2 = running
    txns: list[list[WalFrame]] = []
    current: list[WalFrame] = []
    end, end_sum = offset, running
    stop = "eof"
    while pos + fs <= len(data):
        page_no, commit, salt1, salt2, c1, c2 = struct.unpack(">6I", data[pos:pos + FRAME_HEADER_SIZE])
        if (salt1, salt2) != (header.salt1, header.salt2):
            stop = "salt-mismatch"
            break
        page = data[pos + FRAME_HEADER_SIZE:pos + fs]
        s1, s2 = checksum(data[pos:pos + 8], s1, s2, header.big_endian)
        s1, s2 = checksum(page, s1, s2, header.big_endian)
        if (s1, s2) != (c1, c2) or page_no == 0:
            stop = "checksum-mismatch"
            break
        current.append(WalFrame(page_no, commit, bytes(page)))
        pos += fs
        if commit:
            txns.append(current)
            current = []
            end, end_sum = offset + pos, (s1, s2)
    return WalRead(txns, end, end_sum, stop)


def read_file(path: str, offset_for) -> tuple[WalHeader | None, int, bytes]:
    """Read the WAL at `path`: its header (None when missing or shorter than a header),
    the offset chosen by `offset_for(header)`, and the file's bytes from that offset."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
            if len(head) < HEADER_SIZE:
                return None, HEADER_SIZE, b""
            header = parse_header(head)
            offset = offset_for(header)
            f.seek(offset)
            return header, offset, f.read()
    except FileNotFoundError:
        return None, HEADER_SIZE, b""


# -- reading without holding the WAL in memory ------------------------------------------
SCAN_BYTES = 4 << 20  # bytes of frames read at a time by `scan`
_SHM_HEADER = struct.Struct("=IIIBBHIIII8sII")  # SQLite's WalIndexHdr, native byte order


@dataclasses.dataclass(frozen=True)
class WalTxn:
    """A committed transaction found by `scan`: where its frames are, not their pages."""
    offset: int            # file offset of its first frame
    page_nos: list[int]    # page number of each frame
    commit_size: int       # database size in pages after it
    end_checksum: tuple[int, int]  # running checksum after its commit frame

    def end(self, frame_size: int) -> int:
        return self.offset + len(self.page_nos) * frame_size


@dataclasses.dataclass
class WalScan:
    header: WalHeader
    transactions: list[WalTxn]
    end_offset: int
    checksum: tuple[int, int]
    stop: str


def shm_frames(shm_fd: int, header: WalHeader, raw_header: bytes) -> int:
    """How many frames of the WAL generation `header` SQLite's wal-index (the -shm file, read
    through `shm_fd`, -1 when missing) says are committed; 0 when it cannot tell (missing, being
    written, another generation). Only meaningful while a connection of this process keeps the
    database open and has read it (the index is then current: SQLite rebuilds it when the first
    connection opens). The caller keeps `shm_fd` open as long as SQLite uses the file: closing
    a descriptor of the -shm drops this process's SQLite locks on it (capturer.HeldOpen)."""
    if shm_fd < 0:
        return 0
    raw = os.pread(shm_fd, 2 * _SHM_HEADER.size, 0)
    if len(raw) < 2 * _SHM_HEADER.size or raw[:_SHM_HEADER.size] != raw[_SHM_HEADER.size:]:
        return 0
    _, _, _, is_init, _, _, mx_frame, _, _, _, salts, _, _ = _SHM_HEADER.unpack_from(raw, 0)
    if not is_init or salts != raw_header[16:24]:
        return 0
    return mx_frame


def scan(path: str, offset_for, trusted_frames=None) -> WalScan | None:
    """Committed transactions of the WAL at `path` from the offset `offset_for(header)` picks
    (the running checksum there is `offset_for`'s second value), reading SCAN_BYTES at a time
    and keeping only frame positions; None when there is no WAL. `trusted_frames(header, raw)`
    gives how many frames SQLite already validated (their checksums are read, not computed:
    CPython needs ~75 ms per MiB to compute them)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return None
    with f:
        raw = f.read(HEADER_SIZE)
        if len(raw) < HEADER_SIZE:
            return None
        header = parse_header(raw)
        offset, running = offset_for(header)
        trusted_end = HEADER_SIZE + (trusted_frames(header, raw) if trusted_frames else 0) * header.frame_size
        fs = header.frame_size
        per_read = max(1, SCAN_BYTES // fs)
        s1, s2 = running
        txns: list[WalTxn] = []
        pages: list[int] = []
        start = offset
        pos = offset
        end, end_sum = offset, running
        stop = "eof"
        while stop == "eof":
            data = os.pread(f.fileno(), per_read * fs, pos)
            if len(data) < fs:
                break
            for k in range(len(data) // fs):
                base = k * fs
                page_no, commit, salt1, salt2, c1, c2 = struct.unpack_from(">6I", data, base)
                if (salt1, salt2) != (header.salt1, header.salt2):
                    stop = "salt-mismatch"
                    break
                if pos + base + fs <= trusted_end:
                    s1, s2 = c1, c2
                else:
                    s1, s2 = checksum(data[base:base + 8], s1, s2, header.big_endian)
                    s1, s2 = checksum(data[base + FRAME_HEADER_SIZE:base + fs], s1, s2, header.big_endian)
                if (s1, s2) != (c1, c2) or page_no == 0:
                    stop = "checksum-mismatch"
                    break
                if not pages:
                    start = pos + base
                pages.append(page_no)
                if commit:
                    txns.append(WalTxn(start, pages, commit, (s1, s2)))
                    pages = []
                    end, end_sum = pos + base + fs, (s1, s2)
            pos += len(data) // fs * fs
        return WalScan(header, txns, end, end_sum, stop)


def read_range(fd: int, header: WalHeader, txn: WalTxn, first: int, count: int) -> list[WalFrame]:
    """Frames first..first+count-1 (0-based) of `txn`, checked to be the ones `scan` found."""
    fs = header.frame_size
    data = os.pread(fd, count * fs, txn.offset + first * fs)
    out = []
    for k in range(count):
        page_no, commit, salt1, salt2 = struct.unpack_from(">4I", data, k * fs)
        if len(data) < (k + 1) * fs or (salt1, salt2) != (header.salt1, header.salt2) \
                or page_no != txn.page_nos[first + k]:
            raise WalError(f"read wal frames at {txn.offset + (first + k) * fs}: the WAL changed while "
                           "it was being captured")
        out.append(WalFrame(page_no, commit, data[k * fs + FRAME_HEADER_SIZE:(k + 1) * fs]))
    return out
