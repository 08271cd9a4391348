"""common.mux in process: many streams on one real gRPC stream (127.0.0.1:0), no mocks.

The server runs a small one-stream handler written like storage's Connect (context.read,
context.write, context.abort) behind Storage.Multiplex's message types: each Execute it reads
is answered by `id` parts of PAYLOAD bytes, then an Executed; an Execute whose statement says
"abort" aborts the stream. What it checks is what sharing a stream brings: order per stream,
flow control, fairness, cancel, a failing stream failing alone, a broken stream failing
every stream on it and the next stream working again.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from sqld.common import mux
from sqld.v1 import common_pb2, storage_pb2

PAYLOAD = 256 * 1024


class Echo:
    """The server's handler and what it saw."""

    def __init__(self) -> None:
        self.written: dict[int, int] = {}  # execute id -> parts written so far
        self.cancelled = 0
        self.ended = 0

    async def handle(self, _requests, context) -> None:
        try:
            while (req := await context.read()) is not grpc.aio.EOF:
                ex = req.execute
                if ex.statements and ex.statements[0].sql == "abort":
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"abort {ex.id}")
                for _ in range(int(ex.statements[0].sql) if ex.statements else 0):
                    await context.write(storage_pb2.ConnectResponse(part=common_pb2.ResultPart(
                        rows=[common_pb2.Row(values=[common_pb2.Value(blob=b"x" * PAYLOAD)])])))
                    self.written[ex.id] = self.written.get(ex.id, 0) + 1
                await context.write(storage_pb2.ConnectResponse(executed=storage_pb2.Executed(id=ex.id)))
            self.ended += 1
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


@contextlib.asynccontextmanager
async def serving(echo: Echo, port: int = 0) -> AsyncIterator[tuple[mux.Channel, mux.Server]]:
    multiplexed = mux.Server(echo.handle, storage_pb2.ConnectResponseFrames, "echo")

    async def multiplex(request_iterator, context):
        await multiplexed.serve(context)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("sqld.v1.Storage", {
        "Multiplex": grpc.stream_stream_rpc_method_handler(
            multiplex, request_deserializer=storage_pb2.ConnectRequestFrames.FromString,
            response_serializer=storage_pb2.ConnectResponseFrames.SerializeToString)})])
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    call = channel.stream_stream("/sqld.v1.Storage/Multiplex",
                                 request_serializer=storage_pb2.ConnectRequestFrames.SerializeToString,
                                 response_deserializer=storage_pb2.ConnectResponseFrames.FromString)
    shared = mux.Channel(lambda: call(wait_for_ready=True), storage_pb2.ConnectRequestFrames, "echo")
    try:
        yield shared, multiplexed
    finally:
        await shared.close()
        await channel.close()
        await server.stop(0)


def execute(ex_id: int, parts: int | str = 0) -> storage_pb2.ConnectRequest:
    return storage_pb2.ConnectRequest(execute=storage_pb2.Execute(
        id=ex_id, statements=[common_pb2.Statement(sql=str(parts))]))


async def answer(stream: mux.Stream) -> tuple[int, int]:
    """(parts, id of the Executed) of the next answer."""
    parts = 0
    while (resp := await stream.read()).WhichOneof("kind") == "part":
        parts += 1
    return parts, resp.executed.id


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario, 60))


def test_many_streams_keep_their_own_order():
    async def scenario() -> None:
        async with serving(Echo()) as (shared, _):
            async def client(n: int) -> list[int]:
                s = shared.stream()
                got = []
                for i in range(1, 31):
                    await s.write(execute(n * 1000 + i))
                    got.append((await answer(s))[1])
                await s.done_writing()
                assert await s.read() is grpc.aio.EOF
                return got
            results = await asyncio.gather(*(client(n) for n in range(100)))
            assert results == [[n * 1000 + i for i in range(1, 31)] for n in range(100)]
    run(scenario())


def test_a_reader_that_stops_stalls_only_its_own_stream():
    """Flow control: a stream nobody reads gets at most WINDOW messages sent (plus QUEUED
    waiting), while another stream on the same shared one goes on."""
    async def scenario() -> None:
        echo = Echo()
        async with serving(echo) as (shared, _):
            stalled = shared.stream()
            await stalled.write(execute(1, 200))
            await asyncio.sleep(0.5)
            before = echo.written.get(1, 0)
            # WINDOW (4) sent, QUEUED (1) waiting, one being written: a few parts, not 200
            assert 0 < before <= 8, before
            other = shared.stream()
            for i in range(2, 52):
                await other.write(execute(i, 1))
                assert await answer(other) == (1, i)
            assert echo.written[1] == before  # still stalled: nothing read
            assert await answer(stalled) == (200, 1)  # reading lets it finish
    run(scenario())


