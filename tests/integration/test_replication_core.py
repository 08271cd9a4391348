"""The replication core behind its gRPC servicer, in-process on 127.0.0.1:0: append, stream,
the replication states as the client sees them (FAILED_PRECONDITION + ReplicationState in
trailing metadata), compaction and snapshots. No process starts; real log files in tmp_path.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading

import grpc
import pytest

from sqld.common import replication_state
from sqld.replication.config import Config
from sqld.replication.service import ReplicationCore
from sqld.replication.servicer import ReplicationServicer
from sqld.storage.capture.log_client import LogClient, LogForked, LogMoved
from sqld.v1 import replication_pb2 as pb
from sqld.v1 import replication_pb2_grpc

PAGE = 512
DB = "main"


def page(byte: int) -> bytes:
    return bytes([byte]) * PAGE


def txn(first: int, *pages: tuple[int, int], size: int = 0) -> pb.Transaction:
    """A transaction of frames numbered from `first`: (page no, fill byte) each; the database
    is then `size` pages (default: the largest page number)."""
    size = size or max(p for p, _ in pages)
    return pb.Transaction(frames=[
        pb.Frame(frame_no=first + i, page_no=p, page=page(b), commit_size=size if i == len(pages) - 1 else 0)
        for i, (p, b) in enumerate(pages)])


@contextlib.asynccontextmanager
async def served(tmp_path, **cfg):
    core = ReplicationCore(Config(data_dir=str(tmp_path / "log"), **cfg))
    server = grpc.aio.server()
    replication_pb2_grpc.add_ReplicationServicer_to_server(ReplicationServicer(core), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield core, replication_pb2_grpc.ReplicationStub(channel), f"127.0.0.1:{port}"
    finally:
        await core.close_streams()
        await channel.close()
        await server.stop(0)


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    return e.value


async def new_history(stub) -> pb.HelloResponse:
    return await stub.ResetLog(pb.ResetLogRequest(database=DB))


async def append(stub, hello: pb.HelloResponse, txns: list[pb.Transaction], prev_chain: bytes,
                 primary: str = "p", log_id: str | None = None) -> pb.AppendResponse:
    return await stub.Append(pb.AppendRequest(
        database=DB, log_id=hello.log_id if log_id is None else log_id, page_size=PAGE, transactions=txns,
        prev_chain=prev_chain, primary_id=primary))


def test_append_then_stream_past_and_live(tmp_path):
    async def main():
        async with served(tmp_path) as (_core, stub, _):
            hello = await new_history(stub)
            assert hello.log_id and hello.head_frame_no == 0
            r = await append(stub, hello, [txn(1, (1, 1), (2, 2)), txn(3, (2, 3))], hello.head_chain)
            assert r.head_frame_no == 3
            stream = stub.Frames(pb.FramesRequest(database=DB, log_id=hello.log_id, from_frame_no=1,
                                                  replica_id="r1"))
            got = await stream.read()
            assert [f.frame_no for t in got.transactions for f in t.frames] == [1, 2, 3]
            assert got.head_frame_no == 3 and got.page_size == PAGE
            after = await stub.Hello(pb.HelloRequest(database=DB))
            await append(stub, hello, [txn(4, (3, 4))], after.head_chain)
            live = await stream.read()
            assert [f.frame_no for t in live.transactions for f in t.frames] == [4]
            assert live.transactions[0].frames[0].page == page(4)
            assert live.transactions[0].chain == (await stub.Hello(pb.HelloRequest(database=DB))).head_chain
            stream.cancel()
    asyncio.run(main())


def test_append_states_travel_as_the_enum(tmp_path):
    async def main():
        async with served(tmp_path) as (_core, stub, _):
            hello = await new_history(stub)
            await append(stub, hello, [txn(1, (1, 1))], hello.head_chain)
            head = await stub.Hello(pb.HelloRequest(database=DB))

            exc = await refused(append(stub, hello, [txn(2, (1, 2))], head.head_chain, log_id="another"))
            assert replication_state.of(exc) == replication_state.LOG_ID_MISMATCH
            assert exc.details().startswith("LOG_ID_MISMATCH: ")  # the text is for people, kept as it was

            exc = await refused(append(stub, hello, [txn(5, (1, 2))], head.head_chain))
            assert replication_state.of(exc) == replication_state.FRAME_GAP

            exc = await refused(append(stub, hello, [txn(2, (1, 2))], head.head_chain, primary="q"))
            assert replication_state.of(exc) == replication_state.LOG_FORKED
            assert "written by primary 'p'" in exc.details()
            status = await stub.Status(pb.StatusRequest(database=DB))
            assert "LOG_FORKED" in status.logs[0].last_forked_append

            # a request the service refuses for another reason carries no state
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.Hello(pb.HelloRequest(database="no/such"))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert replication_state.of(e.value) == replication_state.State.Value("REPLICATION_STATE_UNSPECIFIED")
    asyncio.run(main())


def test_the_primarys_log_client_reads_the_enum(tmp_path):
    """storage's blocking LogClient turns the states into LogMoved / LogForked."""
    async def main():
        async with served(tmp_path) as (_core, stub, target):
            hello = await new_history(stub)
            client = LogClient(DB, target)
            client.primary_id = "p"
            try:
                def run(*args):
                    return asyncio.to_thread(client.append, *args)
                assert not await run(hello.log_id, PAGE, [txn(1, (1, 1))], pb.WalPosition(), hello.head_chain)
                with pytest.raises(LogMoved, match="^LOG_ID_MISMATCH"):
                    await run("another", PAGE, [txn(2, (1, 2))], pb.WalPosition(), b"")
                with pytest.raises(LogMoved, match="^FRAME_GAP"):
                    await run(hello.log_id, PAGE, [txn(9, (1, 2))], pb.WalPosition(), b"")
                client.primary_id = "q"
                with pytest.raises(LogForked, match="^LOG_FORKED"):
                    await run(hello.log_id, PAGE, [txn(2, (1, 2))], pb.WalPosition(), b"")
            finally:
                client.close()
    asyncio.run(main())


