"""One client connection: the handshake, then the message loop. Only the loop.

Layers, each looking only down: this loop → the handlers (simple.py, extended.py, and
copy.py under simple) → the session (session.py) → the transport (transport.py) and the
scheduler session (scheduler_client.py). The loop reads a message and hands it to its
handler. A client that goes away is a normal end: the session is closed and the scheduler
rolls back.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from typing import Protocol

from sqld.common import mux, sqlstate
from sqld.common.sqlstate import SqlError
from sqld.common.statement import classify
from sqld.edge import commands, handshake, metrics, simple, sqlitewire, timetravel
from sqld.edge.auth import exchange
from sqld.edge.config import Config
from sqld.edge.extended import Extended
from sqld.edge.pgwire import codec
from sqld.edge.pgwire import messages as m
from sqld.edge.scheduler_client import SessionEnded
from sqld.edge.session import Session
from sqld.edge.transport import ClientGone, Transport
from sqld.v1 import activity_pb2_grpc, admin_pb2_grpc, common_pb2

log = logging.getLogger(__name__)

_EXTENDED = set(b"PBDECHSdcf")


class Host(Protocol):
    """What a connection needs of the server that accepted it (server.EdgeServer)."""
    cfg: Config
    tls: ssl.SSLContext | None
    auth: exchange.Policy
    sessions: mux.Channel  # the shared stream to the scheduler
    admin: admin_pb2_grpc.DatabaseAdminStub  # CREATE/DROP DATABASE
    activity: activity_pb2_grpc.SessionAdminStub  # pg_stat_activity, pg_cancel/terminate_backend
    superusers: frozenset[str]
    setting_defaults: dict[str, str]
    live: dict[int, Connection]  # open sessions by pid, for CancelRequest

    async def cancel(self, pid: int, key: int) -> None: ...


class Connection:
    def __init__(self, host: Host, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.host = host
        self.pid = 0  # the scheduler's, once the session is open
        self.secret = secrets.randbits(31)
        self.transport = Transport(reader, writer, host.cfg.max_message_bytes)
        self.session: Session | None = None

    async def run(self) -> None:
        t = self.transport
        started = 0.0
        try:
            if await self._startup():
                started = time.monotonic()
                metrics.SESSIONS.inc()
                await self._loop()
        except ClientGone:
            pass
        except codec.ProtocolError as exc:
            log.info("protocol error peer=%s err=%s", t.peer, exc)
            t.fatal(sqlstate.PROTOCOL_VIOLATION, str(exc))
        except Exception:  # noqa: BLE001 - one broken connection must not take the edge down
            log.exception("connection failed peer=%s", t.peer)
            t.fatal(sqlstate.INTERNAL_ERROR, "internal error in the edge; the connection is closed")
        finally:
            if self.session is not None:
                await self.session.close()
            if started:
                metrics.SESSIONS.dec()
                if self.host.cfg.log_disconnections:
                    self._log_disconnection(time.monotonic() - started)
            await t.close()

    def _log_disconnection(self, seconds: float) -> None:
        """PostgreSQL's log_disconnections line: the session's time, user, database and peer."""
        s = self.session
        peer = self.transport.peer
        log.info("disconnection session_time=%.3f user=%s database=%s host=%s pid=%d", seconds,
                 s.settings.values.get("session_authorization", "") if s else "", s.database if s else "",
                 peer[0] if isinstance(peer, tuple) else "[local]", self.pid)

    def cancel(self) -> None:
        """A CancelRequest for this connection."""
        if self.session is not None:
            self.session.cancel("user request")

    async def _startup(self) -> bool:
        """TLS, cancel requests and authentication (handshake.py), then the session; True when ready."""
        t, host = self.transport, self.host
        start = await handshake.begin(t, host.cfg, host.tls, host.auth)
        if start is None:
            return False
        if start.code == codec.CANCEL_REQUEST:
            await host.cancel(start.cancel_pid, start.cancel_key)
            return False
        params = start.params
        user = params["user"]
        try:
            settings = commands.Settings(user, params, host.setting_defaults, superuser=user in host.superusers)
        except SqlError as exc:  # a bad -c name=value in options: refused as PostgreSQL does
            log.info("startup setting refused peer=%s user=%s err=%s", t.peer, user, exc.message)
            t.fatal(exc.sqlstate, exc.message)
            return False
        read_at = None
        if (travel := timetravel.from_startup(params)) is not None:
            try:
                read_at = timetravel.parse(travel)
            except ValueError as exc:
                t.fatal(sqlstate.INVALID_PARAMETER_VALUE, str(exc))
                return False
        try:
            if sqlitewire.wanted(params):
                sqlitewire.ACTIVE.set(sqlitewire.Wire())  # this connection's task and what it runs
        except ValueError as exc:
            t.fatal(sqlstate.INVALID_PARAMETER_VALUE, str(exc))
            return False
        self.session = session = Session(t, 0, params.get("database") or user, settings)
        session.admin = host.admin
        session.activity = host.activity
        try:
            await session.open(host.sessions, user, read_at, t.peer, self.secret)
        except SessionEnded as exc:
            hint = (f'the default database is "{host.cfg.default_database}"'
                    if exc.error.sqlstate == sqlstate.INVALID_CATALOG_NAME else "")
            t.fatal(exc.error.sqlstate, exc.error.message, hint=hint)
            self.session = None
            return False
        self.pid = session.pid
        host.live[self.pid] = self
        if startup_sets := commands.forwarded_at_startup(settings):  # e.g. -c sqld.consistency=strong
            batch = await session.run([common_pb2.Statement(sql=sql, kind=classify(sql).kind) for sql in startup_sets],
                                      implicit=False)
            refused = [r.error for r in batch.results if r.HasField("error")]
            if refused:
                t.fatal(refused[0].sqlstate or sqlstate.INVALID_PARAMETER_VALUE, refused[0].message)
                return False
        if host.cfg.log_connections:
            log.info("connection authorized user=%s database=%s application_name=%s ssl=%s pid=%d", user,
                     session.database, settings.values.get("application_name", ""),
                     "on" if t.is_tls() else "off", self.pid)
        out = [m.AUTH_OK]
        out += [m.parameter_status(k, settings.values[k]) for k in commands.REPORTED]
        out += [m.backend_key_data(self.pid, self.secret), m.ready_for_query(session.status)]
        t.send(b"".join(out))
        await t.flush()
        return True

    async def _loop(self) -> None:
        t, s = self.transport, self.session
        assert s is not None
        extended = Extended(s, t)
        while True:
            kind, body = await t.read_message()
            if kind == b"Q":
                if extended.pending:
                    await extended.flush()
                try:
                    sql, _ = codec.cstring(body)
                except codec.EncodingError as exc:
                    await simple.refuse(s, t, SqlError(sqlstate.CHARACTER_NOT_IN_REPERTOIRE, str(exc)))
                    continue
                await simple.query(s, t, sql)
            elif kind == b"X":
                return
            elif kind[0] in _EXTENDED:
                await extended.handle(kind, body)
            else:
                raise codec.ProtocolError(f"invalid frontend message type {kind!r}")
