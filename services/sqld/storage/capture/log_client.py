"""The storage primary's side of the replication API: Hello, ResetLog and Append.

Blocking gRPC: it is called on the worker thread that committed, before the commit is
acknowledged. Both capturers use it: the WAL capturer (file backend) and the page-store
capturer (mvsqlite). Every Append states the chain value it continues and who appends
(`common.log_chain`); `chain` computes the values a primary claims for its transactions.

No message holds more than about PART_BYTES of pages: a larger transaction goes as a
sequence of Appends with `more` (`append_large`), its chain value computed as it goes; the
caller reads its frames a part at a time, so a capture holds ~3 × PART_BYTES at most (the
frames read, their messages, the serialized request).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from sqld.common import grpc_client, log_chain, replication_state
from sqld.v1 import replication_pb2 as pb
from sqld.v1 import replication_pb2_grpc

APPEND_RETRY_SECONDS = 30.0
PART_BYTES = 4 << 20  # page bytes per Append


class CaptureError(Exception):
    """A commit could not be logged; it is durable on the primary but not acknowledged."""


class LogMoved(CaptureError):
    """The log is not where this primary thought (FRAME_GAP or LOG_ID_MISMATCH): another
    primary appended or reset it. Say Hello again."""


class LogForked(CaptureError):
    """The log holds transactions this primary did not write where it continues (LOG_FORKED,
    or a Hello that shows the log ahead of it or on another chain)."""


def forked_message(primary: str, name: str, reason: str, log_id: str) -> str:
    """What every commit answers once the log has forked from `primary` ("this primary", "this
    page store"): what happened, that the commit is durable but not acknowledged, the way out."""
    return (f"replication log diverged from {primary}: db {name}: {reason}; "
            f"commits are durable here but not acknowledged or replicated; "
            f"inspect the log, then start a new history: Replication/ResetLog "
            f"database={name} if_log_id={log_id} (README: Replication)")


def chain(txns: list[pb.Transaction], prev: bytes, primary_id: str) -> bytes:
    """Set each transaction's chain value, continuing `prev`; the last one."""
    for t in txns:
        prev = log_chain.next_chain(prev, primary_id, t.frames)
        t.chain = prev
    return prev


class LogClient:
    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.primary_id = ""  # set by the capturer: who appends (AppendRequest.primary_id)
        self._channel = grpc_client.sync_channel(target)
        self._stub = replication_pb2_grpc.ReplicationStub(self._channel)

    def hello(self) -> pb.HelloResponse:
        return self._stub.Hello(pb.HelloRequest(database=self.name), wait_for_ready=True, timeout=60)

    def reset(self, if_log_id: str | None = None) -> pb.HelloResponse:
        """A new history (only if the log id is still `if_log_id`, when given)."""
        req = pb.ResetLogRequest(database=self.name)
        if if_log_id is not None:
            req.if_log_id = if_log_id
        return self._stub.ResetLog(req, wait_for_ready=True, timeout=60)

    def append_large(self, log_id: str, page_size: int, first_frame_no: int, count: int, commit_size: int,
                     read: Callable[[int, int], list[tuple[int, bytes]]], pos: pb.WalPosition,
                     prev_chain: bytes, commit_time_ms: int, wait_for_replica: bool = False) -> tuple[bytes, bool]:
        """Log one transaction of `count` frames, numbered from `first_frame_no`, in parts of
        PART_BYTES: `read(i, n)` gives (page no, page) of its frames i..i+n-1 (0-based); the
        last frame carries `commit_size`. Its chain value, whether a replica applied it."""
        per_part = max(1, PART_BYTES // page_size)
        chainer = log_chain.Chainer(prev_chain, self.primary_id)
        i, applied = 0, False
        while i < count:
            n = min(per_part, count - i)
            frames = [pb.Frame(frame_no=first_frame_no + i + k, page_no=page_no, page=page,
                               commit_size=commit_size if i + k == count - 1 else 0)
                      for k, (page_no, page) in enumerate(read(i, n))]
            chainer.update(frames)
            i += n
            last = i == count
            txn = pb.Transaction(frames=frames, commit_time_ms=commit_time_ms,
                                 chain=chainer.digest() if last else b"")
            applied = self.append(log_id, page_size, [txn], pos if last else pb.WalPosition(), prev_chain,
                                  wait_for_replica and last, more=not last)
        return chainer.digest(), applied

    def append(self, log_id: str, page_size: int, txns: list[pb.Transaction], pos: pb.WalPosition,
               prev_chain: bytes, wait_for_replica: bool = False, more: bool = False) -> bool:
        """Make `txns` (chain values set, continuing `prev_chain`) durable in the log (retrying
        while the service is unreachable: a retry of what landed is accepted as the same);
        whether a replica applied them (only asked with `wait_for_replica`)."""
        req = pb.AppendRequest(database=self.name, log_id=log_id, page_size=page_size,
                               transactions=txns, wal_position=pos, wait_for_replica=wait_for_replica,
                               prev_chain=prev_chain, primary_id=self.primary_id, more=more)
        deadline = time.monotonic() + APPEND_RETRY_SECONDS
        while True:
            try:
                return self._stub.Append(req, timeout=APPEND_RETRY_SECONDS, wait_for_ready=True).replica_applied
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
                        and time.monotonic() < deadline:
                    time.sleep(0.1)  # the service is restarting: try again until the deadline
                    continue
                state = replication_state.of(exc)
                if state in (replication_state.FRAME_GAP, replication_state.LOG_ID_MISMATCH):
                    raise LogMoved(details) from exc
                if state == replication_state.LOG_FORKED:
                    raise LogForked(details) from exc
                raise CaptureError(f"log commit of db {self.name}: {details}; the commit is durable on "
                                   "the primary but not replicated; check the replication service") from exc

    def close(self) -> None:
        self._channel.close()
