"""Cutting rows into ResultParts (storage) and joining them again (common.rowparts), and the
edge's RowStore: no sockets."""
from __future__ import annotations

import random

import pytest

from sqld.common.rowparts import RowJoiner
from sqld.common.values import to_python
from sqld.edge.rowstore import RowStore
from sqld.storage.sqlite import parts
from sqld.storage.sqlite.parts import PART_BYTES
from sqld.v1 import common_pb2


def cut_and_join(rows):
    out = parts.Rows(0, [common_pb2.Column(name="c")])
    sent = []
    for r in rows:
        sent += out.add(r)
    sent.append(out.final(common_pb2.StatementResult(ok=common_pb2.ResultSet())))
    joiner = RowJoiner()
    back = [tuple(to_python(v) for v in row.values) for p in sent for row in joiner.feed(p)]
    return sent, back


def test_small_rows_fill_parts_of_bounded_size():
    rows = [(i, "x" * 100, None, 1.5) for i in range(20_000)]
    sent, back = cut_and_join(rows)
    assert back == rows
    assert len(sent) > 5 and all(p.ByteSize() < PART_BYTES + 64 * 1024 for p in sent)
    assert sent[0].columns and not any(p.columns for p in sent[1:])
    assert not any(p.continues for p in sent)


@pytest.mark.parametrize("sizes", [
    [PART_BYTES + 1], [3 * PART_BYTES], [PART_BYTES - 5, PART_BYTES * 2 + 7, 3],
    [10, 2 * PART_BYTES, 2 * PART_BYTES, 10],
])
def test_values_larger_than_a_part_are_cut_and_joined(sizes):
    rng = random.Random(sum(sizes))
    blob_row = tuple([1] + [rng.randbytes(n) for n in sizes] + ["end"])
    text_row = tuple(["é" * n for n in sizes] + [None])
    rows = [(0, b"small"), blob_row, (2, "between"), text_row, (4, b"")]
    sent, back = cut_and_join(rows)
    assert back == rows
    assert any(p.continues for p in sent)
    assert all(p.ByteSize() < 2 * PART_BYTES + 1024 for p in sent)  # text pieces: up to 2 bytes a character


def test_stripped_result_keeps_the_outcome_without_rows():
    r = common_pb2.StatementResult(ok=common_pb2.ResultSet(
        columns=[common_pb2.Column(name="a")], rows=[common_pb2.Row(values=[common_pb2.Value(integer=1)])],
        rows_affected=3, last_insert_rowid=9, total_changes=5))
    s = parts.stripped(r)
    assert not s.ok.rows and s.ok.rows_affected == 3 and s.ok.last_insert_rowid == 9 and s.ok.columns[0].name == "a"
    assert s.ok.total_changes == 5


def test_row_store_spills_to_a_file_and_reads_back_in_order():
    row = lambda i: common_pb2.Row(values=[common_pb2.Value(integer=i), common_pb2.Value(text="y" * 1000)])  # noqa: E731
    store = RowStore([row(0)])
    store.add(row(i) for i in range(1, 20_000))  # ~20 MB: past the 8 MiB in memory
    assert store._file._rolled  # on disk now
    assert [r.values[0].integer for r in store.take(3)] == [0, 1, 2]
    store.add([row(20_000)])
    rest = store.take(-1)
    assert [r.values[0].integer for r in rest] == list(range(3, 20_001))
    assert store.remaining == 0 and store.total == 20_001 and len(store.sample) == 1000
    assert store.take(5) == []
    store.close()
