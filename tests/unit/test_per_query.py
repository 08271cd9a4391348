"""What the edge and the scheduler keep per SQL text, and the edge's one write per reply."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest

from sqld.common import sqltext
from sqld.common.statement import classify
from sqld.edge import render, sqlrewrite
from sqld.edge.transport import SEND_BUFFER, Transport
from sqld.scheduler.session import LOCAL, _kind, expand
from sqld.v1 import common_pb2


def test_a_text_is_rewritten_and_classified_once():
    sql = "select $1::int8 as x from t where a = $2"
    assert sqlrewrite.rewrite(sql) is sqlrewrite.rewrite(sql)
    assert classify(sql) is classify(sql)
    with pytest.raises(dataclasses.FrozenInstanceError):  # shared: nobody may change it
        sqlrewrite.rewrite(sql).sql = "x"  # type: ignore[misc]


def test_long_texts_are_not_kept():
    long_sql = "select '" + "x" * sqltext.LONGEST_CACHED + "'"
    first = sqlrewrite.rewrite(long_sql)
    assert first == sqlrewrite.rewrite(long_sql) and first is not sqlrewrite.rewrite(long_sql)
    assert sqltext.split(long_sql) == [long_sql]


def test_split_answers_a_fresh_list_each_time():
    pieces = sqltext.split("select 1; select 2")
    pieces.append("changed by a caller")
    assert sqltext.split("select 1; select 2") == ["select 1;", "select 2"]


def test_the_schedulers_kind_is_a_function_of_text_and_kind():
    setting = common_pb2.Statement(sql="SET synchronous_commit = on", kind=common_pb2.STATEMENT_KIND_WRITE)
    read = common_pb2.Statement(sql="select * from pg_stat_replication", kind=common_pb2.STATEMENT_KIND_READ)
    write = common_pb2.Statement(sql="select * from pg_stat_replication", kind=common_pb2.STATEMENT_KIND_WRITE)
    assert [_kind(setting), _kind(read), _kind(write), _kind(setting)] == \
        [LOCAL, LOCAL, common_pb2.STATEMENT_KIND_WRITE, LOCAL]
    long_read = common_pb2.Statement(sql="select 1 " + " " * sqltext.LONGEST_CACHED + "from pg_stat_replication",
                                     kind=common_pb2.STATEMENT_KIND_READ)
    assert _kind(long_read) == LOCAL


def test_expand_leaves_a_statement_ending_in_a_semicolon_whole():
    one = common_pb2.Statement(sql="select 1;  ")
    assert expand([one]) == [one]
    assert [p.sql for p in expand([common_pb2.Statement(sql="select 1; select 2;")])] == ["select 1;", "select 2;"]


def test_row_description_is_encoded_once_per_shape():
    a = render.row_description(["a", "b"], [20, 25], [0, 0])
    assert render.row_description(("a", "b"), (20, 25), (0, 0)) is a
    assert render.row_description(["a", "b"], [20, 25], [0, 1]) != a


class _Sock:
    def __init__(self) -> None:
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing


class _Writer:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.transport = _Sock()

    def get_extra_info(self, name: str) -> None:
        return None

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.writes.append(b"<closed>")


def test_replies_leave_in_one_write_at_flush_or_before_a_read():
    async def go() -> None:
        reader = asyncio.StreamReader()
        writer = _Writer()
        t = Transport(reader, writer, 1 << 20)  # type: ignore[arg-type]
        t.send(b"rows")
        t.send(b"")
        t.send(b"ready")
        assert writer.writes == []
        await t.flush()
        assert writer.writes == [b"rowsready"]
        t.send(b"S")  # e.g. the answer to SSLRequest: out before the client's next bytes are awaited
        reader.feed_data(b"abcd")
        assert await t.read(4) == b"abcd"
        assert writer.writes[-1] == b"S"
        t.send(b"x" * SEND_BUFFER)  # a big reply does not wait for the flush
        assert len(writer.writes[-1]) == SEND_BUFFER
        t.send(b"fatal")
        t.hang_up()
        assert writer.writes[-2:] == [b"fatal", b"<closed>"]
    asyncio.run(go())


def test_a_client_gone_mid_reply_is_not_written_to():
    """uvloop raises RuntimeError on a write to a closed socket (asyncio only logs): what a
    client that left would have read is dropped, and the next flush or read ends the loop."""
    async def go() -> None:
        writer = _Writer()

        def refuse(data: bytes) -> None:
            raise RuntimeError("unable to perform operation: the handler is closed")
        t = Transport(asyncio.StreamReader(), writer, 1 << 20)  # type: ignore[arg-type]
        writer.transport.closing = True
        writer.write = refuse  # type: ignore[method-assign]
        t.send(b"x" * SEND_BUFFER)
        t.send(b"more")
        t.hang_up()
        assert writer.writes == [b"<closed>"]
    asyncio.run(go())
