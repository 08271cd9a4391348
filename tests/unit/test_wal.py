"""The WAL parser on real WAL bytes written by SQLite (apsw), and the frame log's torn-tail handling."""
from __future__ import annotations

import struct

import apsw

from sqld.replication.frame_log import FrameLog
from sqld.storage.capture import wal
from sqld.v1 import replication_pb2 as pb


def _make_wal(tmp_path) -> bytes:
    path = str(tmp_path / "w.db")
    c = apsw.Connection(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA wal_autocheckpoint=0")
    c.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    c.execute("CREATE TABLE t (a)")
    c.execute("INSERT INTO t VALUES (randomblob(3000))")
    c.execute("BEGIN; INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); COMMIT;")
    data = open(path + "-wal", "rb").read()
    c.close()
    return data


def _read(data: bytes) -> wal.WalRead:
    header = wal.parse_header(data)
    return wal.read_frames(data[32:], header, 32, (header.checksum1, header.checksum2))


def test_ok_wal_gives_three_committed_transactions(tmp_path):
    data = _make_wal(tmp_path)
    header = wal.parse_header(data)
    assert header.page_size == 4096
    got = _read(data)
    assert got.stop == "eof" and len(got.transactions) == 3
    assert got.end_offset == len(data)
    assert all(t[-1].commit_size > 0 and all(f.commit_size == 0 for f in t[:-1]) for t in got.transactions)


def test_salt_mismatch_ends_the_log(tmp_path):
    data = bytearray(_make_wal(tmp_path))
    fs = 24 + 4096
    n_first = len(_read(bytes(data)).transactions[0])
    third_frame = 32 + fs * n_first  # first frame of the second transaction
    struct.pack_into(">I", data, third_frame + 8, 12345)  # its salt-1
    got = _read(bytes(data))
    assert got.stop == "salt-mismatch" and len(got.transactions) == 1
    assert got.end_offset == third_frame


def test_checksum_mismatch_ends_the_log(tmp_path):
    data = bytearray(_make_wal(tmp_path))
    data[-100] ^= 0xFF  # a byte of the last frame's page
    got = _read(bytes(data))
    assert got.stop == "checksum-mismatch" and len(got.transactions) == 2


def test_bad_header_is_refused(tmp_path):
    data = bytearray(_make_wal(tmp_path))
    data[20] ^= 1
    try:
        wal.parse_header(bytes(data))
    except wal.WalError as exc:
        assert "checksum" in str(exc)
    else:
        raise AssertionError("a corrupt header was accepted")


def test_frame_log_cuts_a_torn_tail_and_compacts(tmp_path):
    lg = FrameLog(str(tmp_path / "log"))
    log_id = lg.reset()
    page = lambda b: bytes([b]) * 512  # noqa: E731
    for i in range(1, 6):
        lg.append(log_id, 512, [pb.Transaction(frames=[pb.Frame(frame_no=i, page_no=1, commit_size=1, page=page(i))])],
                  pb.WalPosition(offset=i), lg.head_chain, "p")
    assert lg.head == 5
    lg.close()
    with open(tmp_path / "log" / "log", "ab") as f:
        f.write(b"SQLF" + b"\0" * 20)  # a crash in the middle of an append
    lg = FrameLog(str(tmp_path / "log"))
    assert lg.head == 5 and lg.wal_position.offset == 5
    assert [t.frames[0].frame_no for t in lg.read_from(4)] == [4, 5]
    assert lg.compact(keep_frames=2) == 3
    assert lg.snapshot_frame_no == 3 and lg.head == 5
    assert open(lg.snapshot_path(), "rb").read() == page(3)
    assert [t.frames[0].frame_no for t in lg.read_from(1)] == [4, 5]
