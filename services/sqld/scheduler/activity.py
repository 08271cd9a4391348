"""The site's sessions (pg_stat_activity) and signals to them (activity.proto's SessionAdmin).

Every session of the site is a Session stream on this scheduler (an edge opens its clients'
on its Multiplex stream), so the scheduler keeps the one registry: `Registry` gives each
session its pid and keeps what pg_stat_activity shows (who, since when, the last query, the
state and what it waits for, read live from `scheduler.session.Session`). Signals:
- cancel: `Session.interrupt` (the statement on storage, or a wait for the writer token or a
  connection, fails with 57014);
- terminate: the session is marked ending, its running statement interrupted, and a sentinel
  queued for an idle one; the servicer then ends the stream with SessionClosed(57P01)
  instead of answering the batch. DROP DATABASE ... WITH (FORCE) ends sessions the same way.
Permission (PostgreSQL's): a caller acting for a non-superuser signals only that user's
sessions (42501 otherwise) and sees other users' queries as `<insufficient privilege>`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time

import grpc

from sqld.common import errors, sqlstate
from sqld.common.tokens import Verifier
from sqld.scheduler import access
from sqld.scheduler.session import FAILED, IDLE, Session
from sqld.v1 import activity_pb2 as pb
from sqld.v1 import activity_pb2_grpc, common_pb2, query_pb2

log = logging.getLogger(__name__)

TERMINATE = object()  # put in a session's request queue: end it (ending says why)
FIRST_PID = 1000
QUERY_CHARS = 1024  # of a query shown, as PostgreSQL's track_activity_query_size (bytes there)


def terminated() -> common_pb2.StatementError:
    return errors.error(sqlstate.ADMIN_SHUTDOWN, "terminating connection due to administrator command")


def _us(t: float | None) -> int:
    return int(t * 1_000_000) if t else 0


@dataclasses.dataclass(eq=False)
class Backend:
    """One live session and what pg_stat_activity shows of it."""
    pid: int
    session: Session
    queue: asyncio.Queue
    user: str
    database: str
    application_name: str
    client_addr: str
    client_port: int
    backend_type: str
    cancel_key: int = 0  # the secret of the client's BackendKeyData (0: none)
    backend_start: float = dataclasses.field(default_factory=time.time)
    query: str = ""
    query_start: float | None = None
    xact_start: float | None = None
    state_change: float = dataclasses.field(default_factory=time.time)
    active: bool = False
    ending: common_pb2.StatementError | None = None  # terminated: end instead of answering

    def started(self, batch: query_pb2.Batch) -> None:
        """A batch begins: its query is the client's text (the edge's), else its statements."""
        query = batch.query[:QUERY_CHARS]
        if not query:
            parts: list[str] = []
            for st in batch.statements:
                parts.append(st.sql)
                if sum(map(len, parts)) > QUERY_CHARS:
                    break
            query = "; ".join(parts)[:QUERY_CHARS]
        now = time.time()
        self.query, self.query_start, self.state_change, self.active = query, now, now, True
        if self.session.status == IDLE:
            self.xact_start = now

    def finished(self) -> None:
        """The batch was answered."""
        self.active = False
        self.state_change = time.time()
        if self.session.status == IDLE:
            self.xact_start = None

    def state(self) -> str:
        if self.active:
            return "active"
        status = self.session.status
        if status == IDLE:
            return "idle"
        return "idle in transaction (aborted)" if status == FAILED else "idle in transaction"

    def info(self, see_query: bool) -> pb.SessionInfo:
        wait_type, wait = ("Client", "ClientRead") if not self.active else self.session.waiting_for or ("", "")
        return pb.SessionInfo(
            pid=self.pid, user=self.user, database=self.database, application_name=self.application_name,
            client_addr=self.client_addr, client_port=self.client_port, backend_type=self.backend_type,
            backend_start_us=_us(self.backend_start), xact_start_us=_us(self.xact_start),
            query_start_us=_us(self.query_start), state_change_us=_us(self.state_change), state=self.state(),
            query=self.query if see_query else "<insufficient privilege>",
            wait_event_type=wait_type, wait_event=wait)

    def terminate(self, reason: common_pb2.StatementError | None = None) -> None:
        """End the session now: a running statement is interrupted, an idle session woken."""
        if self.ending is not None:
            return
        self.ending = reason or terminated()
        self.queue.put_nowait(TERMINATE)
        if self.active:
            asyncio.ensure_future(self.session.interrupt())


class Registry:
    """The live sessions of this scheduler, by pid."""

    def __init__(self) -> None:
        self.by_pid: dict[int, Backend] = {}
        self._pids = itertools.count(FIRST_PID)

    def add(self, session: Session, queue: asyncio.Queue, **who) -> Backend:
        pid = next(self._pids)
        while pid in self.by_pid or pid > 2**31 - 1:  # after 2**31 sessions: wrap around
            if pid > 2**31 - 1:
                self._pids = itertools.count(FIRST_PID)
            pid = next(self._pids)
        backend = Backend(pid, session, queue, **who)
        self.by_pid[pid] = backend
        return backend

    def remove(self, backend: Backend) -> None:
        self.by_pid.pop(backend.pid, None)

    def on(self, database: str) -> list[Backend]:
        return [b for b in self.by_pid.values() if b.database == database]


def _may_signal(request: pb.SignalSessionRequest, target: Backend) -> common_pb2.StatementError | None:
    if not request.as_user or request.superuser or request.as_user == target.user:
        return None
    what = ("role whose query is being canceled" if request.signal == pb.SIGNAL_CANCEL
            else "role whose process is being terminated")
    return errors.error(sqlstate.INSUFFICIENT_PRIVILEGE, f"must be a member of the {what} or member of pg_signal_backend")


class SessionAdminServicer(activity_pb2_grpc.SessionAdminServicer):
    def __init__(self, registry: Registry, verifier: Verifier | None) -> None:
        self.registry = registry
        self.verifier = verifier

    async def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        await access.require_operator(self.verifier, context, "the site's sessions")

    async def ListSessions(self, request: pb.ListSessionsRequest,  # noqa: N802
                           context: grpc.aio.ServicerContext) -> pb.ListSessionsResponse:
        await self._authorize(context)
        every = not request.as_user or request.superuser
        return pb.ListSessionsResponse(sessions=[
            b.info(every or b.user == request.as_user) for _, b in sorted(self.registry.by_pid.items())])

    async def SignalSession(self, request: pb.SignalSessionRequest,  # noqa: N802
                            context: grpc.aio.ServicerContext) -> pb.SignalSessionResponse:
        await self._authorize(context)
        target = self.registry.by_pid.get(request.pid)
        if target is None or (request.cancel_key and (request.signal != pb.SIGNAL_CANCEL
                                                      or request.cancel_key != target.cancel_key)):
            return pb.SignalSessionResponse(signalled=False)
        if not request.cancel_key and (refused := _may_signal(request, target)) is not None:
            return pb.SignalSessionResponse(error=refused)
        if request.signal == pb.SIGNAL_CANCEL:
            log.info("cancel requested pid=%d db=%s by=%s", target.pid, target.database, request.as_user or "-")
            await target.session.interrupt()
        elif request.signal == pb.SIGNAL_TERMINATE:
            log.info("terminate requested pid=%d db=%s by=%s", target.pid, target.database, request.as_user or "-")
            target.terminate()
        else:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "signal: expected SIGNAL_CANCEL or SIGNAL_TERMINATE")
        return pb.SignalSessionResponse(signalled=True)
