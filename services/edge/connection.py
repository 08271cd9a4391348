"""One client connection: startup, then the message loop of the simple query protocol.

The codec (pgwire/) knows bytes; this module drives it over an asyncio stream and turns
each query into one batch on the client's scheduler session. A client that goes away is
a normal end: the session is closed and the scheduler rolls back what was open.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING

from common.sqltext import is_empty, split
from edge import tags, types
from edge.pgwire import codec, messages as m
from edge.scheduler_client import SchedulerSession, SessionEnded
from sqld.v1 import common_pb2, query_pb2

if TYPE_CHECKING:
    from edge.server import EdgeServer

log = logging.getLogger(__name__)

_STATUS = {
    common_pb2.TRANSACTION_STATUS_IDLE: b"I",
    common_pb2.TRANSACTION_STATUS_IN_TRANSACTION: b"T",
    common_pb2.TRANSACTION_STATUS_FAILED: b"E",
}
_EXTENDED = set(b"PBDECHSFdcf")


class ClientGone(Exception):
    """The client closed the connection."""


def server_parameters(user: str, application_name: str) -> list[tuple[str, str]]:
    """The ParameterStatus set a PostgreSQL 15 server reports after startup."""
    return [
        ("application_name", application_name),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("default_transaction_read_only", "off"),
        ("in_hot_standby", "off"),
        ("integer_datetimes", "on"),
        ("IntervalStyle", "postgres"),
        ("is_superuser", "on"),
        ("server_encoding", "UTF8"),
        ("server_version", "15.0"),
        ("session_authorization", user),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "UTC"),
    ]


class Connection:
    def __init__(self, server: "EdgeServer", reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 pid: int) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.pid = pid
        self.secret = secrets.randbits(31)
        self.status = b"I"
        self.session: SchedulerSession | None = None
        self.peer = writer.get_extra_info("peername")

    # -- I/O helpers -------------------------------------------------------------------
    async def _read(self, n: int) -> bytes:
        try:
            return await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ClientGone() from exc

    def _send(self, data: bytes) -> None:
        self.writer.write(data)

    async def _flush(self) -> None:
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise ClientGone() from exc

    def _fatal(self, sqlstate: str, message: str, hint: str = "") -> None:
        self._send(m.error_response(sqlstate, message, severity="FATAL", hint=hint))

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self) -> None:
        try:
            if await self._startup():
                await self._loop()
        except ClientGone:
            pass
        except codec.ProtocolError as exc:
            log.info("protocol error peer=%s err=%s", self.peer, exc)
            self._fatal("08P01", str(exc))
        except Exception:  # noqa: BLE001 - one broken connection must not take the edge down
            log.exception("connection failed peer=%s", self.peer)
            self._fatal("XX000", "internal error in the edge; the connection is closed")
        finally:
            self.server.forget(self)
            if self.session is not None:
                await self.session.close()
            try:
                await self.writer.drain()
            except ConnectionError:
                pass
            self.writer.close()

    async def _startup(self) -> bool:
        """Handle SSL/GSS/cancel requests and the startup message; True when ready for queries."""
        while True:
            length = codec.startup_length(await self._read(4))
            start = codec.parse_startup(await self._read(length))
            if start.code in (codec.SSL_REQUEST, codec.GSSENC_REQUEST):
                self._send(b"N")
                await self._flush()
                continue
            if start.code == codec.CANCEL_REQUEST:
                await self.server.cancel(start.cancel_pid, start.cancel_key)
                return False
            break
        params = start.params
        user = params.get("user", "")
        if not user:
            self._fatal("28000", "no PostgreSQL user name specified in startup packet")
            return False
        database = params.get("database") or user
        app = params.get("application_name", "")
        self.session = SchedulerSession(self.server.stub, self._closed_by_server)
        try:
            await self.session.open(database, user, app)
        except SessionEnded as exc:
            hint = (f'the default database is "{self.server.cfg.default_database}"'
                    if exc.error.sqlstate == "3D000" else "")
            self._fatal(exc.error.sqlstate, exc.error.message, hint=hint)
            self.session = None
            return False
        out = [m.AUTH_OK]
        out += [m.parameter_status(k, v) for k, v in server_parameters(user, app)]
        out += [m.backend_key_data(self.pid, self.secret), m.ready_for_query(b"I")]
        self._send(b"".join(out))
        await self._flush()
        return True

    def _closed_by_server(self, error: common_pb2.StatementError) -> None:
        """The scheduler ended the session (e.g. idle-in-transaction timeout): tell the client, hang up."""
        self._fatal(error.sqlstate or "57P01", error.message)
        self.writer.close()

    async def _loop(self) -> None:
        max_len = self.server.cfg.max_message_bytes
        skipping = False  # after an error in the extended protocol, skip to Sync
        while True:
            kind, length = codec.message_header(await self._read(5), max_len)
            body = await self._read(length) if length else b""
            if kind == b"Q":
                sql, _ = codec.cstring(body)
                await self._simple_query(sql)
            elif kind == b"X":
                return
            elif kind[0] in _EXTENDED:
                if kind == b"S":
                    skipping = False
                    self._send(m.ready_for_query(self.status))
                    await self._flush()
                elif kind in (b"H", b"c", b"f", b"d"):
                    continue
                elif not skipping:
                    skipping = True
                    self._send(m.error_response("0A000", "the extended query protocol is not supported yet; "
                                                "use the simple query protocol"))
            else:
                raise codec.ProtocolError(f"invalid frontend message type {kind!r}")

    # -- simple query --------------------------------------------------------------------
    async def _simple_query(self, sql: str) -> None:
        if is_empty(sql):
            self._send(m.EMPTY_QUERY + m.ready_for_query(self.status))
            await self._flush()
            return
        texts = split(sql)
        statements = [common_pb2.Statement(sql=t) for t in texts]
        assert self.session is not None
        was_failed = self.status == b"E"
        try:
            batch = await self.session.run(statements, implicit_transaction=True)
        except SessionEnded as exc:
            self._fatal(exc.error.sqlstate, exc.error.message)
            await self._flush()
            raise ClientGone() from exc
        self._send_results(texts, batch, was_failed)
        self.status = _STATUS[batch.status]
        self._send(m.ready_for_query(self.status))
        await self._flush()

    def _send_results(self, texts: list[str], batch: query_pb2.BatchResult, was_failed: bool) -> None:
        out: list[bytes] = []
        for text, result in zip(texts, batch.results):
            for notice in result.notices:
                out.append(m.notice_response(notice.sqlstate, notice.message))
            if result.HasField("error"):
                err = result.error
                out.append(m.error_response(err.sqlstate, err.message))
                break
            rs = result.ok
            if rs.columns:
                oids = [types.column_oid(col.decltype, [row.values[i] for row in rs.rows])
                        for i, col in enumerate(rs.columns)]
                out.append(m.row_description([(col.name, oid, types.TYPE_SIZE.get(oid, -1))
                                              for col, oid in zip(rs.columns, oids)]))
                for row in rs.rows:
                    out.append(m.data_row(types.to_text(v, oid) for v, oid in zip(row.values, oids)))
            out.append(m.command_complete(tags.command_tag(text, rs, was_failed)))
        self._send(b"".join(out))