def test_a_large_answer_does_not_hold_up_small_ones():
    """Fairness: 50 MB in parts on one stream next to 100 small exchanges on others. Measured in
    parts of the large answer, not in time (CI machines are slow and loaded): while one small
    exchange is under way, only a few parts of the large one arrive, never the bulk of them."""
    async def scenario() -> None:
        async with serving(Echo()) as (shared, _):
            received = 0  # parts of the large answer read so far
            spans: list[int] = []  # parts of it that arrived during each small exchange
            big = shared.stream()

            async def large() -> None:
                nonlocal received
                await big.write(execute(1, 200))  # 200 x 256 KiB
                while (await big.read()).WhichOneof("kind") == "part":
                    received += 1
                assert received == 200

            async def small(n: int) -> None:
                s = shared.stream()
                start = received
                await s.write(execute(n))
                assert await answer(s) == (0, n)
                spans.append(received - start)

            task = asyncio.create_task(large())
            while received == 0:  # the large answer is under way
                await asyncio.sleep(0.001)
            await asyncio.gather(*(small(n) for n in range(2, 102)), task)
            assert len(spans) == 100
            # round-robin sends one part of the large answer per round, so a small exchange
            # waits for a handful; a sender draining the large stream first would give ~200
            assert max(spans) <= 50, sorted(spans)[-10:]
    run(scenario())


def test_abort_fails_one_stream_and_cancel_ends_one():
    async def scenario() -> None:
        echo = Echo()
        async with serving(echo) as (shared, _):
            a, b, c = shared.stream(), shared.stream(), shared.stream()
            await a.write(execute(1, "abort"))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await a.read()
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and info.value.details() == "abort 1"
            assert a.done()
            with pytest.raises(grpc.aio.AioRpcError):
                await a.write(execute(2))
            await b.write(execute(3, 1000))  # a long answer, cancelled midway
            assert (await b.read()).WhichOneof("kind") == "part"
            assert b.cancel() and b.done()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await b.read()
            assert info.value.code() == grpc.StatusCode.CANCELLED
            for _ in range(100):
                if echo.cancelled:
                    break
                await asyncio.sleep(0.01)
            assert echo.cancelled == 1  # the server's handler was cancelled
            await c.write(execute(4, 2))
            assert await answer(c) == (2, 4)
            await c.done_writing()
            assert await c.read() is grpc.aio.EOF
    run(scenario())


def test_a_broken_shared_stream_fails_its_streams_and_the_next_works():
    async def scenario() -> None:
        echo = Echo()
        async with serving(echo) as (shared, _):
            streams = [shared.stream() for _ in range(32)]
            for i, s in enumerate(streams):
                await s.write(execute(i + 1))
                assert await answer(s) == (0, i + 1)
            # Break it from the client side: the call under every stream is cancelled.
            shared._call.cancel()  # type: ignore[union-attr]
            for s in streams:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await s.read()
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "echo" in info.value.details()
                assert s.done()
            fresh = shared.stream()  # a new shared stream
            await fresh.write(execute(99, 1))
            assert await answer(fresh) == (1, 99)
            for _ in range(100):
                if echo.cancelled == 32:
                    break
                await asyncio.sleep(0.01)
            assert echo.cancelled == 32  # the server ended every handler of the broken one
    run(scenario())


def test_close_ends_the_calls_once_their_streams_have_ended():
    """A stopping service (storage's close_streams) ends its streams, then `close` ends each
    call, so the server need not wait out its grace period; new streams are refused."""
    async def scenario() -> None:
        echo = Echo()
        async with serving(echo) as (shared, server):
            a = shared.stream()
            await a.write(execute(1, 1))
            assert await answer(a) == (1, 1)
            await a.done_writing()  # what the service does to its streams when it stops
            assert await a.read() is grpc.aio.EOF
            server.close()
            for _ in range(500):
                if shared._link is not None and shared._link.failure is not None:
                    break  # the call ended
                await asyncio.sleep(0.01)
            assert shared._link is not None and shared._link.failure is not None
            assert echo.ended == 1 and echo.cancelled == 0
            b = shared.stream()  # on a new call: refused while the service stops
            await b.write(execute(2))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await b.read()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "stopping" in info.value.details()
    run(scenario())
