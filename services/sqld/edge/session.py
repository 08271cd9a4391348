"""The edge's session for one client: what PostgreSQL keeps per backend, and the scheduler session.

State: the transaction status (the proto's TransactionStatus, as the scheduler reports it;
the wire byte is made only in pgwire/messages.ready_for_query), the settings (SET/SHOW),
SQL cursors, prepared statements. Verbs: run a batch, describe a statement, fail the
transaction, cancel the running statement (a CancelRequest or statement_timeout), answer a
statement locally. The handlers (simple.py, extended.py, copy.py) use it; it uses the
scheduler session and, to end the connection when the scheduler ends the session, the transport.
"""
from __future__ import annotations

import asyncio
import logging
import time

from sqld.common import mux, sqlstate, statement
from sqld.common.statement import classify
from sqld.edge import activity, commands, cursors, dispatch, metrics, sqlitewire
from sqld.edge.catalog import functions
from sqld.edge.pgwire import messages as m
from sqld.edge.prepared import Prepared
from sqld.edge.scheduler_client import PartSink, SchedulerSession, SessionEnded
from sqld.edge.transport import ClientGone, Transport
from sqld.v1 import activity_pb2_grpc, admin_pb2_grpc, common_pb2, query_pb2

log = logging.getLogger(__name__)

IDLE = common_pb2.TRANSACTION_STATUS_IDLE
IN_TRANSACTION = common_pb2.TRANSACTION_STATUS_IN_TRANSACTION
FAILED = common_pb2.TRANSACTION_STATUS_FAILED


