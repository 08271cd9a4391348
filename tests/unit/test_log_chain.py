"""The replication log's chain on real log bytes: what Append accepts, what it refuses as LOG_FORKED."""
from __future__ import annotations

import struct
import zlib

import apsw
import pytest

from sqld.common import log_chain, replication_state
from sqld.replication.frame_log import FORMAT, FrameLog, LogError, decode
from sqld.storage.capture import wal
from sqld.v1 import replication_pb2 as pb


def _wal_transactions(tmp_path) -> tuple[int, list[list[wal.WalFrame]]]:
    """Committed transactions of a real WAL written by SQLite."""
    path = str(tmp_path / "w.db")
    c = apsw.Connection(path)
    c.execute("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0")
    c.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    c.execute("CREATE TABLE t (a)")
    for i in range(6):
        c.execute("INSERT INTO t VALUES (randomblob(?))", (500 + 900 * i,))
    data = open(path + "-wal", "rb").read()
    c.close()
    header = wal.parse_header(data)
    found = wal.read_frames(data[32:], header, 32, (header.checksum1, header.checksum2))
    return header.page_size, found.transactions


def _numbered(txns: list[list[wal.WalFrame]], first: int = 1) -> list[pb.Transaction]:
    out, n = [], first - 1
    for frames in txns:
        fs = []
        for f in frames:
            n += 1
            fs.append(pb.Frame(frame_no=n, page_no=f.page_no, commit_size=f.commit_size, page=f.page))
        out.append(pb.Transaction(frames=fs, commit_time_ms=n))
    return out


@pytest.fixture
def real(tmp_path):
    page_size, txns = _wal_transactions(tmp_path)
    lg = FrameLog(str(tmp_path / "log"))
    lg.reset()
    return lg, page_size, _numbered(txns)


def _chains(lg: FrameLog, primary: str, txns: list[pb.Transaction], prev: bytes) -> list[bytes]:
    out = []
    for t in txns:
        prev = log_chain.next_chain(prev, primary, t.frames)
        out.append(prev)
    return out


def test_the_chain_in_the_log_file_is_recomputed_from_its_frames(real, tmp_path):
    lg, page_size, txns = real
    genesis = log_chain.genesis(lg.log_id)
    assert lg.head_chain == genesis
    lg.append(lg.log_id, page_size, txns[:3], pb.WalPosition(offset=1), genesis, "primary-a")
    lg.append(lg.log_id, page_size, txns[3:], pb.WalPosition(offset=2), lg.head_chain, "primary-a")
    lg.close()
    raw = open(tmp_path / "log" / "log", "rb").read()
    off, stored = 0, []
    while (rec := decode(raw, off)) is not None:
        assert raw[off:off + 4] == b"SQLH"
        stored.append(rec[0].chain)
        off += rec[2]
    assert off == len(raw) and len(stored) == len(txns)
    expected = _chains(lg, "primary-a", txns, genesis)
    assert stored == expected
    assert len(set(expected)) == len(expected) and all(len(c) == 32 for c in expected)
    # another primary id, or one page byte changed: another chain
    assert _chains(lg, "primary-b", txns, genesis)[0] != expected[0]
    t0 = pb.Transaction()
    t0.CopyFrom(txns[0])
    t0.frames[-1].page = bytes([t0.frames[-1].page[0] ^ 1]) + t0.frames[-1].page[1:]
    assert _chains(lg, "primary-a", [t0], genesis)[0] != expected[0]
    reopened = FrameLog(str(tmp_path / "log"))
    assert reopened.head_chain == expected[-1] and reopened.primary_id == "primary-a"
    assert [t.chain for t in reopened.read_from(1)] == expected  # Frames hands them to replicas


def test_a_retried_append_of_the_same_transactions_is_accepted(real):
    lg, page_size, txns = real
    genesis = log_chain.genesis(lg.log_id)
    assert lg.append(lg.log_id, page_size, txns[:4], pb.WalPosition(offset=1), genesis, "p") == txns[3].frames[-1].frame_no
    head, chain = lg.head, lg.head_chain
    # the whole append again (its answer was lost), then again with one more transaction
    assert lg.append(lg.log_id, page_size, txns[:4], pb.WalPosition(offset=1), genesis, "p") == head
    assert lg.head_chain == chain and lg.transactions == 4
    assert lg.append(lg.log_id, page_size, txns[2:5], pb.WalPosition(offset=2),
                     lg.chain_at(txns[1].frames[-1].frame_no), "p") == txns[4].frames[-1].frame_no
    assert lg.transactions == 5
    # the primary's own claims of the chain values are checked and accepted
    claimed = [pb.Transaction(frames=t.frames, chain=c)
               for t, c in zip(txns[5:], _chains(lg, "p", txns[5:], lg.head_chain))]
    lg.append(lg.log_id, page_size, claimed, pb.WalPosition(offset=3), lg.head_chain, "p")
    assert lg.transactions == len(txns)