def test_need_snapshot_then_snapshot_after_compaction(tmp_path):
    async def main():
        async with served(tmp_path, compact_frames=4, keep_frames=2, retention_seconds=0) as (core, stub, _):
            hello = await new_history(stub)
            chain = hello.head_chain
            for n in range(1, 8):  # page 1 rewritten each time; page 2 once, by the third
                pages = [(1, n), (2, 100 + n)] if n == 3 else [(1, n)]
                await append(stub, hello, [txn(core.db(DB).log.head + 1, *pages, size=2 if n >= 3 else 1)], chain)
                chain = (await stub.Hello(pb.HelloRequest(database=DB))).head_chain
            now = await stub.Hello(pb.HelloRequest(database=DB))
            assert now.head_frame_no == 8 and now.first_frame_no > 1  # compacted

            exc = await refused(stub.Frames(pb.FramesRequest(database=DB, log_id=hello.log_id,
                                                             from_frame_no=1)).read())
            assert replication_state.of(exc) == replication_state.NEED_SNAPSHOT
            assert "is not in the log" in exc.details()
            exc = await refused(stub.Frames(pb.FramesRequest(database=DB, log_id="old",
                                                             from_frame_no=now.first_frame_no)).read())
            assert replication_state.of(exc) == replication_state.NEED_SNAPSHOT

            chunks = [c async for c in stub.Snapshot(pb.SnapshotRequest(database=DB))]
            assert {c.frame_no for c in chunks} == {8} and {c.log_id for c in chunks} == {hello.log_id}
            pages = {p.page_no: p.page for c in chunks for p in c.pages}
            assert chunks[0].db_pages == 2 and pages == {1: page(7), 2: page(103)}

            # from the snapshot's frame on, the stream serves again
            stream = stub.Frames(pb.FramesRequest(database=DB, log_id=hello.log_id, from_frame_no=9))
            await append(stub, hello, [txn(9, (1, 9))], chain)
            assert (await stream.read()).transactions[0].frames[0].frame_no == 9
            stream.cancel()

            # a database nobody said hello for has nothing to copy
            exc = await refused(_first(stub.Snapshot(pb.SnapshotRequest(database="empty"))))
            assert replication_state.of(exc) == replication_state.NEED_SNAPSHOT
    asyncio.run(main())