class Session:
    def __init__(self, transport: Transport, pid: int, database: str, settings: commands.Settings) -> None:
        self.transport = transport
        self.pid = pid
        self.database = database
        self.settings = settings
        self.status: common_pb2.TransactionStatus = IDLE
        self.cursors = cursors.Cursors()
        self.statements: dict[str, Prepared] = {}
        self._scheduler: SchedulerSession | None = None
        self.admin: admin_pb2_grpc.DatabaseAdminStub | None = None  # CREATE/DROP DATABASE (databases.py)
        self.activity: activity_pb2_grpc.SessionAdminStub | None = None  # pg_stat_activity, signals (activity.py)
        self.query_text = ""  # the client's text being run, for pg_stat_activity (set by the handlers)
        self._to_scheduler: list[str] = []  # SETs of the scheduler's settings that a RESET changed here
        self._cancel_reason: str | None = None
        self._running = False
        self.transaction_start = time.time()  # now(): the start of the session's transaction

    async def open(self, sessions: mux.Channel, user: str, read_at: common_pb2.ReadAt | None,
                   peer: object = None, cancel_key: int = 0) -> None:
        """Open the scheduler session; SessionEnded says why it could not. The scheduler gives
        the session its pid (BackendKeyData, pg_stat_activity)."""
        self._scheduler = SchedulerSession(sessions, self._closed_by_server)
        client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else ("", 0)
        await self._scheduler.open(self.database, user, self.settings.values["application_name"], read_at, client,
                                   cancel_key)
        self.pid = self._scheduler.pid

    async def close(self) -> None:
        if self._scheduler is not None:
            await self._scheduler.close()

    def _closed_by_server(self, error: common_pb2.StatementError) -> None:
        """The scheduler ended the session (e.g. idle-in-transaction timeout): tell the client, hang up."""
        self.transport.fatal(error.sqlstate or sqlstate.ADMIN_SHUTDOWN, error.message)
        self.transport.hang_up()

    # -- running statements --------------------------------------------------------------
    async def run(self, statements: list[common_pb2.Statement], implicit: bool,
                  on_part: PartSink | None = None) -> query_pb2.BatchResult:
        """One batch; a large result's ResultParts are awaited in `on_part` as they come."""
        if self._to_scheduler:  # before this batch, so it runs under them
            sets, self._to_scheduler = self._to_scheduler, []
            await self._run([common_pb2.Statement(sql=sql, kind=classify(sql).kind) for sql in sets], False)
        live = activity.needs(statements)
        user, superuser = self.settings.values["session_authorization"], self.settings.superuser
        if live:  # pg_stat_activity, pg_settings, signals: filled in now (activity.py)
            statements = await activity.fill(statements, self.activity, user, superuser, self.pid,
                                             self.query_text, self.settings.pg_settings())
        timeout = self.settings.statement_timeout_s()
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout, self.cancel, "statement timeout") if timeout > 0 else None
        self._running, self._cancel_reason = True, None
        started = time.perf_counter()
        try:
            batch = await self._run(statements, implicit, on_part=self._parts_to(on_part) if on_part else None)
        finally:
            self._running = False
            if timer is not None:
                timer.cancel()
        self._observe(statements, time.perf_counter() - started)
        for r in batch.results:
            self._cancel_message(r)
        self.status = batch.status
        if live and await activity.signal(statements, batch, self.activity, user, superuser) \
                and self.status == IN_TRANSACTION:
            await self.fail_transaction()
            batch.status = self.status
        self._note_read_only(statements, batch)
        if self.status == IDLE:
            self.cursors.end_transaction()
        if (wire := sqlitewire.ACTIVE.get()) is not None:
            wire.total_changes += sum(r.ok.total_changes for r in batch.results if r.HasField("ok"))
            wire.frame_no = max(wire.frame_no, batch.frame_no)
        return batch

    def _observe(self, statements: list[common_pb2.Statement], seconds: float) -> None:
        """The batch's latency by statement kind, and log_min_duration_statement's line."""
        sqls = [st.sql for st in statements]
        metrics.STATEMENT_SECONDS.labels(metrics.batch_kind(sqls)).observe(seconds)
        ms = seconds * 1000
        # PostgreSQL's log_min_duration_statement in ms (-1 off, 0 every batch): the edge's
        # --log-min-duration-statement, which a superuser's session may SET (guc.py)
        limit = self.settings.log_min_duration_ms()
        if 0 <= limit <= ms:
            log.info("duration duration_ms=%.3f user=%s database=%s pid=%d statement=%s", ms,
                     self.settings.values.get("session_authorization", ""), self.database, self.pid,
                     "; ".join(sqls))

    def _note_read_only(self, statements: list[common_pb2.Statement], batch: query_pb2.BatchResult) -> None:
        """transaction_read_only as SHOW reports it: on inside BEGIN READ ONLY, else the default."""
        values = self.settings.values
        if self.status == IDLE:
            values["transaction_read_only"] = values["default_transaction_read_only"]
        elif any(st.kind == statement.BEGIN_READ_ONLY for st, r in zip(statements, batch.results)
                 if not r.HasField("error")):
            values["transaction_read_only"] = "on"

    def ready(self) -> bytes:
        """ReadyForQuery, after what a SQLite-wire client is told at the end of a query (sqlitewire.py)."""
        wire = sqlitewire.ACTIVE.get()
        return (sqlitewire.changes_status(wire) if wire else b"") + m.ready_for_query(self.status)

    def _cancel_message(self, r: common_pb2.StatementResult) -> None:
        if self._cancel_reason and r.HasField("error") and r.error.sqlstate == sqlstate.QUERY_CANCELED:
            r.error.message = f"canceling statement due to {self._cancel_reason}"

    def _parts_to(self, on_part: PartSink) -> PartSink:
        async def part(p: common_pb2.ResultPart) -> None:
            if p.HasField("result"):
                self._cancel_message(p.result)
            await on_part(p)
        return part

    async def _run(self, statements: list[common_pb2.Statement], implicit: bool, describe_only: bool = False,
                   fail_transaction: bool = False, on_part: PartSink | None = None) -> query_pb2.BatchResult:
        """One Batch on the scheduler session; a session that ended ends the connection (FATAL)."""
        assert self._scheduler is not None
        started = time.time()
        if self.status == IDLE:
            self.transaction_start = started
        for st in statements:  # the session's values for now(), current_user ... (catalog/functions.py)
            if functions.MARKER in st.sql:
                st.sql = functions.bind(st.sql, self.settings.values["session_authorization"], self.database,
                                        self.pid, self.transaction_start, started, commands.VERSION,
                                        self.settings.values["application_name"])
        try:
            return await self._scheduler.run(statements, implicit, describe_only=describe_only,
                                             fail_transaction=fail_transaction, on_part=on_part,
                                             query="" if describe_only or fail_transaction else self.query_text)
        except SessionEnded as exc:
            self.transport.fatal(exc.error.sqlstate, exc.error.message)
            await self.transport.flush()
            raise ClientGone() from exc

    async def describe(self, statement: common_pb2.Statement) -> common_pb2.StatementResult:
        batch = await self._run([statement], False, describe_only=True)
        return batch.results[0]

    async def fail_transaction(self) -> None:
        """An error the edge raised inside a transaction fails it, as any error does in PostgreSQL."""
        batch = await self._run([], False, fail_transaction=True)
        self.status = batch.status

    def cancel(self, reason: str = "user request") -> None:
        """Stop the running statement, if any: a CancelRequest, or the statement_timeout timer."""
        if self._running and self._scheduler is not None:
            self._cancel_reason = reason
            asyncio.ensure_future(self._scheduler.cancel())

    # -- the edge's own answers ------------------------------------------------------------
    def route(self, sql: str) -> dispatch.Route:
        return dispatch.route(sql)

    def run_local(self, sql: str) -> commands.LocalResult | None:
        before = {k: self.settings.values.get(k) for k in commands.FORWARDED}
        res = commands.local(sql, self.settings, self.database, self.pid)
        if res is not None and res.error is None:
            self._to_scheduler += [f"SET {k} = '{self.settings.values[k]}'" for k in sorted(commands.FORWARDED)
                                   if self.settings.values.get(k) != before[k]]  # RESET of the scheduler's
            self._side_effects(sql)
            if self._scheduler is not None and any(k == "application_name" for k, _ in res.changed):
                asyncio.ensure_future(self._scheduler.update(self.settings.values["application_name"]))
        return res

    def _side_effects(self, sql: str) -> None:
        """CLOSE ALL, DISCARD ALL and DEALLOCATE also clear the edge's own session state."""
        words = sql.strip().rstrip(";").split()
        verb = words[0].upper() if words else ""
        if verb in ("CLOSE", "DISCARD"):
            self.cursors.close_all()
        if verb == "DISCARD" or (verb == "DEALLOCATE" and words[-1].upper() == "ALL"):
            self.statements = {k: v for k, v in self.statements.items() if k == ""}
        elif verb == "DEALLOCATE":
            self.statements.pop(words[-1].strip('"'), None)
