"""Embedded replicas: a copy of the database in this process, synced from the replication log.

`connect(database, replica="local.db", replication="host:7018", token=..., ca=...)`: the local
file is bootstrapped from a snapshot (Replication/Snapshot), then follows the database's log
(Replication/Frames, frames pushed as they commit) in a background thread, every
`sync_interval` seconds, or only on `Connection.sync()` (sync_interval=0). Reads run on the
local file through Python's sqlite3 module; everything else goes to the primary over pg-wire
(client README, "Embedded replicas").

The frames are applied by the same library as storage's replicas (`sqld.common.applier`: whole
transactions under SQLite's exclusive lock, durable position, repair of a half-applied batch at
open), so this module needs the server distribution: `pip install 'sqldclient[embedded]'`
brings sqld-py (grpcio, the generated sqld.v1 stubs, the applier). It is imported only when
`replica=` is given; plain use of sqldclient imports nothing of it.

One `Replica` per local file and process, shared by that process's connections, and never
closed: the applier's descriptor must outlive every SQLite lock of this process on the file
(closing a descriptor drops all of them). Another process that tries to sync the same file gets
OperationalError (a flock on `<file>-sync`).
"""
from __future__ import annotations

import fcntl
import logging
import math
import os
import sqlite3
import threading
import time
from typing import Any

from . import _errors

log = logging.getLogger("sqldclient.embedded")

RETRY_SECONDS = 0.5
REFUSED_RETRY_SECONDS = 5.0
CALL_TIMEOUT = 30.0

_registry: dict[str, Replica] = {}
_registry_lock = threading.Lock()


def _deps() -> Any:
    try:
        import grpc

        from sqld.common import applier, replication_state
        from sqld.v1 import replication_pb2, replication_pb2_grpc
    except ImportError as exc:
        raise _errors.NotSupportedError(
            "replica= needs the embedded extra: pip install 'sqldclient[embedded]' "
            f"(grpcio and sqld-py's replication stubs and applier): {exc}") from exc
    return grpc, applier, replication_state, replication_pb2, replication_pb2_grpc


def open_replica(path: str, database: str, target: str, token: str | None, ca: bytes | None,
                 sync_interval: float | None) -> Replica:
    """The process's Replica of `path` (made, and bootstrapped when new, on first use)."""
    key = os.path.realpath(path)
    with _registry_lock:
        rep = _registry.get(key)
        if rep is None:
            rep = Replica(key, database, target, token, ca, sync_interval)
            _registry[key] = rep
        elif rep.database != database:
            raise _errors.ProgrammingError(f"{path} is already the embedded replica of {rep.database!r}")
        rep.acquire()
        return rep


def _lock_connection(path: str) -> sqlite3.Connection:
    """The applier's lock: Python's sqlite3, the library this process's readers use."""
    from sqld.common.applier import BUSY_TIMEOUT_MS
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)


