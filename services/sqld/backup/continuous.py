"""Continuous backup: the backup folder follows the replication log, as Litestream ships WAL.

`follow` keeps, for every database with a history in the replication service (or those
named), a base snapshot and the log's frames appended after it:

    DIR/continuous.json                   marks the layout (restore tells it from manifest.json)
    DIR/<name>/current                    the name of the current generation (replaced by rename)
    DIR/<name>/<log id>-<frame no>/base.db    the database as of that frame (Replication/Snapshot)
    DIR/<name>/<log id>-<frame no>/frames     every FrameBatch after it: u32 BE length + message

Frames are written and fsynced as the log sends them (the log pushes each Append at once), so
the backup trails the acknowledged commits by one message and one fsync: LAG_SECONDS is the
documented bound while the follower keeps up. A new generation (a fresh snapshot) is taken
when the log says NEED_SNAPSHOT (a new history, or the follower fell behind compaction) and
when the frames file passes REBASE_BYTES; it is written beside the current one and `current`
is replaced only once it is durable, so a crash at any point leaves a consistent pair.
Dropped databases stay in the folder (a log that disappears may be a replication service that
lost its data; deleting the backup then would be the worst moment).

`restore` rebuilds `<name>.db` from the current generation: the base, then every whole
transaction of the frames file in frame order (a torn tail from a crash is ignored, as a
replica ignores an incomplete transaction).

The follower is a member of the deployment: it calls the replication service (Status,
Snapshot, Frames) with the operator's `admin` certificate (common/authz.py).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import uuid

import grpc

from sqld.common import dbnames
from sqld.common.durable import fsync_dir
from sqld.v1 import replication_pb2, replication_pb2_grpc

log = logging.getLogger(__name__)

MARKER = "continuous.json"
LAG_SECONDS = 1.0          # documented bound on how far the backup trails acknowledged commits
REBASE_BYTES = 64 << 20    # a new snapshot once a generation's frames file passes this
DISCOVER_EVERY = 1.0       # seconds between looks at the replication service's databases
RETRY_AFTER = 1.0
REPLICA_ID = "backup"      # how the follower shows in pg_stat_replication


def _write_file(path: str, data: bytes) -> None:
    tmp = f"{path}.{uuid.uuid4().hex}.partial"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


class Follower:
    """One database's generations in `folder`, fed from the replication service."""

    def __init__(self, stub: replication_pb2_grpc.ReplicationStub, name: str, folder: str) -> None:
        self.stub = stub
        self.name = name
        self.folder = folder
        self.log_id = ""
        self.next_frame = 0
        self.gen = ""
        self.frames_fd = -1

    def _load(self) -> None:
        try:
            with open(os.path.join(self.folder, "current")) as f:
                self.gen = f.read().strip()
        except FileNotFoundError:
            return
        self.log_id, _, frame = self.gen.rpartition("-")
        gen_dir = os.path.join(self.folder, self.gen)
        self.next_frame = max(int(frame), last_frame(os.path.join(gen_dir, "frames"))) + 1
        self.frames_fd = os.open(os.path.join(gen_dir, "frames"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def _rebase(self) -> None:
        """A new generation from a fresh snapshot of the log's head."""
        tmp = os.path.join(self.folder, f".base-{uuid.uuid4().hex}")
        fd = await asyncio.to_thread(os.open, tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        log_id, frame_no = "", 0
        try:
            async for chunk in self.stub.Snapshot(replication_pb2.SnapshotRequest(database=self.name), timeout=3600):
                log_id, frame_no = chunk.log_id, chunk.frame_no
                await asyncio.to_thread(_write_pages, fd, chunk)
            await asyncio.to_thread(os.fsync, fd)
        except BaseException:
            os.close(fd)
            os.remove(tmp)
            raise
        os.close(fd)
        gen = f"{log_id}-{frame_no}"
        gen_dir = os.path.join(self.folder, gen)
        os.makedirs(gen_dir, exist_ok=True)
        os.replace(tmp, os.path.join(gen_dir, "base.db"))
        with open(os.path.join(gen_dir, "frames"), "wb") as f:
            os.fsync(f.fileno())
        fsync_dir(gen_dir)
        _write_file(os.path.join(self.folder, "current"), gen.encode())
        old, self.gen = self.gen, gen
        if self.frames_fd >= 0:
            os.close(self.frames_fd)
        self.frames_fd = os.open(os.path.join(gen_dir, "frames"), os.O_WRONLY | os.O_APPEND)
        self.log_id, self.next_frame = log_id, frame_no + 1
        if old and old != gen:
            await asyncio.to_thread(_remove_tree, os.path.join(self.folder, old))
        log.info("backup db=%s new generation %s", self.name, gen)

    async def run(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        self._load()
        while True:
            try:
                if not self.gen:
                    await self._rebase()
                await self._stream()
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:  # NEED_SNAPSHOT: a new history
                    log.info("backup db=%s: %s; taking a new snapshot", self.name, exc.details())
                    self.gen = ""
                    await asyncio.sleep(0.1)
                    continue
                log.warning("backup db=%s: the replication service answered %s: %s", self.name,
                            exc.code().name, exc.details())
                await asyncio.sleep(RETRY_AFTER)

    async def _stream(self) -> None:
        stream = self.stub.Frames(replication_pb2.FramesRequest(
            database=self.name, log_id=self.log_id, from_frame_no=self.next_frame, replica_id=REPLICA_ID))
        async for batch in stream:
            data = batch.SerializeToString()
            await asyncio.to_thread(_append, self.frames_fd, struct.pack(">I", len(data)) + data)
            if batch.transactions and batch.transactions[-1].frames:
                self.next_frame = batch.transactions[-1].frames[-1].frame_no + 1
            if os.fstat(self.frames_fd).st_size > REBASE_BYTES and not batch.more:
                stream.cancel()
                await self._rebase()
                return


def _write_pages(fd: int, chunk: replication_pb2.SnapshotChunk) -> None:
    for page in chunk.pages:
        os.pwrite(fd, page.page, (page.page_no - 1) * chunk.page_size)
    os.ftruncate(fd, chunk.db_pages * chunk.page_size)


def _append(fd: int, record: bytes) -> None:
    os.write(fd, record)
    os.fsync(fd)


def _remove_tree(path: str) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def batches(path: str):
    """The FrameBatches of a frames file, stopping at a torn record."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        while True:
            head = f.read(4)
            if len(head) < 4:
                return
            data = f.read(struct.unpack(">I", head)[0])
            if len(data) < struct.unpack(">I", head)[0]:
                return
            yield replication_pb2.FrameBatch.FromString(data)


def last_frame(path: str) -> int:
    last = 0
    for batch in batches(path):
        for txn in batch.transactions:
            if txn.frames:
                last = txn.frames[-1].frame_no
    return last


async def follow(channel: grpc.aio.Channel, folder: str, names: list[str] | None) -> None:
    """Follow every database with a history (or `names`) into `folder`, until cancelled."""
    os.makedirs(folder, exist_ok=True)
    _write_file(os.path.join(folder, MARKER), json.dumps({"format": 1, "layout": "continuous"}).encode())
    stub = replication_pb2_grpc.ReplicationStub(channel)
    tasks: dict[str, asyncio.Task] = {}
    try:
        while True:
            try:
                status = await stub.Status(replication_pb2.StatusRequest(), timeout=10)
            except grpc.aio.AioRpcError as exc:
                log.warning("backup: the replication service's Status answered %s", exc.code().name)
            else:
                logged = {lg.database for lg in status.logs if lg.log_id}
                for name in [n for n in tasks if n not in logged]:  # dropped (its files stay)
                    tasks.pop(name).cancel()
                for lg in status.logs:
                    name = lg.database
                    if lg.log_id and dbnames.valid(name) and name not in tasks and (not names or name in names):
                        follower = Follower(stub, name, os.path.join(folder, name))
                        tasks[name] = asyncio.create_task(follower.run(), name=f"backup-{name}")
                        print(f"backup: following {name} -> {os.path.join(folder, name)}", flush=True)
            for name, task in tasks.items():
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise RuntimeError(f"backup of {name} stopped") from task.exception()
            await asyncio.sleep(DISCOVER_EVERY)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


def restore_one(folder: str, dest_tmp: str) -> tuple[str, int]:
    """Build the database of a continuous backup `folder` at `dest_tmp`: base + whole
    transactions; returns (generation, last frame applied)."""
    with open(os.path.join(folder, "current")) as f:
        gen = f.read().strip()
    gen_dir = os.path.join(folder, gen)
    base_frame = int(gen.rpartition("-")[2])
    with open(os.path.join(gen_dir, "base.db"), "rb") as src, open(dest_tmp, "wb") as out:
        while data := src.read(1 << 20):
            out.write(data)
    applied, expected = base_frame, base_frame + 1
    pending: list[replication_pb2.Frame] = []
    fd = os.open(dest_tmp, os.O_RDWR)
    try:
        page_size = 0
        for batch in batches(os.path.join(gen_dir, "frames")):
            page_size = batch.page_size or page_size
            for txn in batch.transactions:
                for frame in txn.frames:
                    if frame.frame_no < expected:
                        continue  # already in the base (or sent twice)
                    if frame.frame_no != expected:
                        raise SystemExit(f"backup: {folder}: frame {frame.frame_no} follows {expected - 1}: "
                                         "the frames file has a gap")
                    pending.append(frame)
                    expected += 1
                    if frame.commit_size:  # a whole transaction: apply it
                        for p in pending:
                            os.pwrite(fd, p.page, (p.page_no - 1) * page_size)
                        os.ftruncate(fd, frame.commit_size * page_size)
                        applied, pending = frame.frame_no, []
        os.fsync(fd)
    finally:
        os.close(fd)
    return gen, applied
