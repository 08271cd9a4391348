"""The replica applier: whole batches, page-1 patching, and repair after a crash mid-apply."""
from __future__ import annotations

import os
import struct

import apsw

from sqld.common import applier as applier_mod
from sqld.common.applier import Applier
from sqld.storage.replica.database import _lock


def _primary_pages(path: str, rows: int) -> tuple[int, list[tuple[int, bytes]]]:
    c = apsw.Connection(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE IF NOT EXISTS t (a INTEGER, b BLOB)")
    c.execute(f"INSERT INTO t SELECT {rows}, randomblob(500) FROM (WITH RECURSIVE c(x) AS "
              f"(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT x FROM c)")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    data = open(path, "rb").read()
    n = len(data) // 4096
    return n, [(i + 1, data[i * 4096:(i + 1) * 4096]) for i in range(n)]


def _count(path: str) -> int:
    c = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return c.execute("SELECT count(*) FROM t").fetchall()[0][0]
    finally:
        c.close()


def test_apply_then_repair_after_a_crash_mid_apply(tmp_path, monkeypatch):
    primary, replica = str(tmp_path / "p.db"), str(tmp_path / "r.db")
    n, pages = _primary_pages(primary, 10)
    a = Applier(replica, _lock)
    a.apply("log1", 5, 4096, 0, n, pages)
    header = open(replica, "rb").read(100)
    assert header[18] == header[19] == 1  # a rollback-journal database for its readers
    assert struct.unpack_from(">I", header, 24) == struct.unpack_from(">I", header, 92)
    assert _count(replica) == 10

    n2, pages2 = _primary_pages(primary, 200)
    real_pwrite = os.pwrite
    written = []

    def crash_midway(fd, data, offset):
        if fd == a.fd and len(written) >= len(pages2) // 2:
            raise SystemExit("killed")  # the process dies half way through the batch
        written.append(offset)
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(applier_mod.os, "pwrite", crash_midway)
    try:
        a.apply("log1", 9, 4096, n, n2, [p for p in pages2 if p[0] > 0])
    except SystemExit:
        pass
    monkeypatch.setattr(applier_mod.os, "pwrite", real_pwrite)
    b = Applier(replica, _lock)  # start-up: repairs from the pending batch
    assert (b.log_id, b.frame_no) == ("log1", 9)
    assert _count(replica) == 210