class Replica:
    def __init__(self, path: str, database: str, target: str, token: str | None, ca: bytes | None,
                 sync_interval: float | None) -> None:
        grpc, applier, self._rstate, self._pb, pb_grpc = _deps()
        self._grpc = grpc
        self.path, self.database = path, database
        self.sync_interval = sync_interval
        self._sync_file = open(path + "-sync", "a+b")
        try:
            fcntl.flock(self._sync_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._sync_file.close()
            raise _errors.OperationalError(f"another process syncs the embedded replica {path}") from None
        self.applier = applier.Applier(path, _lock_connection)  # repairs a half-applied batch
        creds = grpc.ssl_channel_credentials(ca)
        if token:
            creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
        self._channel = grpc.secure_channel(target, creds, options=[
            ("grpc.max_receive_message_length", 256 << 20), ("grpc.keepalive_time_ms", 10_000)])
        self._stub = pb_grpc.ReplicationStub(self._channel)
        self.replica_id = f"{os.uname().nodename}:{os.getpid()}:{os.path.basename(path)}"
        self._applied = threading.Condition()
        self._syncing = threading.Lock()   # one sync at a time (the thread's or sync()'s)
        self.head_known = 0
        self.streaming = False
        self._caught_up_at: float | None = None       # monotonic time we last were at the head
        self._unapplied_since_ms: float | None = None  # commit time of the oldest frame not applied
        self.error: Exception | None = None
        self._users = 0
        self._stop = threading.Event()
        self._call: Any = None
        self._thread: threading.Thread | None = None
        if not self.applier.log_id:
            try:
                self.sync()  # bootstrap: the first snapshot, or a clear refusal
            except BaseException:
                fcntl.flock(self._sync_file.fileno(), fcntl.LOCK_UN)
                self._sync_file.close()
                raise

    # -- users: the background thread runs while a connection uses the replica
    def acquire(self) -> None:
        self._users += 1
        if self._thread is None and self.sync_interval != 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._background, name=f"sqld-replica-{self.database}",
                                            daemon=True)
            self._thread.start()

    def release(self) -> None:
        with _registry_lock:
            self._users -= 1
            if self._users > 0 or self._thread is None:
                return
            self._stop.set()
            if self._call is not None:
                self._call.cancel()
            thread, self._thread = self._thread, None
        thread.join(timeout=CALL_TIMEOUT)

    # -- what readers ask
    @property
    def frame_no(self) -> int:
        return int(self.applier.frame_no)

    def lag_seconds(self) -> float:
        """How stale a read here may be: 0 while streaming and applied up to the head known."""
        if self.streaming:
            since = self._unapplied_since_ms
            return 0.0 if since is None else max(time.time() - since / 1000, 0.0)
        if self._caught_up_at is None:
            return math.inf
        return time.monotonic() - self._caught_up_at

    def wait_for(self, frame_no: int, timeout: float) -> bool:
        with self._applied:
            return self._applied.wait_for(lambda: self.frame_no >= frame_no, timeout)

    def sync(self) -> int:
        """Apply the log up to its head as of now; the frame number reached."""
        head = self._hello().head_frame_no
        if self._thread is not None and self.sync_interval is None:  # the follower gets there
            if not self.wait_for(head, CALL_TIMEOUT):
                raise _errors.OperationalError(f"embedded replica of {self.database}: frame {head} not applied "
                                               f"within {CALL_TIMEOUT:g} s ({self.error or 'still behind'})")
            return self.frame_no
        with self._syncing:
            self._run(until_head=True)
        return self.frame_no

    # -- following the log
    def _rpc_error(self, exc: Any) -> _errors.OperationalError:
        return _errors.OperationalError(f"embedded replica of {self.database}: replication "
                                        f"{exc.code().name}: {exc.details()}")

    def _hello(self) -> Any:
        try:
            return self._stub.Hello(self._pb.HelloRequest(database=self.database), timeout=CALL_TIMEOUT)
        except self._grpc.RpcError as exc:
            raise self._rpc_error(exc) from None

    def _run(self, until_head: bool) -> None:
        """Hello, a snapshot when needed, then frames: up to the head (`until_head`), or until
        stopped. RpcErrors other than NEED_SNAPSHOT propagate."""
        a = self.applier
        while not self._stop.is_set() or until_head:
            hello = self._hello()
            if not hello.log_id or not hello.head_frame_no:
                # no history yet, or a new one whose first transaction (the primary's image of the
                # database) is not logged yet: a snapshot now would be an empty database
                if not a.log_id:
                    raise _errors.OperationalError(f"database {self.database} has no history in the log yet")
                if until_head:
                    return
                self._stop.wait(RETRY_SECONDS)
                continue
            if hello.log_id != a.log_id or a.frame_no + 1 < hello.first_frame_no:
                self._snapshot()
                continue  # Hello again: the log may have moved on while the snapshot came
            if until_head and a.frame_no >= hello.head_frame_no:
                self._at_head()
                return
            try:
                self._stream(hello.head_frame_no if until_head else None)
                if until_head:
                    return
            except self._grpc.RpcError as exc:
                if self._rstate.of(exc) != self._rstate.NEED_SNAPSHOT:
                    raise
                log.info("embedded replica db=%s: %s", self.database, exc.details())

    def _at_head(self) -> None:
        with self._applied:
            self._caught_up_at = time.monotonic()
            self._unapplied_since_ms = None
            self._applied.notify_all()

    def _snapshot(self) -> None:
        """A snapshot; while the public port is sending as many as it allows at once
        (RESOURCE_EXHAUSTED), asked again for up to CALL_TIMEOUT."""
        deadline = time.monotonic() + CALL_TIMEOUT
        while True:
            try:
                return self._snapshot_once()
            except self._grpc.RpcError as exc:
                if exc.code() != self._grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline \
                        or self._stop.is_set():
                    raise
            self._stop.wait(RETRY_SECONDS)

    def _snapshot_once(self) -> None:
        a = self.applier
        first = pending = None
        try:
            for chunk in self._stub.Snapshot(self._pb.SnapshotRequest(database=self.database),
                                             timeout=600):
                if first is None:
                    first = chunk
                    pending = a.begin(chunk.log_id, chunk.page_size, 0)
                assert pending is not None
                pending.add(chunk.pages)
            if first is None or pending is None:
                raise _errors.OperationalError("snapshot: the stream was empty")
            a.commit(pending, first.frame_no, first.db_pages)
            pending = None
        finally:
            if pending is not None:
                pending.discard()
        log.info("embedded replica db=%s: snapshot installed log_id=%s frame_no=%d", self.database,
                 first.log_id, first.frame_no)
        with self._applied:
            self._applied.notify_all()

    def _stream(self, target: int | None) -> None:
        a = self.applier
        call = self._stub.Frames(self._pb.FramesRequest(database=self.database, log_id=a.log_id,
                                                        from_frame_no=a.frame_no + 1, replica_id=self.replica_id))
        self._call = call
        pending = None
        if target is None:
            self.streaming = True
        try:
            for batch in call:
                self.head_known = batch.head_frame_no
                if not batch.transactions:
                    continue
                if pending is None:
                    if self._unapplied_since_ms is None:
                        self._unapplied_since_ms = batch.transactions[0].commit_time_ms
                    pending = a.begin(a.log_id, batch.page_size, os.fstat(a.fd).st_size // batch.page_size)
                pending.add([fr for t in batch.transactions for fr in t.frames])
                if batch.more:
                    continue  # a transaction larger than a message: applied once whole
                a.commit(pending, batch.transactions[-1].frames[-1].frame_no)
                pending = None
                with self._applied:
                    if a.frame_no >= self.head_known:
                        self._caught_up_at = time.monotonic()
                        self._unapplied_since_ms = None
                    else:  # the next one committed after this: its age is at most this one's
                        self._unapplied_since_ms = batch.transactions[-1].commit_time_ms
                    self._applied.notify_all()
                if target is not None and a.frame_no >= target:
                    return
        finally:
            if target is None:
                self._stopped_streaming()
            call.cancel()
            self._call = None
            if pending is not None:
                pending.discard()

    def _stopped_streaming(self) -> None:
        if self.streaming:
            self.streaming = False
            if self._unapplied_since_ms is None:
                self._caught_up_at = time.monotonic()

    def _background(self) -> None:
        """Follow the log (sync_interval None) or sync every sync_interval seconds, until the
        last connection using the replica closes; failures are retried (logged)."""
        while not self._stop.is_set():
            try:
                with self._syncing:
                    self._run(until_head=self.sync_interval is not None)
                self.error = None
                if self.sync_interval is not None:
                    self._stop.wait(self.sync_interval)
                    continue
            except self._grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                self.error = self._rpc_error(exc)
            except _errors.Error as exc:
                self.error = exc
            except Exception as exc:  # noqa: BLE001 - the thread must outlive a bad batch; said loudly
                log.exception("embedded replica db=%s: sync failed", self.database)
                self.error = exc
            refused = self.error is not None and ("PERMISSION_DENIED" in str(self.error)
                                                  or "UNAUTHENTICATED" in str(self.error))
            if self.error is not None:
                log.warning("embedded replica db=%s: %s", self.database, self.error)
            self._stop.wait(REFUSED_RETRY_SECONDS if refused else RETRY_SECONDS)


# -- reading the local file
_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
# the primary's connection answers these, not the local file's
_CONNECTION_FUNCTIONS = {"last_insert_rowid", "changes", "total_changes", "sqlite_version", "sqlite_source_id",
                         "sqlite_compileoption_used", "sqlite_compileoption_get"}


def _only_reads(action: int, arg1: Any, arg2: Any, db: Any, source: Any) -> int:
    if action not in _READ_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() in _CONNECTION_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def reader(path: str) -> sqlite3.Connection:
    """A read-only connection to the local file that prepares plain reads only: anything else
    (a write, DDL, PRAGMA, a transaction statement, a connection's own function) fails to
    prepare, and goes to the primary."""
    from urllib.parse import quote
    conn = sqlite3.connect(f"file:{quote(os.path.realpath(path))}?mode=ro", uri=True, timeout=30,
                           isolation_level=None, check_same_thread=False)
    conn.set_authorizer(_only_reads)
    return conn
