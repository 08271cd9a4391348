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

from sqld.common import grpc_client, replication_state
from sqld.common.applier import Applier, Batch
from sqld.storage import metrics
from sqld.v1 import replication_pb2 as pb
from sqld.v1 import replication_pb2_grpc

log = logging.getLogger(__name__)

RETRY_SECONDS = 0.2
INLINE_BYTES = 64 << 10  # a message with at most this many page bytes is written on the event loop
SNAPSHOT_PROGRESS_PAGES = 16384  # a log line per this many pages received (64 MiB of 4 KiB pages)


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
        self._acking: asyncio.Task | None = None
        self._ack_again = False
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"apply-{name}")
        # writes the next batch's pending file while the worker above applies one
        self._receiver = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"receive-{name}")
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
            self._receiver.shutdown(wait=True)

    def _stopped_streaming(self) -> None:
        if self.streaming:
            self.streaming = False
            self._disconnected_at = time.monotonic()
        self.state = "HELLO"

    async def _follow(self, stub: replication_pb2_grpc.ReplicationStub) -> None:
        self.state = "HELLO"
        hello = await stub.Hello(pb.HelloRequest(database=self.name, replica=True), wait_for_ready=True)
        if not hello.log_id:  # the primary has not started a history yet
            await asyncio.sleep(RETRY_SECONDS)
            return
        if hello.log_id != self.applier.log_id or self.frame_no + 1 < hello.first_frame_no:
            self.state = "SNAPSHOT"
            await self._snapshot(stub)
            return
        call = stub.Frames(pb.FramesRequest(database=self.name, log_id=self.applier.log_id,
                                            from_frame_no=self.frame_no + 1, replica_id=self.replica_id))
        self.state = "STREAMING"
        self.streaming = True
        stream = _Stream(self)
        applying = asyncio.ensure_future(stream.apply_loop(stub))
        applying.add_done_callback(lambda _: call.cancel())  # only ends early when it failed
        try:
            async for batch in call:
                self.head_known = batch.head_frame_no
                if batch.transactions:
                    await stream.add(batch)
            await stream.drain(applying)
        except asyncio.CancelledError:
            if not applying.done() or applying.cancelled():
                raise
        finally:
            applying.cancel()
            await asyncio.wait([applying])
            # work already handed to the threads finishes before anything else touches the files
            loop = asyncio.get_running_loop()
            for ex in (self._receiver, self._executor):
                await loop.run_in_executor(ex, _nothing)
            stream.discard()
        if not applying.cancelled() and (exc := applying.exception()) is not None:
            raise exc

    async def _snapshot(self, stub: replication_pb2_grpc.ReplicationStub) -> None:
        loop = asyncio.get_running_loop()
        first = None
        pending: Batch | None = None
        pages = 0
        try:
            async for chunk in stub.Snapshot(pb.SnapshotRequest(database=self.name), wait_for_ready=True):
                if first is None:
                    first = chunk
                    pending = self.applier.begin(chunk.log_id, chunk.page_size, 0)
                    log.info("installing snapshot db=%s log_id=%s frame_no=%d pages=%d", self.name, chunk.log_id,
                             chunk.frame_no, chunk.db_pages)
                assert pending is not None
                await loop.run_in_executor(self._executor, pending.add, list(chunk.pages))
                received = pages + len(chunk.pages)
                if received // SNAPSHOT_PROGRESS_PAGES > pages // SNAPSHOT_PROGRESS_PAGES:
                    log.info("snapshot progress db=%s pages=%d of=%d", self.name, received, first.db_pages)
                pages = received
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
        """Wake the reads waiting for a frame, and tell the service (one Ack in flight at a
        time; applies made meanwhile are acknowledged together by the next one)."""
        async with self._applied:
            self._applied.notify_all()
        self._ack_again = True
        if self._acking is None or self._acking.done():
            self._acking = asyncio.ensure_future(self._ack(stub))

    async def _ack(self, stub: replication_pb2_grpc.ReplicationStub) -> None:
        while self._ack_again:
            self._ack_again = False
            try:
                await stub.Ack(pb.AckRequest(database=self.name, replica_id=self.replica_id,
                                             log_id=self.applier.log_id, written_frame_no=self.frame_no,
                                             applied_frame_no=self.frame_no), timeout=5)
            except grpc.aio.AioRpcError as exc:
                log.debug("ack failed db=%s code=%s", self.name, exc.code())
                return