async def _first(stream):
    async for item in stream:
        return item


def test_an_empty_append_waits_for_a_replica_as_a_synchronous_commit(tmp_path):
    """Group commit on the primary: a synchronous commit whose frames went in another commit's
    Append asks again with no transactions; the answer waits for a replica to apply the head."""
    async def main():
        async with served(tmp_path, sync_timeout=0.2) as (_core, stub, _):
            hello = await new_history(stub)
            r = await append(stub, hello, [txn(1, (1, 1)), txn(2, (2, 2)), txn(3, (1, 3))], hello.head_chain)
            assert r.head_frame_no == 3 and not r.replica_applied
            head = await stub.Hello(pb.HelloRequest(database=DB))
            empty = pb.AppendRequest(database=DB, log_id=hello.log_id, page_size=PAGE, prev_chain=head.head_chain,
                                     primary_id="p", wait_for_replica=True)
            assert not (await stub.Append(empty)).replica_applied  # no replica: the wait times out
            await stub.Ack(pb.AckRequest(database=DB, replica_id="r1", log_id=hello.log_id,
                                         written_frame_no=2, applied_frame_no=2))
            assert not (await stub.Append(empty)).replica_applied  # behind the head
            await stub.Ack(pb.AckRequest(database=DB, replica_id="r1", log_id=hello.log_id,
                                         written_frame_no=3, applied_frame_no=3))
            answer = await stub.Append(empty)
            assert answer.replica_applied and answer.head_frame_no == 3
            assert (await stub.Hello(pb.HelloRequest(database=DB))).head_chain == head.head_chain  # nothing written
    asyncio.run(main())


def test_a_synchronous_commit_logged_by_another_capture_waits_for_the_replica(tmp_path):
    """The storage primary's capturer (group commit): a commit whose frames an earlier capture
    already logged finds nothing new, and with wait_for_replica still waits for a replica."""
    from sqld.storage.sqlite.backend import Database
    from sqld.v1 import common_pb2

    async def main():
        async with served(tmp_path, sync_timeout=0.2) as (_core, stub, target):
            db = await asyncio.to_thread(Database, DB, str(tmp_path / "data" / "main.db"), target)
            conn = await asyncio.to_thread(db.connect)
            st = common_pb2.Statement
            res = await asyncio.to_thread(conn.execute, [st(sql="CREATE TABLE t(a)"), st(sql="INSERT INTO t VALUES (1)")],
                                          False)
            assert all(r.HasField("ok") for r in res) and conn.frame_no > 0
            head = (await stub.Hello(pb.HelloRequest(database=DB))).head_frame_no
            assert head == conn.frame_no
            capturer = db.capturer
            assert capturer is not None
            assert await asyncio.to_thread(capturer.capture, True) == (head, False)  # no replica yet
            await stub.Ack(pb.AckRequest(database=DB, replica_id="r1", log_id=capturer.log_id,
                                         written_frame_no=head, applied_frame_no=head))
            assert await asyncio.to_thread(capturer.capture, True) == (head, True)
            await asyncio.to_thread(conn.close)
            await asyncio.to_thread(db.close)
    asyncio.run(main())


