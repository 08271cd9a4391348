"""One client connection: startup, then the message loop.

The codec (pgwire/) knows bytes; this module drives it over an asyncio stream. Simple
queries become one batch on the client's scheduler session; the extended protocol is in
extended.py. Session commands (SET, SHOW, ...) are answered here (commands.py). A client
that goes away is a normal end: the session is closed and the scheduler rolls back.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING

from common.sqltext import is_empty, split
from edge import commands, handshake, render
from edge.extended import Extended
from edge.pgwire import codec, messages as m
from edge.scheduler_client import SchedulerSession, SessionEnded
from edge.sqlrewrite import rewrite
from sqld.v1 import common_pb2, query_pb2

if TYPE_CHECKING:
    from edge.server import EdgeServer

log = logging.getLogger(__name__)

_STATUS = {
    common_pb2.TRANSACTION_STATUS_IDLE: b"I",
    common_pb2.TRANSACTION_STATUS_IN_TRANSACTION: b"T",
    common_pb2.TRANSACTION_STATUS_FAILED: b"E",
}
_EXTENDED = set(b"PBDECHSdcf")


class ClientGone(Exception):
    """The client closed the connection (or we must close it)."""


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
        self.settings = commands.Settings("", {})
        self.database = ""
        self.peer = writer.get_extra_info("peername")
        self.extended = Extended(self)
        self._cancel_reason: str | None = None
        self._running = False

    # -- I/O helpers -------------------------------------------------------------------
    async def _read(self, n: int) -> bytes:
        try:
            return await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ClientGone() from exc

    def send(self, data: bytes) -> None:
        if data:
            self.writer.write(data)

    async def flush_socket(self) -> None:
        try:
            await self.writer.drain()
        except ConnectionError as exc:
            raise ClientGone() from exc

    def _fatal(self, sqlstate: str, message: str, hint: str = "") -> None:
        self.send(m.error_response(sqlstate, message, severity="FATAL", hint=hint))

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
        """TLS, cancel requests and authentication (handshake.py), then the session; True when ready."""
        start = await handshake.begin(self)
        if start is None:
            return False
        params = start.params
        user = params["user"]
        self.database = params.get("database") or user
        self.settings = commands.Settings(user, params)
        self.session = SchedulerSession(self.server.stub, self._closed_by_server)
        try:
            await self.session.open(self.database, user, self.settings.values["application_name"])
        except SessionEnded as exc:
            hint = (f'the default database is "{self.server.cfg.default_database}"'
                    if exc.error.sqlstate == "3D000" else "")
            self._fatal(exc.error.sqlstate, exc.error.message, hint=hint)
            self.session = None
            return False
        out = [m.AUTH_OK]
        out += [m.parameter_status(k, self.settings.values[k]) for k in commands.REPORTED]
        out += [m.backend_key_data(self.pid, self.secret), m.ready_for_query(b"I")]
        self.send(b"".join(out))
        await self.flush_socket()
        return True

    def _closed_by_server(self, error: common_pb2.StatementError) -> None:
        """The scheduler ended the session (e.g. idle-in-transaction timeout): tell the client, hang up."""
        self._fatal(error.sqlstate or "57P01", error.message)
        self.writer.close()

    async def _loop(self) -> None:
        max_len = self.server.cfg.max_message_bytes
        while True:
            kind, length = codec.message_header(await self._read(5), max_len)
            body = await self._read(length) if length else b""
            if kind == b"Q":
                sql, _ = codec.cstring(body)
                await self._simple_query(sql)
            elif kind == b"X":
                return
            elif kind[0] in _EXTENDED:
                await self.extended.handle(kind, body)
            else:
                raise codec.ProtocolError(f"invalid frontend message type {kind!r}")

    # -- running statements --------------------------------------------------------------
    async def run_batch(self, statements: list[common_pb2.Statement], implicit: bool) -> query_pb2.BatchResult:
        assert self.session is not None
        timeout = self.settings.statement_timeout_s()
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout, self._cancel_running, "statement timeout") if timeout > 0 else None
        self._running, self._cancel_reason = True, None
        try:
            batch = await self.session.run(statements, implicit_transaction=implicit)
        except SessionEnded as exc:
            self._fatal(exc.error.sqlstate, exc.error.message)
            await self.flush_socket()
            raise ClientGone() from exc
        finally:
            self._running = False
            if timer is not None:
                timer.cancel()
        if self._cancel_reason:
            for r in batch.results:
                if r.HasField("error") and r.error.sqlstate == "57014":
                    r.error.message = f"canceling statement due to {self._cancel_reason}"
        self.status = _STATUS[batch.status]
        return batch

    async def describe(self, sql: str) -> common_pb2.StatementResult:
        assert self.session is not None
        try:
            batch = await self.session.run([common_pb2.Statement(sql=sql)], False, describe_only=True)
        except SessionEnded as exc:
            self._fatal(exc.error.sqlstate, exc.error.message)
            await self.flush_socket()
            raise ClientGone() from exc
        return batch.results[0]

    def _cancel_running(self, reason: str) -> None:
        if self._running and self.session is not None:
            self._cancel_reason = reason
            asyncio.ensure_future(self.session.cancel())

    async def cancel(self) -> None:
        """A CancelRequest for this connection."""
        self._cancel_running("user request")

    def run_local(self, sql: str) -> commands.LocalResult | None:
        return commands.local(sql, self.settings, self.database, self.pid)

    # -- simple query --------------------------------------------------------------------
    async def _simple_query(self, sql: str) -> None:
        if self.extended.out or self.extended.batch:
            await self.extended.flush()
        if is_empty(sql):
            self.send(m.EMPTY_QUERY + m.ready_for_query(self.status))
            await self.flush_socket()
            return
        texts = split(sql)
        out: list[bytes] = []
        i = 0
        while i < len(texts):
            res = self.run_local(texts[i])
            if res is not None:
                out += render.local_messages(res)
                i += 1
                if res.error:
                    break
                continue
            j = i
            while j < len(texts) and (j == i or self.run_local_probe(texts[j]) is None):
                j += 1
            group = texts[i:j]
            was_failed = self.status == b"E"
            batch = await self.run_batch([common_pb2.Statement(sql=rewrite(t).sql) for t in group],
                                         implicit=len(texts) > 1)
            failed = False
            for text, result in zip(group, batch.results):
                out += render.simple_messages(text, result, was_failed)
                failed = result.HasField("error")
            if failed:
                break
            i = j
        self.send(b"".join(out) + m.ready_for_query(self.status))
        await self.flush_socket()

    def run_local_probe(self, sql: str) -> commands.LocalResult | None:
        """What the edge would answer for `sql`, without changing any setting."""
        return commands.local(sql, self.settings.copy(), self.database, self.pid)