def _nothing() -> None:
    pass


class _Stream:
    """The frames of one Frames stream, applied in batches: while one batch is applied (on the
    follower's worker thread), the messages that arrive go into the next one (written to the
    pending file as they come, so memory stays at one message), and that one is applied as soon
    as the first is done and it ends with a whole transaction. Under steady commits a replica
    thus applies, fsyncs and acknowledges many transactions at once."""

    def __init__(self, follower: Follower) -> None:
        self.f = follower
        self.pending: Batch | None = None
        self.upto = 0            # last frame of the last whole transaction in `pending`
        self.partial = False     # `pending` ends inside a transaction (FrameBatch.more)
        self.since_ms = 0        # commit time of `pending`'s first transaction
        self.base_pages: int | None = None  # the file's size once the batch being applied is
        self.lock = asyncio.Lock()          # `pending` changes hands under it
        self.ready = asyncio.Event()
        self.busy = False        # a batch is being applied

    async def add(self, batch: pb.FrameBatch) -> None:
        f = self.f
        loop = asyncio.get_running_loop()
        async with self.lock:
            if self.pending is None:
                if f._unapplied_since_ms is None:
                    f._unapplied_since_ms = batch.transactions[0].commit_time_ms
                self.since_ms = batch.transactions[0].commit_time_ms
                size = self.base_pages if self.base_pages is not None \
                    else os.fstat(f.applier.fd).st_size // batch.page_size
                self.pending = f.applier.begin(f.applier.log_id, batch.page_size, size)
            frames = [fr for t in batch.transactions for fr in t.frames]
            metrics.FRAMES_RECEIVED.inc(len(frames))
            metrics.BYTES_RECEIVED.inc(len(frames) * batch.page_size)
            if len(frames) * batch.page_size <= INLINE_BYTES:
                self.pending.add(frames)  # a buffered write: cheaper than a thread hand-off
            else:
                await loop.run_in_executor(f._receiver, self.pending.add, frames)
            self.partial = batch.more
            if not batch.more:
                self.upto = batch.transactions[-1].frames[-1].frame_no
                self.ready.set()

    async def apply_loop(self, stub: replication_pb2_grpc.ReplicationStub) -> None:
        f = self.f
        loop = asyncio.get_running_loop()
        while True:
            await self.ready.wait()
            self.ready.clear()
            async with self.lock:
                batch, upto = self.pending, self.upto
                if batch is None or self.partial or not upto:
                    continue
                self.pending, self.upto, self.busy = None, 0, True
                self.base_pages = batch.db_pages
                # sealed (renamed to <db>-pending) before the next batch opens <db>-pending.tmp
                await loop.run_in_executor(f._receiver, batch.close, upto, batch.db_pages)
            try:
                await loop.run_in_executor(f._executor, f.applier.apply_pending)
            finally:
                self.busy = False
            async with self.lock:
                if self.pending is None:
                    self.base_pages = None
                    if f.frame_no >= f.head_known:
                        f._unapplied_since_ms = None
                else:
                    f._unapplied_since_ms = self.since_ms
            await f._applied_now(stub)

    async def drain(self, applying: asyncio.Future) -> None:
        """The stream ended (the service is stopping): let what is whole be applied."""
        while not applying.done() and (self.busy or (self.pending is not None and self.upto and not self.partial)):
            await asyncio.sleep(0.005)

    def discard(self) -> None:
        if self.pending is not None:
            self.pending.discard()
            self.pending = None