def test_appends_that_do_not_continue_the_chain_are_refused(real):
    lg, page_size, txns = real
    genesis = log_chain.genesis(lg.log_id)
    lg.append(lg.log_id, page_size, txns[:3], pb.WalPosition(offset=1), genesis, "p")
    head, chain, size = lg.head, lg.head_chain, lg._size

    def refused(state: int, *args) -> str:
        with pytest.raises(LogError) as e:
            lg.append(lg.log_id, page_size, *args)
        assert e.value.state == state, e.value
        assert (lg.head, lg.head_chain, lg._size) == (head, chain, size)
        return str(e.value)

    # continuing the head's frame numbers with a wrong base
    assert "chain value it continues" in refused(replication_state.LOG_FORKED, txns[3:4], pb.WalPosition(), b"\0" * 32, "p")
    assert "chain value it continues" in refused(replication_state.LOG_FORKED, txns[3:4], pb.WalPosition(), b"", "p")
    # another primary
    assert "written by primary 'p'" in refused(replication_state.LOG_FORKED, txns[3:4], pb.WalPosition(), chain, "q")
    # a "retry" of frames the log holds, with other content (was silently skipped before)
    forged = pb.Transaction()
    forged.CopyFrom(txns[1])
    forged.frames[0].page = b"\xff" * page_size
    base = lg.chain_at(txns[0].frames[-1].frame_no)
    assert "other transactions" in refused(replication_state.LOG_FORKED, [forged, txns[2], txns[3]], pb.WalPosition(), base, "p")
    # other transaction boundaries over held frames
    merged = pb.Transaction(frames=list(txns[1].frames) + list(txns[2].frames) + list(txns[3].frames))
    assert "overlap" in refused(replication_state.LOG_FORKED, [merged], pb.WalPosition(), base, "p")
    if len(txns[1].frames) > 1:
        part = pb.Transaction(frames=txns[1].frames[:1])
        assert "no transaction" in refused(replication_state.LOG_FORKED, [part], pb.WalPosition(), base, "p")
    # the log is behind the append: FRAME_GAP (a restored backup; the primary starts a new history)
    refused(replication_state.FRAME_GAP, txns[4:5], pb.WalPosition(), chain, "p")
    # a wrong claim of a chain value is a bad request, not a fork
    bad = pb.Transaction(frames=txns[3].frames, chain=b"\1" * 32)
    with pytest.raises(ValueError):
        lg.append(lg.log_id, page_size, [bad], pb.WalPosition(), chain, "p")
    # and the right continuation is still accepted
    lg.append(lg.log_id, page_size, txns[3:], pb.WalPosition(), chain, "p")
    assert lg.head == txns[-1].frames[-1].frame_no


def test_compaction_keeps_the_snapshot_chain(real, tmp_path):
    lg, page_size, txns = real
    chains = _chains(lg, "p", txns, log_chain.genesis(lg.log_id))
    lg.append(lg.log_id, page_size, txns, pb.WalPosition(offset=1), lg.head_chain, "p")
    head = lg.head
    upto = lg.compact(keep_frames=txns[-1].frames[-1].frame_no - txns[2].frames[-1].frame_no)
    assert upto == txns[2].frames[-1].frame_no
    lg = FrameLog(str(tmp_path / "log"))
    assert lg.snapshot_frame_no == upto and lg.chain_at(upto) == chains[2] and lg.head_chain == chains[-1]
    # a retry of transactions folded into the snapshot changes nothing; one that continues is checked
    assert lg.append(lg.log_id, page_size, txns[:2], pb.WalPosition(), log_chain.genesis(lg.log_id), "p") == head
    assert lg.append(lg.log_id, page_size, txns[1:], pb.WalPosition(), chains[0], "p") == head
    with pytest.raises(LogError):
        lg.append(lg.log_id, page_size, txns[3:], pb.WalPosition(), chains[1], "p")
    lg.compact(keep_frames=0)
    assert lg.transactions == 0 and lg.head == head and lg.head_chain == chains[-1]
    more = _numbered([[wal.WalFrame(page_no=1, commit_size=1, page=txns[0].frames[0].page)]], head + 1)
    lg.append(lg.log_id, page_size, more, pb.WalPosition(), chains[-1], "p")
    assert lg.head == head + 1


def test_a_log_from_before_the_chain_starts_a_new_history(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "meta.json").write_text('{"log_id": "abc", "page_size": 512, "snapshot_frame_no": 0}')
    (folder / "snapshot-0.db").write_bytes(b"")
    # one record as the previous format (SQLG) wrote it
    rest = (struct.pack(">QIIq", 1, 1, 512, 0) + struct.pack(">IIQIIQQ", 1, 2, 3, 4, 5, 0, 0)
            + struct.pack(">II", 1, 1) + b"x" * 512)
    (folder / "log").write_bytes(b"SQLG" + struct.pack(">I", zlib.crc32(rest)) + rest)
    lg = FrameLog(str(folder))
    assert lg.migrated_from == "abc" and lg.log_id not in ("", "abc")
    assert lg.head == 0 and lg.meta["format"] == FORMAT and lg.head_chain == log_chain.genesis(lg.log_id)
