"""gRPC adapter for the public query service (sqld.v1.QueryService).

Session streams: requests are read by a helper task into a queue, so the handler can
wait for the next batch with a deadline (the idle-in-transaction timeout, or the end of
the transaction's allowed hold on the writer token) and end the session on its own.
Everything that decides lives in `scheduler.session`.
"""
from __future__ import annotations

import asyncio
import itertools
import logging

import grpc

from sqld.common import errors, mux, sqlstate
from sqld.common.rowparts import RowJoiner
from sqld.common.tokens import TokenError, Verifier
from sqld.scheduler import activity, routing
from sqld.scheduler.access import ReadOnlyPool
from sqld.scheduler.config import Config
from sqld.scheduler.pool import Pools
from sqld.scheduler.session import IDLE, Replicas, Session
from sqld.scheduler.storage_client import StorageUnavailable
from sqld.v1 import common_pb2, query_pb2, query_pb2_grpc

log = logging.getLogger(__name__)


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    def __init__(self, cfg: Config, pools: Pools, replicas: Replicas | None = None,
                 verifier: Verifier | None = None) -> None:
        self.cfg = cfg
        self.verifier = verifier  # None: no token needed (a development run)
        self.pools = pools
        self.replicas = replicas or Replicas()
        self._ids = itertools.count(1)
        self.sessions = 0
        self.registry = activity.Registry()  # open Session streams: pg_stat_activity, signals, DROP DATABASE
        self.multiplexed = mux.Server(self.Session, query_pb2.SessionResponseFrames, "sessions")

    async def _open(self, database: str, context: grpc.aio.ServicerContext, req=None) -> Session:
        database = database or self.cfg.default_database
        read_only = False
        if self.verifier is not None:  # the token was checked by common.authz; here: what it allows
            try:
                claims = self.verifier.from_metadata(context.invocation_metadata())
            except TokenError as exc:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            if not claims.allows(database):
                log.info("refused db=%s sub=%s: not in the token's databases", database, claims.sub)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"the token does not grant access to database {database!r}")
            read_only = claims.read_only
        try:
            pool = await self.pools.get(database,
                                        req.read_at if req is not None and req.HasField("read_at") else None)
        except StorageUnavailable as exc:
            await context.abort(exc.code or grpc.StatusCode.UNAVAILABLE, str(exc))
        if read_only:
            pool = ReadOnlyPool(pool)  # type: ignore[assignment]
        if self.sessions >= self.cfg.max_sessions:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"sorry, too many sessions already ({self.cfg.max_sessions})")
        policy = routing.Policy()
        frame_no = 0
        if req is not None:
            policy = routing.Policy(req.consistency, req.max_staleness_ms, req.synchronous_commit)
            frame_no = req.min_frame_no
        return Session(pool, self.replicas, policy, frame_no, self.cfg.max_write_transaction_seconds)

    def _too_long(self) -> common_pb2.StatementError:
        return errors.error(sqlstate.TRANSACTION_TIMEOUT, "terminating connection due to transaction timeout: the transaction held the "
                            f"write lock longer than {self.cfg.max_write_transaction_seconds:g}s "
                            "(max_write_transaction_seconds) and was rolled back")

    async def Session(self, request_iterator, context: grpc.aio.ServicerContext):
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        if first.WhichOneof("kind") != "open":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "session: the first message must be OpenSession")
        session = await self._open(first.open.database, context, first.open)
        sub = ""
        if self.verifier is not None:
            sub = self.verifier.from_metadata(context.invocation_metadata()).sub  # checked in _open
        self.sessions += 1
        session_id = f"s{next(self._ids)}"
        queue: asyncio.Queue = asyncio.Queue()
        database = session.pool.name
        me = self.registry.add(session, queue, **_who(first.open, sub, database, context))

        async def read_requests() -> None:
            try:
                while (req := await context.read()) is not grpc.aio.EOF:
                    kind = req.WhichOneof("kind")
                    if kind == "cancel":
                        await session.interrupt()
                    elif kind == "update":
                        me.application_name = req.update.application_name
                    else:
                        queue.put_nowait(req)
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                pass
            finally:
                queue.put_nowait(None)

        reader = asyncio.create_task(read_requests())
        try:
            await context.write(query_pb2.SessionResponse(opened=query_pb2.SessionOpened(
                session_id=session_id, pid=me.pid)))
            while True:
                idle = session.policy.idle_limit(self.cfg.idle_in_transaction_timeout) if session.status != IDLE else 0
                hold = session.turn.time_left()  # None unless a transaction holds the writer token
                limits = [t for t in (idle if idle > 0 else None, hold) if t is not None]
                try:
                    req = await asyncio.wait_for(queue.get(), max(min(limits), 0) if limits else None)
                except TimeoutError:
                    too_long = session.turn.expired or (hold is not None and (idle <= 0 or hold <= idle))
                    log.info("%s session=%s db=%s", "write transaction too long" if too_long else
                             "idle transaction timeout", session_id, session.pool.name)
                    await session.close()
                    await context.write(query_pb2.SessionResponse(closed=query_pb2.SessionClosed(
                        reason=self._too_long() if too_long else errors.error(
                            sqlstate.IDLE_IN_TRANSACTION_SESSION_TIMEOUT, "terminating connection due to idle-in-transaction timeout "
                            f"({idle:.0f}s): the transaction was rolled back"))))
                    return
                if req is None:
                    return
                if req is activity.TERMINATE:  # pg_terminate_backend, DROP DATABASE ... WITH (FORCE)
                    await self._terminated(me, session, context)
                    return
                if req.WhichOneof("kind") != "batch":
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "session: expected a Batch")
                batch = req.batch
                if batch.fail_transaction:
                    session.fail()
                    results = []
                elif batch.describe_only:
                    results = await session.describe(batch.statements)
                else:
                    async def send_part(part: common_pb2.ResultPart) -> None:
                        await context.write(query_pb2.SessionResponse(part=part))
                    me.started(batch)
                    try:
                        results = await session.run(batch.statements, batch.implicit_transaction, on_part=send_part)
                    finally:
                        me.finished()
                if me.ending is not None:  # terminated while the batch ran: end instead of answering
                    await self._terminated(me, session, context)
                    return
                if session.turn.expired:  # its statement was interrupted: end instead of answering
                    log.info("write transaction too long session=%s db=%s", session_id, session.pool.name)
                    await session.close()
                    await context.write(query_pb2.SessionResponse(closed=query_pb2.SessionClosed(
                        reason=self._too_long())))
                    return
                # The BatchResult as a dict: built inside the response, its results copied once, not twice.
                await context.write(query_pb2.SessionResponse(result={
                    "id": batch.id, "results": results, "status": session.status, "frame_no": session.frame_no,
                    "served_by_replica": session.served_by_replica}))
        finally:
            reader.cancel()
            self.sessions -= 1
            self.registry.remove(me)
            await session.close()

    @staticmethod
    async def _terminated(me: activity.Backend, session: activity.Session, context) -> None:
        log.info("session terminated pid=%d db=%s", me.pid, me.database)
        await session.close()
        await context.write(query_pb2.SessionResponse(closed=query_pb2.SessionClosed(
            reason=me.ending or activity.terminated())))

    def sessions_on(self, database: str) -> int:
        """Sessions of this site (every edge's and QueryService callers') on `database`."""
        return len(self.registry.on(database))

    def terminate(self, database: str) -> int:
        """End every Session stream on `database` (SessionClosed, 57P01): a running statement
        is interrupted; how many."""
        ending = self.registry.on(database)
        for backend in ending:
            backend.terminate()
        return len(ending)

    async def Multiplex(self, request_iterator, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        """Many sessions on one stream (query.proto): each runs `Session` (common.mux)."""
        await self.multiplexed.serve(context)

    async def Execute(self, request: query_pb2.ExecuteRequest, context: grpc.aio.ServicerContext
                      ) -> query_pb2.ExecuteResponse:
        session = await self._open(request.database, context, request)
        kept = _Kept(session)
        try:
            results = await session.run(request.statements, on_part=kept.add)
        finally:
            await session.close()
        results = kept.into(results)
        return query_pb2.ExecuteResponse(results=results, frame_no=session.frame_no,
                                         served_by_replica=session.served_by_replica)


def _who(open_: query_pb2.OpenSession, sub: str, database: str, context) -> dict:
    """The session's identity for pg_stat_activity: what the edge says of its client, else the
    gRPC peer of a QueryService caller (and the token's subject when it names no user)."""
    addr, port, kind = open_.client_addr, open_.client_port, "client backend"
    if not addr:
        kind = "grpc session"
        peer = context.peer() or ""  # ipv4:127.0.0.1:5555, ipv6:[::1]:5555, unix:...
        host, _, p = peer.partition(":")[2].rpartition(":")
        addr, port = (host.strip("[]"), int(p)) if p.isdigit() else ("", -1)
    return {"user": open_.user or sub, "database": database, "application_name": open_.application_name,
            "client_addr": addr, "client_port": port if addr else -1, "backend_type": kind,
            "cancel_key": open_.cancel_key}


EXECUTE_BYTES = 64 * 1024 * 1024  # the rows one unary Execute answers (query.proto)


class _Kept:
    """The rows of a unary Execute's parts, put back into its results, up to EXECUTE_BYTES;
    beyond that the statement is stopped and the call answers 54000."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.bytes = 0
        self.too_large = False
        self.rows: dict[int, list[common_pb2.Row]] = {}
        self.results: dict[int, common_pb2.StatementResult] = {}
        self.joiners: dict[int, RowJoiner] = {}

    async def add(self, part: common_pb2.ResultPart) -> None:
        if self.too_large:
            return
        self.bytes += part.ByteSize()
        if self.bytes > EXECUTE_BYTES:
            self.too_large = True
            self.rows.clear()
            await self.session.interrupt()
            return
        joiner = self.joiners.setdefault(part.statement, RowJoiner())
        self.rows.setdefault(part.statement, []).extend(joiner.feed(part))
        if part.HasField("result"):
            self.results[part.statement] = part.result

    def into(self, results: list[common_pb2.StatementResult]) -> list[common_pb2.StatementResult]:
        if self.too_large:
            return [common_pb2.StatementResult(error=errors.error(
                sqlstate.PROGRAM_LIMIT_EXCEEDED, f"the result is larger than Execute answers ({EXECUTE_BYTES >> 20} MiB); "
                "read it over a Session stream"))]
        out = []
        for i, r in enumerate(results):
            r = self.results.get(i, r)
            if i in self.rows and r.HasField("ok"):
                r = common_pb2.StatementResult(notices=r.notices, ok=common_pb2.ResultSet(
                    columns=r.ok.columns, rows=[*r.ok.rows, *self.rows[i]], rows_affected=r.ok.rows_affected,
                    last_insert_rowid=r.ok.last_insert_rowid, total_changes=r.ok.total_changes))
            out.append(r)
        return out
