"""One client connection: startup, then the message loop.

The codec (pgwire/) knows bytes; this module drives it over an asyncio stream. Simple
queries become one batch on the client's scheduler session; the extended protocol is in
extended.py. Session commands (SET, SHOW, ...) are answered here (commands.py). A client
that goes away is a normal end: the session is closed and the scheduler rolls back.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from typing import TYPE_CHECKING

from common.sqltext import is_empty, split
from edge import colnames, commands, copy, cursors, handshake, render, results, timetravel, types
from edge.extended import Extended
from edge.pgwire import codec
from edge.pgwire import messages as m
from edge.rowstore import RowStore
from edge.scheduler_client import PartSink, SchedulerSession, SessionEnded
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
    def __init__(self, server: EdgeServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
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
        self.cursors = cursors.Cursors()
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
        self.settings = commands.Settings(user, params, self.server.setting_defaults)
        read_at = None
        if (travel := timetravel.from_startup(params)) is not None:
            try:
                read_at = timetravel.parse(travel)
            except ValueError as exc:
                self._fatal("22023", str(exc))
                return False
        self.session = SchedulerSession(self.server.stub, self._closed_by_server)
        try:
            await self.session.open(self.database, user, self.settings.values["application_name"], read_at)
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
                try:
                    sql, _ = codec.cstring(body)
                except codec.EncodingError as exc:
                    await self._query_error("22021", str(exc))
                    continue
                await self._simple_query(sql)
            elif kind == b"X":
                return
            elif kind[0] in _EXTENDED:
                await self.extended.handle(kind, body)
            else:
                raise codec.ProtocolError(f"invalid frontend message type {kind!r}")

    # -- running statements --------------------------------------------------------------
    async def run_batch(self, statements: list[common_pb2.Statement], implicit: bool,
                        on_part: PartSink | None = None) -> query_pb2.BatchResult:
        """One batch; a large result's ResultParts are awaited in `on_part` as they come."""
        assert self.session is not None
        timeout = self.settings.statement_timeout_s()
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout, self._cancel_running, "statement timeout") if timeout > 0 else None
        self._running, self._cancel_reason = True, None
        try:
            batch = await self._session_run(statements, implicit,
                                            on_part=self._parts_to(on_part) if on_part else None)
        finally:
            self._running = False
            if timer is not None:
                timer.cancel()
        for r in batch.results:
            self._cancel_message(r)
        self.status = _STATUS[batch.status]
        if self.status == b"I":
            self.cursors.end_transaction()
        return batch

    def _cancel_message(self, r: common_pb2.StatementResult) -> None:
        if self._cancel_reason and r.HasField("error") and r.error.sqlstate == "57014":
            r.error.message = f"canceling statement due to {self._cancel_reason}"

    def _parts_to(self, on_part: PartSink) -> PartSink:
        async def part(p: common_pb2.ResultPart) -> None:
            if p.HasField("result"):
                self._cancel_message(p.result)
            await on_part(p)
        return part

    async def _session_run(self, statements: list[common_pb2.Statement], implicit: bool,
                           **kind) -> query_pb2.BatchResult:
        """One Batch on the scheduler session; a session that ended ends the connection (FATAL)."""
        assert self.session is not None
        try:
            return await self.session.run(statements, implicit, **kind)
        except SessionEnded as exc:
            self._fatal(exc.error.sqlstate, exc.error.message)
            await self.flush_socket()
            raise ClientGone() from exc

    async def describe(self, sql: str) -> common_pb2.StatementResult:
        batch = await self._session_run([common_pb2.Statement(sql=sql)], False, describe_only=True)
        return batch.results[0]

    async def fail_transaction(self) -> None:
        """An error the edge raised inside a transaction fails it, as any error does in PostgreSQL."""
        batch = await self._session_run([], False, fail_transaction=True)
        self.status = _STATUS[batch.status]

    def _cancel_running(self, reason: str) -> None:
        if self._running and self.session is not None:
            self._cancel_reason = reason
            asyncio.ensure_future(self.session.cancel())

    async def cancel(self) -> None:
        """A CancelRequest for this connection."""
        self._cancel_running("user request")

    def run_local(self, sql: str) -> commands.LocalResult | None:
        res = commands.local(sql, self.settings, self.database, self.pid)
        if res is not None and res.error is None:
            self._session_side_effects(sql)
        return res

    # -- simple query --------------------------------------------------------------------
    def kind_of(self, sql: str) -> str:
        """How the edge handles a statement: local, declare, fetch, close, copy or remote."""
        head = sql.lstrip()[:8].upper()
        if head.startswith("DECLARE") and cursors.DECLARE.match(sql.strip()):
            return "declare"
        if (head.startswith("FETCH") or head.startswith("MOVE")) and cursors.FETCH.match(sql.strip()):
            return "fetch"
        if head.startswith("CLOSE") and cursors.CLOSE.match(sql.strip()) and not head.startswith("CLOSE AL"):
            return "close"
        if head.startswith("COPY"):
            return "copy"
        if commands.local(sql, self.settings.copy(), self.database, self.pid) is not None:
            return "local"
        return "remote"

    async def _simple_query(self, sql: str) -> None:
        if self.extended.out or self.extended.batch:
            await self.extended.flush()
        if is_empty(sql):
            self.send(m.EMPTY_QUERY + m.ready_for_query(self.status))
            await self.flush_socket()
            return
        texts = split(sql)
        kinds = [self.kind_of(t) for t in texts]
        i = 0
        while i < len(texts):
            if kinds[i] == "remote":
                j = i
                while j < len(texts) and kinds[j] == "remote":
                    j += 1
                ok = await self._simple_remote(texts[i:j], implicit=len(texts) > 1)
                i = j
            else:
                ok = await self._simple_special(kinds[i], texts[i])
                i += 1
            if not ok:
                break
        self.send(m.ready_for_query(self.status))
        await self.flush_socket()

    async def _query_error(self, sqlstate: str, message: str) -> None:
        """A Query refused before it runs: ErrorResponse, ReadyForQuery, the connection stays."""
        if self.extended.out or self.extended.batch:
            await self.extended.flush()
        self.send(m.error_response(sqlstate, message))
        if self.status == b"T":
            await self.fail_transaction()
        self.send(m.ready_for_query(self.status))
        await self.flush_socket()

    async def _simple_remote(self, group: list[str], implicit: bool) -> bool:
        was_failed = self.status == b"E"
        rewritten = [rewrite(t) for t in group]
        stream = results.SimpleStream(self, group, rewritten, was_failed)
        batch = await self.run_batch([common_pb2.Statement(sql=r.sql) for r in rewritten], implicit=implicit,
                                     on_part=stream.part)
        if stream.failed:
            return False
        out: list[bytes] = []
        for text, r, result in list(zip(group, rewritten, batch.results))[stream.done:]:
            if result.HasField("ok"):
                colnames.apply(r.column_names, result.ok.columns)
            out += render.simple_messages(text, result, was_failed)
            if not result.HasField("error"):
                commands.remember_forwarded(text, self.settings)
            if result.HasField("error"):
                self.send(b"".join(out))
                return False
        self.send(b"".join(out))
        return True

    async def _simple_special(self, kind: str, sql: str) -> bool:
        try:
            if kind == "local":
                res = self.run_local(sql)
                assert res is not None
                self.send(b"".join(render.local_messages(res)))
                return res.error is None
            if kind == "declare":
                await self.declare(sql)
                self.send(m.command_complete("DECLARE CURSOR"))
            elif kind == "fetch":
                fetched = self.cursors.fetch(sql)
                out = []
                if fetched.tag.startswith("FETCH"):
                    oids = render.cursor_oids(fetched.cursor)
                    out.append(render.row_description([c.name for c in fetched.cursor.result.columns], oids,
                                                      [0] * len(oids)))
                    out += render.data_rows(fetched.rows, oids, [0] * len(oids), strict=False)
                self.send(b"".join(out) + m.command_complete(fetched.tag))
            elif kind == "close":
                self.send(m.command_complete(self.cursors.close(sql)))
            elif kind == "copy":
                await self._copy(sql)
            return True
        except (cursors.CursorError, copy.CopyError) as exc:
            self.send(m.error_response(exc.sqlstate, str(exc)))
            if self.status == b"T":
                await self.fail_transaction()
            return False

    def _session_side_effects(self, sql: str) -> None:
        """CLOSE ALL, DISCARD ALL and DEALLOCATE also clear the edge's own session state."""
        words = sql.strip().rstrip(";").split()
        verb = words[0].upper() if words else ""
        if verb in ("CLOSE", "DISCARD"):
            self.cursors.close_all()
        if verb == "DISCARD" or (verb == "DEALLOCATE" and words[-1].upper() == "ALL"):
            self.extended.statements = {k: v for k, v in self.extended.statements.items() if k == ""}
        elif verb == "DEALLOCATE":
            self.extended.statements.pop(words[-1].strip('"'), None)

    async def declare(self, sql: str) -> None:
        """DECLARE: run the cursor's query now and keep its rows."""
        m_ = cursors.DECLARE.match(sql.strip())
        assert m_ is not None
        hold = (m_.group("hold") or "").upper() == "WITH"
        if self.status != b"T" and not hold:
            raise cursors.CursorError("25P01", "DECLARE CURSOR can only be used in transaction blocks")
        query = rewrite(m_.group("query"))
        kept = results.Collect(RowStore())
        batch = await self.run_batch([common_pb2.Statement(sql=query.sql)], implicit=False, on_part=kept.part)
        result = kept.result or batch.results[0]
        if result.HasField("error"):
            kept.rows.close()
            raise cursors.CursorError(result.error.sqlstate, result.error.message)
        colnames.apply(query.column_names, result.ok.columns)
        self.cursors.declare(cursors.unquote(m_.group("name")), result.ok, hold,
                             kept.rows if kept.result is not None else None)
        if kept.result is None:
            kept.rows.close()

    async def _copy(self, sql: str) -> None:
        spec = copy.parse(sql)
        if spec.direction == "TO":
            query = rewrite(spec.query or f"SELECT {', '.join(spec.columns) or '*'} FROM {spec.table}")
            kept = results.Collect(RowStore())  # bounded: memory up to 8 MiB, then a temp file
            try:
                batch = await self.run_batch([common_pb2.Statement(sql=query.sql)], implicit=False,
                                             on_part=kept.part)
                result = kept.result or batch.results[0]
                if result.HasField("error"):
                    raise copy.CopyError(result.error.sqlstate, result.error.message)
                if kept.result is None:
                    kept.rows.add(result.ok.rows)
                rs = common_pb2.ResultSet(columns=result.ok.columns, rows=kept.rows.sample)
                colnames.apply(query.column_names, rs.columns)
                oids = render.result_oids(rs)
                total = kept.rows.remaining
                self.send(m.copy_out_response(len(rs.columns)))
                header = spec.header
                while kept.rows.remaining or header:
                    rows = [[None if (b := types.to_text(v, o)) is None else b.decode() for v, o in zip(r.values, oids)]
                            for r in kept.rows.take(1000)]
                    self.send(b"".join(m.copy_data(d) for d in copy.format_rows(
                        [c.name for c in rs.columns], rows, dataclasses.replace(spec, header=header))))
                    header = False
                    await self.flush_socket()
            finally:
                kept.rows.close()
            self.send(m.COPY_DONE + m.command_complete(f"COPY {total}"))
            return
        if spec.table is None:
            raise copy.CopyError("42601", "COPY FROM needs a table")
        named = [c for c in spec.force_not_null + spec.force_null if c != "*"]
        columns = await self._copy_columns(spec) if named else []
        self.send(m.copy_in_response(len(spec.columns)))
        await self.flush_socket()
        chunks: list[bytes] = []
        max_len = self.server.cfg.max_message_bytes
        while True:
            kind, length = codec.message_header(await self._read(5), max_len)
            body = await self._read(length) if length else b""
            if kind == b"d":
                chunks.append(body)
            elif kind == b"c":
                break
            elif kind == b"f":
                raise copy.CopyError("57014", f"COPY from stdin failed: {codec.cstring(body)[0]}")
            elif kind in (b"H", b"S"):
                continue
            else:
                raise codec.ProtocolError(f"unexpected message type {kind!r} during COPY")
        try:
            rows = copy.parse_rows(b"".join(chunks).decode(), spec)
        except UnicodeDecodeError as exc:
            raise copy.CopyError("22021", codec.utf8_error(exc)) from exc
        except ValueError as exc:
            raise copy.CopyError("22P02", f"COPY data: {exc}") from exc
        copy.force(rows, spec, columns)
        if not rows:
            self.send(m.command_complete("COPY 0"))
            return
        width = len(spec.columns) or len(rows[0])
        cols = f" ({', '.join(spec.columns)})" if spec.columns else ""
        insert = f"INSERT INTO {spec.table}{cols} VALUES ({', '.join(f'?{i + 1}' for i in range(width))})"
        statements = []
        for n, row in enumerate(rows, 1):
            if len(row) != width:
                raise copy.CopyError("22P04", f"COPY data line {n}: expected {width} columns, got {len(row)}")
            statements.append(common_pb2.Statement(sql=insert, params=[
                common_pb2.Value(null=True) if v is None else common_pb2.Value(text=v) for v in row]))
        batch = await self.run_batch(statements, implicit=True)
        last = batch.results[-1] if batch.results else None
        if last is not None and last.HasField("error"):
            raise copy.CopyError(last.error.sqlstate, f"COPY line {len(batch.results)}: {last.error.message}")
        self.send(m.command_complete(f"COPY {len(rows)}"))

    async def _copy_columns(self, spec: copy.CopySpec) -> list[str]:
        """The columns a COPY FROM fills (its list, else the table's), for FORCE_NOT_NULL / FORCE_NULL."""
        if spec.columns:
            return [copy.column_key(c) for c in spec.columns]
        result = await self.describe(rewrite(f"SELECT * FROM {spec.table}").sql)
        if result.HasField("error"):
            raise copy.CopyError(result.error.sqlstate, result.error.message)
        return [copy.column_key(c.name) for c in result.description.columns]
