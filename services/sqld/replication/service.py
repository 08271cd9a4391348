"""The replication core: frame logs per database, live fan-out, snapshots, status.

Plain asyncio over protobuf messages; `servicer.py` adapts it to gRPC. Log file work
runs on the event loop (appends are one write and one fsync), so a Frames stream never
sees a log halfway through an append or a compaction; building a snapshot copy runs on
a worker thread while the database's lock keeps compaction away. Every message holds at
most about `frame_log.PART_BYTES` of pages: a larger transaction arrives as Append parts
and leaves as FrameBatch parts (`more`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator

from sqld.common import dbnames
from sqld.common.authz import EMBEDDED_PREFIX
from sqld.common.replication_state import LOG_FORKED, NEED_SNAPSHOT
from sqld.replication import metrics, snapshot
from sqld.replication.config import Config
from sqld.replication.frame_log import FrameLog, LogError
from sqld.replication.replicas import Replicas
from sqld.v1 import replication_pb2 as pb

log = logging.getLogger(__name__)


class OutOfRange(ValueError):
    """A point-in-time restore asked for a moment the log no longer keeps (OUT_OF_RANGE)."""


class DatabaseLog:
    def __init__(self, name: str, folder: str) -> None:
        self.name = name
        self.log = FrameLog(folder)
        self.lock = asyncio.Lock()          # appends, resets, compaction, snapshot builds
        self.changed = asyncio.Condition()  # notified after every append and reset
        self.appended = 0
        self.last_forked_append = ""  # why the last LOG_FORKED refusal happened (Status shows it)
        self.dropped = False  # DropLog: live streams end
        if self.log.migrated_from:
            log.warning("log written before the chain: new history db=%s old_log_id=%s log_id=%s",
                        name, self.log.migrated_from, self.log.log_id)


def _live(d: DatabaseLog) -> DatabaseLog:
    if d.dropped:
        raise LogError(NEED_SNAPSHOT, f"database {d.name} is being dropped")
    return d


class ReplicationCore:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.replicas = Replicas()
        self._dbs: dict[str, DatabaseLog] = {}
        self.closing = False
        os.makedirs(cfg.data_dir, exist_ok=True)
        # Snapshot copies live apart from the logs, so that dropping a database never pulls a copy
        # from under a stream still sending it; what a crash left here goes at start.
        self._scratch = os.path.join(cfg.data_dir, ".snapshots")
        shutil.rmtree(self._scratch, ignore_errors=True)
        os.makedirs(self._scratch)
        for name in sorted(os.listdir(cfg.data_dir)):
            if dbnames.valid(name) and os.path.exists(os.path.join(cfg.data_dir, name, "meta.json")):
                self.db(name)

    def db(self, name: str) -> DatabaseLog:
        """The primary's look-up: creates the log of a database that has none. A log being
        dropped stays in `_dbs` (marked) until its folder is gone, so no new log is made in
        a folder that is being deleted."""
        if (problem := dbnames.problem(name)) is not None:
            raise ValueError(problem.message)
        if name not in self._dbs:
            self._dbs[name] = DatabaseLog(name, os.path.join(self.cfg.data_dir, name))
        return _live(self._dbs[name])

    def _existing(self, name: str) -> DatabaseLog:
        """A replica's look-up: never creates a log (a dropped database's stays gone)."""
        d = self._dbs.get(name)
        if d is None:
            if (problem := dbnames.problem(name)) is not None:
                raise ValueError(problem.message)
            raise LogError(NEED_SNAPSHOT, f"database {name} has no history here (not created, or dropped)")
        return _live(d)

    def _hello(self, d: DatabaseLog) -> pb.HelloResponse:
        lg = d.log
        return pb.HelloResponse(log_id=lg.log_id, head_frame_no=lg.head, page_size=lg.page_size,
                                wal_position=lg.wal_position, first_frame_no=lg.snapshot_frame_no + 1,
                                head_chain=lg.head_chain, primary_id=lg.primary_id)

    async def hello(self, req: pb.HelloRequest, existing: bool = False) -> pb.HelloResponse:
        """`existing`: an embedded replica's Hello (public port), which never creates a log. A
        replica's Hello (`req.replica`) creates none either: no log answers an empty log_id."""
        if existing:
            return self._hello(self._existing(req.database))
        if req.replica:
            try:
                return self._hello(self._existing(req.database))
            except LogError:
                return pb.HelloResponse()
        return self._hello(self.db(req.database))

    async def reset(self, req: pb.ResetLogRequest) -> pb.HelloResponse:
        d = self.db(req.database)
        async with d.lock:
            _live(d)
            if req.HasField("if_log_id") and req.if_log_id != d.log.log_id:
                return self._hello(d)  # another primary reset it first
            log_id = d.log.reset()
            d.last_forked_append = ""
        log.info("new history db=%s log_id=%s", d.name, log_id)
        async with d.changed:
            d.changed.notify_all()
        return self._hello(d)

    async def append(self, req: pb.AppendRequest) -> pb.AppendResponse:
        d = self.db(req.database)
        async with d.lock:
            _live(d)
            before = d.log.head
            try:
                head = d.log.append(req.log_id, req.page_size, list(req.transactions), req.wal_position,
                                    req.prev_chain, req.primary_id, req.more)
            except LogError as exc:
                if exc.state == LOG_FORKED:
                    d.last_forked_append = f"primary {req.primary_id!r}: {exc}"
                    log.warning("append refused db=%s primary=%s head=%d err=%s", d.name, req.primary_id,
                                before, exc)
                raise
            new = [t for t in req.transactions if t.frames and t.frames[-1].frame_no > before]
            metrics.count(d.name, new, (metrics.FRAMES_APPENDED, metrics.BYTES_APPENDED))
            if req.more:
                return pb.AppendResponse(head_frame_no=head)  # a part: staged, nothing visible yet
            d.appended += len(new)
            metrics.TRANSACTIONS_APPENDED.labels(d.name).inc(len(new))
            if head - d.log.snapshot_frame_no > self.cfg.compact_frames:
                keep = self.cfg.keep_frames
                if self.cfg.retention_seconds > 0:  # what point-in-time restore needs stays
                    since = d.log.first_frame_since(int((time.time() - self.cfg.retention_seconds) * 1000))
                    keep = max(keep, head - since + 1 if since is not None else 0)
                if head - keep > d.log.snapshot_frame_no:
                    upto = d.log.compact(keep)
                    log.debug("compacted db=%s snapshot_frame_no=%d", d.name, upto)
        async with d.changed:
            d.changed.notify_all()
        applied = False
        if req.wait_for_replica:
            applied = await self.replicas.wait_applied(d.name, req.log_id, head, self.cfg.sync_timeout)
        return pb.AppendResponse(head_frame_no=head, replica_applied=applied)

    async def frames(self, req: pb.FramesRequest) -> AsyncIterator[pb.FrameBatch]:
        """Whole transactions from req.from_frame_no on, then new ones as they are appended."""
        d = self._existing(req.database)
        nxt = max(req.from_frame_no, 1)
        progress = self.replicas.get(d.name, req.replica_id or "anonymous")
        progress.streams += 1
        progress.log_id = req.log_id
        try:
            while True:
                if d.dropped or self.closing:  # DropLog closed the log (perhaps while this stream was yielding)
                    return
                lg = d.log
                if lg.log_id != req.log_id or not lg.log_id:
                    raise LogError(NEED_SNAPSHOT, f"the log id is now {lg.log_id!r}, not {req.log_id!r}")
                if nxt <= lg.snapshot_frame_no or nxt > lg.head + 1:
                    raise LogError(NEED_SNAPSHOT, f"frame {nxt} is not in the log "
                                   f"(it holds {lg.snapshot_frame_no + 1}..{lg.head})")
                txns, more = lg.read_part(nxt)
                if txns:
                    nxt = txns[-1].frames[-1].frame_no + 1
                    if not more:
                        progress.sent, progress.seen = nxt - 1, time.monotonic()
                    metrics.count(d.name, txns, (metrics.FRAMES_SENT, metrics.BYTES_SENT))
                    yield pb.FrameBatch(transactions=txns, head_frame_no=lg.head, page_size=lg.page_size,
                                        more=more)
                    continue
                def moved(nxt: int = nxt) -> bool:  # bound now: the wait ends before nxt changes
                    return d.dropped or d.log.head >= nxt or d.log.log_id != req.log_id or self.closing
                async with d.changed:
                    await d.changed.wait_for(moved)
                if self.closing or d.dropped:
                    return
        finally:
            progress.streams -= 1
            if progress.streams == 0 and progress.replica_id.startswith(EMBEDDED_PREFIX):
                # an application's embedded replica: listed while it streams, never acknowledges,
                # and comes back under a new id (its process id), so nothing of it is kept
                self.replicas.forget(d.name, progress.replica_id)

    async def snapshot(self, req: pb.SnapshotRequest) -> AsyncIterator[pb.SnapshotChunk]:
        """The database as of the log's head, as page images; or, for a point-in-time
        restore, as of the last commit at or before `upto_frame_no` or `as_of_unix_ms`."""
        d = self._existing(req.database)
        if not d.log.log_id:
            raise LogError(NEED_SNAPSHOT, f"database {d.name} has no history yet; the primary has not said hello")
        tmp = os.path.join(self._scratch, f"{d.name}-{uuid.uuid4().hex}.db")
        async with d.lock:
            if d.dropped:  # dropped while this request waited for the lock: its folder is gone
                raise LogError(NEED_SNAPSHOT, f"database {d.name} has no history here (dropped)")
            lg = d.log
            log_id, head, page_size = lg.log_id, lg.head, lg.page_size
            if req.upto_frame_no or req.as_of_unix_ms:
                target = (lg.commit_at_or_before(req.upto_frame_no) if req.upto_frame_no
                          else lg.commit_at_time(req.as_of_unix_ms))
                if target is None:
                    raise OutOfRange(f"database {d.name}: the log keeps commits from frame {lg.snapshot_frame_no} on "
                                     f"(replication --retention-seconds {self.cfg.retention_seconds:g}); "
                                     "ask for a later point")
                head = min(target, head)
            await asyncio.get_running_loop().run_in_executor(
                None, snapshot.build, lg.snapshot_path(), tmp, page_size, lg.frames(head))
        try:
            for chunk in snapshot.chunks(tmp, log_id, head, page_size):
                yield chunk
        finally:
            with contextlib.suppress(FileNotFoundError):  # the build may have failed before making it
                os.remove(tmp)

    async def close_streams(self) -> None:
        """End every Frames stream normally (the service is stopping; replicas reconnect)."""
        self.closing = True
        for d in self._dbs.values():
            async with d.changed:
                d.changed.notify_all()

    async def ack(self, req: pb.AckRequest) -> pb.AckResponse:
        await self.replicas.ack(req.database, req.replica_id, req.log_id,
                                req.written_frame_no, req.applied_frame_no)
        return pb.AckResponse()

    async def drop(self, req: pb.DropLogRequest) -> pb.DropLogResponse:
        """The database was dropped: its log goes (folder and all); live Frames streams of it end."""
        if not dbnames.valid(req.database):
            raise ValueError(f"invalid database name {req.database!r}")
        d = self._dbs.get(req.database)
        if d is None:
            return pb.DropLogResponse(existed=False)
        async with d.lock:
            if self._dbs.get(req.database) is not d or d.dropped:
                return pb.DropLogResponse(existed=False)
            d.dropped = True
            d.log.close()
            try:
                await asyncio.to_thread(shutil.rmtree, d.log.folder, True)
            finally:
                del self._dbs[req.database]
        async with d.changed:
            d.changed.notify_all()
        log.info("log dropped db=%s", req.database)
        return pb.DropLogResponse(existed=True)

    def status(self, req: pb.StatusRequest) -> pb.StatusResponse:
        out = []
        now_ms = time.time() * 1000
        for name, d in sorted(self._dbs.items()):
            if (req.database and name != req.database) or d.dropped:
                continue
            lg = d.log
            replicas = []
            for p in self.replicas.of(name):
                applied = p.applied if p.log_id == lg.log_id else 0
                t = lg.commit_time_after(applied) if applied < lg.head else None
                replicas.append(pb.ReplicaStatus(
                    replica_id=p.replica_id, database=name, connected=p.streams > 0,
                    sent_frame_no=p.sent, written_frame_no=p.written, applied_frame_no=p.applied,
                    lag_frames=max(lg.head - applied, 0),
                    replay_lag_seconds=max(now_ms - t, 0) / 1000 if t is not None else 0.0,
                    sync_state="async"))
            out.append(pb.LogStatus(database=name, log_id=lg.log_id, head_frame_no=lg.head,
                                    first_frame_no=lg.snapshot_frame_no + 1,
                                    snapshot_frame_no=lg.snapshot_frame_no,
                                    appended_transactions=d.appended, replicas=replicas,
                                    head_chain=lg.head_chain, primary_id=lg.primary_id,
                                    last_forked_append=d.last_forked_append))
        return pb.StatusResponse(logs=out)
