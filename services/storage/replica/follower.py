"""A replica's subscription: follow one database's frame log and apply it.

States, driven by the replication service's answers (as sqld's replicator does):
HELLO (learn the log id and the oldest frame kept) → SNAPSHOT when the log id differs
from ours or our position was compacted away (or the service answers NEED_SNAPSHOT) →
STREAMING: whole transactions arrive as they commit and are applied in batches on a
worker thread. Any transport failure goes back to HELLO after a short pause. A transaction
larger than a message arrives in parts (FrameBatch.more) and a snapshot in chunks: both are
written to the applier's pending file as they come and applied only once whole, so a
replica holds one message at a time and its readers only ever see whole transactions.

`admit` decides whether a read may run here now: the replica must have applied the
session's last write (waiting briefly for it) and lag no more than the session allows.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time

import grpc

from common import grpc_client, replication_state
from sqld.v1 import replication_pb2 as pb
from sqld.v1 import replication_pb2_grpc
from storage.replica.applier import Applier, Batch

log = logging.getLogger(__name__)

RETRY_SECONDS = 0.2


class Follower:
    def __init__(self, name: str, applier: Applier, target: str, replica_id: str) -> None:
        self.name = name
        self.applier = applier
        self.target = target
        self.replica_id = replica_id
        self.streaming = False
        self.head_known = 0
        self._unapplied_since_ms: int | None = None  # commit time of the oldest batch being applied
        self._disconnected_at = time.monotonic()
        self._applied = asyncio.Condition()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"apply-{name}")
        self.state = "HELLO"

    @property
    def frame_no(self) -> int:
        return self.applier.frame_no

    def lag_ms(self) -> float:
        """How stale reads here may be: 0 when streaming and caught up."""
        if not self.streaming:
            return (time.monotonic() - self._disconnected_at) * 1000
        if self._unapplied_since_ms is None:
            return 0.0
        return max(time.time() * 1000 - self._unapplied_since_ms, 0.0)

    async def admit(self, min_frame_no: int, wait_ms: int, max_staleness_ms: int) -> bool:
        if max_staleness_ms and self.lag_ms() > max_staleness_ms:
            return False
        if self.frame_no >= min_frame_no:
            return True
        async with self._applied:
            try:
                await asyncio.wait_for(self._applied.wait_for(lambda: self.frame_no >= min_frame_no),
                                       wait_ms / 1000)
                return True
            except TimeoutError:
                return False

    async def run(self) -> None:
        channel = grpc_client.channel(self.target)
        stub = replication_pb2_grpc.ReplicationStub(channel)
        try:
            while True:
                try:
                    await self._follow(stub)
                    self._stopped_streaming()  # the service ended the stream (it is stopping)
                except grpc.aio.AioRpcError as exc:
                    self._stopped_streaming()
                    if replication_state.of(exc) == replication_state.NEED_SNAPSHOT:
                        self.state = "SNAPSHOT"
                        await self._snapshot(stub)
                        continue
                    log.debug("replication stream ended db=%s code=%s", self.name, exc.code())
                    await asyncio.sleep(RETRY_SECONDS)
        finally:
            self._stopped_streaming()
            await channel.close()
            self._executor.shutdown(wait=True)

    def _stopped_streaming(self) -> None:
        if self.streaming:
            self.streaming = False
            self._disconnected_at = time.monotonic()
        self.state = "HELLO"

    async def _follow(self, stub: replication_pb2_grpc.ReplicationStub) -> None:
        self.state = "HELLO"
        hello = await stub.Hello(pb.HelloRequest(database=self.name), wait_for_ready=True)
        if not hello.log_id:  # the primary has not started a history yet
            await asyncio.sleep(RETRY_SECONDS)
            return
        if hello.log_id != self.applier.log_id or self.frame_no + 1 < hello.first_frame_no:
            self.state = "SNAPSHOT"
            await self._snapshot(stub)
            return
        loop = asyncio.get_running_loop()
        call = stub.Frames(pb.FramesRequest(database=self.name, log_id=self.applier.log_id,
                                            from_frame_no=self.frame_no + 1, replica_id=self.replica_id))
        self.state = "STREAMING"
        self.streaming = True
        pending: Batch | None = None
        try:
            async for batch in call:
                self.head_known = batch.head_frame_no
                if not batch.transactions:
                    continue
                if pending is None:
                    self._unapplied_since_ms = batch.transactions[0].commit_time_ms
                    size = os.fstat(self.applier.fd).st_size // batch.page_size
                    pending = self.applier.begin(self.applier.log_id, batch.page_size, size)
                frames = [f for t in batch.transactions for f in t.frames]
                await loop.run_in_executor(self._executor, pending.add, frames)
                if batch.more:
                    continue  # a transaction goes on in the next message: nothing to apply yet
                last = batch.transactions[-1].frames[-1].frame_no
                await loop.run_in_executor(self._executor, self.applier.commit, pending, last)
                pending = None
                if self.frame_no >= self.head_known:
                    self._unapplied_since_ms = None
                await self._applied_now(stub)
        finally:
            if pending is not None:
                pending.discard()

    async def _snapshot(self, stub: replication_pb2_grpc.ReplicationStub) -> None:
        loop = asyncio.get_running_loop()
        first = None
        pending: Batch | None = None
        try:
            async for chunk in stub.Snapshot(pb.SnapshotRequest(database=self.name), wait_for_ready=True):
                if first is None:
                    first = chunk
                    pending = self.applier.begin(chunk.log_id, chunk.page_size, 0)
                assert pending is not None
                await loop.run_in_executor(self._executor, pending.add, list(chunk.pages))
            if first is None or pending is None:
                raise RuntimeError("snapshot: the stream was empty")
            await loop.run_in_executor(self._executor, self.applier.commit, pending, first.frame_no,
                                       first.db_pages)
            pending = None
        finally:
            if pending is not None:
                pending.discard()
        log.info("installed snapshot db=%s log_id=%s frame_no=%d pages=%d", self.name, first.log_id,
                 first.frame_no, first.db_pages)
        await self._applied_now(stub)

    async def _applied_now(self, stub: replication_pb2_grpc.ReplicationStub) -> None:
        async with self._applied:
            self._applied.notify_all()
        try:
            await stub.Ack(pb.AckRequest(database=self.name, replica_id=self.replica_id,
                                         log_id=self.applier.log_id, written_frame_no=self.frame_no,
                                         applied_frame_no=self.frame_no), timeout=5)
        except grpc.aio.AioRpcError as exc:
            log.debug("ack failed db=%s code=%s", self.name, exc.code())
