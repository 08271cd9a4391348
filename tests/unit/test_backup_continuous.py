"""Continuous backup's restore (sqld/backup/continuous.py): base + whole transactions of the
frames file, in frame order; an incomplete transaction and a torn record at the tail (a crash
while shipping) are left out; a gap in frame numbers is refused."""
from __future__ import annotations

import struct

import apsw
import pytest

from sqld.backup import continuous
from sqld.v1 import replication_pb2 as pb

PAGE = 4096


def _db(path, rows: int) -> bytes:
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA page_size=4096; CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, pad BLOB)")
    conn.execute("WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?) "
                 "INSERT OR REPLACE INTO t SELECT n, zeroblob(200) FROM s", (rows,))
    conn.close()
    return path.read_bytes()


def _frames(data: bytes, first: int, commit: bool = True) -> list[pb.Frame]:
    n = len(data) // PAGE
    return [pb.Frame(frame_no=first + i, page_no=i + 1, page=data[i * PAGE:(i + 1) * PAGE],
                     commit_size=n if commit and i == n - 1 else 0) for i in range(n)]


def _record(batch: pb.FrameBatch) -> bytes:
    data = batch.SerializeToString()
    return struct.pack(">I", len(data)) + data


def _generation(tmp_path, base: bytes, records: bytes):
    folder = tmp_path / "db"
    gen = folder / "logid-7"
    gen.mkdir(parents=True)
    (gen / "base.db").write_bytes(base)
    (gen / "frames").write_bytes(records)
    (folder / "current").write_text("logid-7")
    return folder


def test_whole_transactions_are_applied_and_a_torn_tail_is_not(tmp_path):
    v1 = _db(tmp_path / "src.db", 10)
    v2 = _db(tmp_path / "src.db", 200)
    v3 = _db(tmp_path / "src.db", 400)
    t2 = _frames(v2, 8)
    t3 = _frames(v3, 8 + len(t2), commit=False)  # its commit frame never arrived
    records = (_record(pb.FrameBatch(transactions=[pb.Transaction(frames=t2[:2])], page_size=PAGE, more=True))
               + _record(pb.FrameBatch(transactions=[pb.Transaction(frames=t2[2:])], page_size=PAGE))
               + _record(pb.FrameBatch(transactions=[pb.Transaction(frames=t3)], page_size=PAGE)))
    torn = _record(pb.FrameBatch(transactions=[pb.Transaction(frames=_frames(v3, 100))], page_size=PAGE))[:500]
    folder = _generation(tmp_path, v1, records + torn)
    out = tmp_path / "restored.db"
    gen, applied = continuous.restore_one(str(folder), str(out))
    assert (gen, applied) == ("logid-7", 7 + len(t2))
    assert out.read_bytes() == v2
    assert continuous.last_frame(str(folder / "logid-7" / "frames")) == 7 + len(t2) + len(t3)


def test_a_gap_in_frame_numbers_is_refused(tmp_path):
    v1 = _db(tmp_path / "src.db", 10)
    v2 = _db(tmp_path / "src.db", 50)
    folder = _generation(tmp_path, v1, _record(pb.FrameBatch(transactions=[pb.Transaction(frames=_frames(v2, 9))],
                                                             page_size=PAGE)))
    with pytest.raises(SystemExit, match="gap"):
        continuous.restore_one(str(folder), str(tmp_path / "restored.db"))