def test_a_snapshot_asked_as_the_database_is_dropped_is_need_snapshot_not_an_internal_error(tmp_path):
    async def main():
        async with served(tmp_path) as (core, stub, _):
            hello = await new_history(stub)
            await append(stub, hello, [txn(1, (1, 1))], hello.head_chain)
            d = core.db(DB)
            async with d.lock:  # the drop queues for the lock first, the snapshot after it
                dropping = asyncio.ensure_future(stub.DropLog(pb.DropLogRequest(database=DB)))
                await asyncio.sleep(0.2)
                snapshot = asyncio.ensure_future(_first(stub.Snapshot(pb.SnapshotRequest(database=DB))))
                await asyncio.sleep(0.2)
            assert (await dropping).existed
            exc = await refused(snapshot)
            assert replication_state.of(exc) == replication_state.NEED_SNAPSHOT and "dropped" in exc.details()
    asyncio.run(main())


def test_a_snapshot_being_sent_when_its_database_is_dropped_completes(tmp_path, monkeypatch):
    from sqld.replication import snapshot
    monkeypatch.setattr(snapshot, "CHUNK_BYTES", 2 * PAGE)  # two pages a chunk: five chunks

    async def main():
        async with served(tmp_path) as (core, stub, _):
            hello = await new_history(stub)
            await append(stub, hello, [txn(1, *[(n, n) for n in range(1, 11)])], hello.head_chain)
            stream = stub.Snapshot(pb.SnapshotRequest(database=DB))
            first = await stream.read()
            assert (await stub.DropLog(pb.DropLogRequest(database=DB))).existed
            rest = []
            while (chunk := await stream.read()) is not grpc.aio.EOF:
                rest.append(chunk)
            pages = {p.page_no for c in [first, *rest] for p in c.pages}
            assert pages == set(range(1, 11))
            assert not (tmp_path / "log" / DB).exists()
            assert os.listdir(tmp_path / "log" / ".snapshots") == []  # the copy is gone too
    asyncio.run(main())


def test_no_log_is_made_in_a_folder_being_dropped_and_a_replicas_hello_makes_none(tmp_path, monkeypatch):
    """While DropLog deletes the folder, the primary's Hello and Append are refused (not a new
    log in a half-deleted folder, whose Snapshot then misses files); after it, a replica still
    following the database gets an empty Hello and no log comes back; the primary's Hello makes
    a new one (the database created again)."""
    from sqld.replication import service
    deleting, go_on = threading.Event(), threading.Event()
    rmtree = shutil.rmtree

    def slow_rmtree(path, ignore_errors=False):
        if os.path.basename(path) == DB:  # the log's folder: held until the test says
            deleting.set()
            go_on.wait(10)
        rmtree(path, ignore_errors)
    monkeypatch.setattr(service.shutil, "rmtree", slow_rmtree)

    async def main():
        async with served(tmp_path) as (core, stub, _):
            hello = await new_history(stub)
            await append(stub, hello, [txn(1, (1, 1))], hello.head_chain)
            dropping = asyncio.ensure_future(stub.DropLog(pb.DropLogRequest(database=DB)))
            await asyncio.to_thread(deleting.wait, 10)
            for call in (stub.Hello(pb.HelloRequest(database=DB)),
                         append(stub, hello, [txn(2, (1, 2))], hello.head_chain)):
                exc = await refused(call)
                assert replication_state.of(exc) == replication_state.NEED_SNAPSHOT and "dropped" in exc.details()
            go_on.set()
            assert (await dropping).existed
            replica = await stub.Hello(pb.HelloRequest(database=DB, replica=True))
            assert replica.log_id == "" and not (tmp_path / "log" / DB).exists()
            assert DB not in {lg.database for lg in (await stub.Status(pb.StatusRequest())).logs}
            await stub.Hello(pb.HelloRequest(database=DB))  # the primary's, the database created again
            again = await new_history(stub)
            assert again.log_id != hello.log_id and (tmp_path / "log" / DB / "meta.json").exists()
    asyncio.run(main())
