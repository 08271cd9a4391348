"""The extended query protocol: prepared statements, portals, and pipelined execution.

Messages up to a Sync (or Flush) are collected: each Execute adds its statement to one
batch, and the responses are rendered in order once the batch has run, so a whole
pipeline (psycopg executemany, JDBC batches) costs one round trip to the scheduler.
Describe of a statement needs a describe-only call first (asyncpg waits on it with Flush).
After an error, everything up to Sync is skipped, as PostgreSQL does.

A large result streams (common.proto ResultParts): when its first rows come, the responses
collected before its Execute are written, then its rows as they come, the socket drained
after each part. An Execute with a row limit writes that many rows and keeps the rest in the
portal's RowStore (memory up to 8 MiB, then a temporary file) for the next Executes; a
DECLARE keeps its rows in its cursor's RowStore. Either way the whole result is read from
storage at once and the edge's memory stays bounded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqld.common import sqlstate
from sqld.common.rowparts import RowJoiner
from sqld.common.sqlstate import SqlError
from sqld.common.sqltext import is_empty, split
from sqld.common.statement import classify
from sqld.edge import colnames, commands, cursors, databases, params, render, tags, types
from sqld.edge.dispatch import Route
from sqld.edge.pgwire import codec
from sqld.edge.pgwire import messages as m
from sqld.edge.prepared import Prepared
from sqld.edge.rowstore import RowStore
from sqld.edge.session import FAILED, IDLE, IN_TRANSACTION, Session
from sqld.edge.sqlrewrite import Rewritten, rewrite
from sqld.edge.transport import Transport
from sqld.v1 import common_pb2

Result = common_pb2.StatementResult | commands.LocalResult


@dataclass
class Portal:
    stmt: Prepared
    values: list[common_pb2.Value]
    result_formats: tuple[int, ...]
    result: Result | None = None
    oids: list[int] | None = None
    pos: int = 0
    was_failed: bool = False
    rest: RowStore | None = None  # a streamed result's rows not yet sent (or a DECLARE's rows)
    count: int = 0                # rows of a streamed result sent so far


@dataclass
class _Streaming:
    """An Execute whose result is arriving in parts."""
    joiner: RowJoiner = field(default_factory=RowJoiner)
    columns: list = field(default_factory=list)
    started: bool = False  # the responses before it were written


@dataclass
class _Exec:
    portal: Portal
    max_rows: int
    index: int | None  # position in the batch, None when no statement was sent


@dataclass
class _DescribePortal:
    portal: Portal


@dataclass
class _DescribeCursor:
    name: str


Item = bytes | _Exec | _DescribePortal | _DescribeCursor


@dataclass
class Extended:
    session: Session
    transport: Transport
    portals: dict[str, Portal] = field(default_factory=dict)
    out: list[Item] = field(default_factory=list)
    batch: list[common_pb2.Statement] = field(default_factory=list)
    skipping: bool = False

    @property
    def pending(self) -> bool:
        """Responses or statements collected and not yet sent (a Query must flush them first)."""
        return bool(self.out or self.batch)

    # -- messages ----------------------------------------------------------------------
    async def handle(self, kind: bytes, body: bytes) -> None:
        if kind == b"S":
            await self.flush()
            if self.skipping and self.session.status == IN_TRANSACTION:
                await self.session.fail_transaction()  # an error of the edge's own (the scheduler fails its own)
            self.skipping = False
            self.portals.pop("", None)
            self.transport.send(self.session.ready())
            await self.transport.flush()
            return
        if kind == b"H":
            await self.flush()
            await self.transport.flush()
            return
        if self.skipping:
            return
        try:
            if kind == b"P":
                self._parse(codec.parse_parse(body))
            elif kind == b"B":
                await self._bind(codec.parse_bind(body))
            elif kind == b"D":
                await self._describe(*codec.parse_target(body))
            elif kind == b"E":
                await self._execute(*codec.parse_execute(body))
            elif kind == b"C":
                target, name = codec.parse_target(body)
                if target == "S":
                    self.session.statements.pop(name, None)
                else:
                    self.portals.pop(name, None)
                self.out.append(m.CLOSE_COMPLETE)
            # 'd', 'c', 'f' (COPY data outside COPY) are ignored, as PostgreSQL does
        except SqlError as exc:
            await self.flush()
            self._fail(exc)
        except codec.EncodingError as exc:  # text that is not UTF-8: an error, not a broken protocol
            await self.flush()
            self._fail(SqlError(sqlstate.CHARACTER_NOT_IN_REPERTOIRE, str(exc)))

    def _fail(self, error: SqlError) -> None:
        self.out.append(render.error(error.to_proto()))  # a storage error keeps its SQLite code
        self._write_out()
        self.skipping = True

    def _parse(self, msg: codec.Parse) -> None:
        statements = self.session.statements
        if msg.name and msg.name in statements:
            raise SqlError(sqlstate.DUPLICATE_PREPARED_STATEMENT, f'prepared statement "{msg.name}" already exists')
        if is_empty(msg.sql):
            stmt = Prepared(msg.sql, Rewritten(""), list(msg.param_oids), empty=True)
        else:
            parts = split(msg.sql)
            if len(parts) > 1:
                raise SqlError(sqlstate.SYNTAX_ERROR, "cannot insert multiple commands into a prepared statement")
            sql = parts[0]
            route = self.session.route(sql)
            stmt = Prepared(sql, rewrite(sql, len(msg.param_oids)), list(msg.param_oids), route=route,
                            classified=classify(sql))
            if route is Route.DECLARE:
                d = cursors.DECLARE.match(sql.strip())
                assert d is not None
                stmt.rewritten = rewrite(d.group("query"), len(msg.param_oids))
                stmt.classified = classify(d.group("query"))
                stmt.cursor = (cursors.unquote(d.group("name")), (d.group("hold") or "").upper() == "WITH")
        statements[msg.name] = stmt
        self.out.append(m.PARSE_COMPLETE)

    async def _bind(self, msg: codec.Bind) -> None:
        stmt = self.session.statements.get(msg.statement)
        if stmt is None:
            raise SqlError(sqlstate.INVALID_SQL_STATEMENT_NAME, f'prepared statement "{msg.statement}" does not exist')
        need = stmt.rewritten.param_count
        if len(msg.values) != need:
            raise SqlError(sqlstate.PROTOCOL_VIOLATION, f'bind message supplies {len(msg.values)} parameters, '
                           f'but prepared statement "{msg.statement}" requires {need}')
        fmts = msg.param_formats if len(msg.param_formats) > 1 else msg.param_formats * need or (0,) * need
        if stmt.description is None and any(f == 1 and stmt.param_oid(i) == 0 for i, f in enumerate(fmts)):
            await self._ensure_described(stmt)
        values = [params.decode(v, stmt.param_oid(i), fmts[i]) for i, v in enumerate(msg.values)]
        self.portals[msg.portal] = Portal(stmt, values, msg.result_formats)
        self.out.append(m.BIND_COMPLETE)

    async def _ensure_described(self, stmt: Prepared, flush_first: bool = True) -> None:
        """Fetch the statement's description; what was collected before it runs first, since it
        may create the tables the statement uses."""
        if stmt.description is not None or stmt.local or stmt.empty or stmt.route is Route.DATABASE:
            return
        if flush_first:
            await self.flush()
            if self.skipping:
                raise SqlError(sqlstate.IN_FAILED_SQL_TRANSACTION, "pipeline aborted")
        result = await self.session.describe(stmt.statement())
        if result.HasField("error"):
            raise SqlError.from_proto(result.error)
        colnames.apply(stmt.rewritten.column_names, result.description.columns)
        stmt.description = result.description

    async def _describe(self, target: str, name: str) -> None:
        if target == "P":
            portal = self.portals.get(name)
            if portal is None and (name in self.session.cursors.open or self._declaring(name)):
                self.out.append(_DescribeCursor(name))
                return
            if portal is None:
                raise SqlError(sqlstate.INVALID_CURSOR_NAME, f'portal "{name}" does not exist')
            self.out.append(_DescribePortal(portal))
            return
        stmt = self.session.statements.get(name)
        if stmt is None:
            raise SqlError(sqlstate.INVALID_SQL_STATEMENT_NAME, f'prepared statement "{name}" does not exist')
        await self._ensure_described(stmt)
        n = stmt.rewritten.param_count
        self.out.append(m.parameter_description([stmt.param_oid(i) or types.TEXT for i in range(n)]))
        if stmt.local:
            res = commands.local(stmt.sql, self.session.settings.copy(), "", 0)
            cols = res.columns if res else []
            self.out.append(render.row_description(cols, [types.TEXT] * len(cols), [0] * len(cols))
                            if cols else m.NO_DATA)
            return
        if stmt.empty or stmt.route is not Route.REMOTE or stmt.description is None or not stmt.description.columns:
            self.out.append(m.NO_DATA)
            return
        hints = [stmt.resolve_hint(h) for h in stmt.rewritten.column_hints]
        stmt.row_oids = render.described_oids(stmt.description, hints)
        self.out.append(render.row_description([c.name for c in stmt.description.columns], stmt.row_oids,
                                               [0] * len(stmt.row_oids), stmt.description.columns))

    def _declaring(self, name: str) -> bool:
        return any(isinstance(i, _Exec) and i.portal.stmt.cursor and i.portal.stmt.cursor[0] == name
                   for i in self.out)

    async def _execute(self, name: str, max_rows: int) -> None:
        portal = self.portals.get(name)
        if portal is None:
            raise SqlError(sqlstate.INVALID_CURSOR_NAME, f'portal "{name}" does not exist')
        route = portal.stmt.route
        if route is Route.COPY:
            raise SqlError(sqlstate.FEATURE_NOT_SUPPORTED, "COPY is supported in the simple query protocol only")
        if route is Route.DATABASE:
            await self._database(portal, max_rows)
            return
        if route in (Route.FETCH, Route.CLOSE):
            self.out.append(_Exec(portal, max_rows, None))
            return
        if route is Route.DECLARE and self.session.status != IN_TRANSACTION \
                and not (portal.stmt.cursor and portal.stmt.cursor[1]):
            raise SqlError(sqlstate.NO_ACTIVE_SQL_TRANSACTION, "DECLARE CURSOR can only be used in transaction blocks")
        if portal.result is not None or portal.stmt.local or portal.stmt.empty:
            if portal.stmt.local and portal.result is None:
                portal.result = self.session.run_local(_with_values(portal.stmt.sql, portal.values))
            self.out.append(_Exec(portal, max_rows, None))
            return
        if any(isinstance(i, _Exec) and i.portal is portal for i in self.out):
            self.out.append(_Exec(portal, max_rows, None))  # a later chunk of the same run
            return
        portal.was_failed = self.session.status == FAILED
        self.session.query_text = portal.stmt.sql  # pg_stat_activity.query (the batch's last)
        self.batch.append(portal.stmt.statement(portal.values))
        self.out.append(_Exec(portal, max_rows, len(self.batch) - 1))

    async def _database(self, portal: Portal, max_rows: int) -> None:
        """CREATE / DROP DATABASE (no parameters: PostgreSQL takes none there either). What came
        before it in the pipeline runs first, so it sees the session's transaction status."""
        if portal.result is None:
            await self.flush()
            if self.skipping:
                return
            assert self.session.admin is not None
            portal.result = await databases.run(self.session.admin, portal.stmt.sql, self.session.database,
                                                self.session.status == IDLE)
        self.out.append(_Exec(portal, max_rows, None))

    # -- running and rendering -----------------------------------------------------------
    async def flush(self) -> None:
        """Run the collected batch and send every response collected so far."""
        if self.batch:
            statements, self.batch = self.batch, []
            execs = {i.index: i for i in self.out if isinstance(i, _Exec) and i.index is not None}
            streaming: dict[int, _Streaming] = {}

            async def on_part(part: common_pb2.ResultPart) -> None:
                if (item := execs.get(part.statement)) is not None:
                    await self._part(item, part, streaming)

            batch = await self.session.run(statements, implicit=True, on_part=on_part)
            results = list(batch.results)
            for item in execs.values():
                if item.index not in streaming and item.portal.result is None:
                    assert item.index is not None
                    item.portal.result = res = results[item.index] if item.index < len(results) else None
                    if res is not None and res.HasField("ok"):
                        colnames.apply(item.portal.stmt.rewritten.column_names, res.ok.columns)
        executed = {id(i.portal) for i in self.out if isinstance(i, _Exec)}
        for described in self.out:  # a portal described but not executed: describe its statement
            if isinstance(described, _DescribePortal) and id(described.portal) not in executed:
                try:
                    await self._ensure_described(described.portal.stmt, flush_first=False)
                except SqlError:
                    pass
        self._write_out()

    async def _part(self, item: _Exec, part: common_pb2.ResultPart, streaming: dict[int, _Streaming]) -> None:
        """A part of the running batch's results (see the module's docstring)."""
        portal = item.portal
        assert item.index is not None
        st = streaming.get(item.index)
        if st is None:
            if part.HasField("result"):  # a whole result: rendered in order with the rest
                portal.result = part.result
                if part.result.HasField("ok"):
                    colnames.apply(portal.stmt.rewritten.column_names, part.result.ok.columns)
                return
            st = streaming[item.index] = _Streaming()
            portal.rest = RowStore()
        rest = portal.rest
        assert rest is not None  # made with the first part of a streamed result
        if part.columns:
            colnames.apply(portal.stmt.rewritten.column_names, part.columns)
            st.columns = list(part.columns)
        rows = st.joiner.feed(part)
        if portal.stmt.route is Route.DECLARE:  # a cursor's rows: kept, answered in order later
            rest.add(rows)
            if part.HasField("result"):
                portal.result = part.result
            return
        if not st.started:
            if not rows and not part.HasField("result"):
                return  # the first row is still on its way (a large value)
            st.started = True
            portal.result = common_pb2.StatementResult(ok=common_pb2.ResultSet(columns=st.columns, rows=rows))
            self._portal_oids(portal)  # the column types, from the first rows
            pos = self.out.index(item)
            before, self.out = self.out[:pos], self.out[pos + 1:]
            self._write_items(before)
        if self.skipping:
            return  # an error of the edge's own: the rest of the batch is not answered
        chunks: list[bytes] = []
        if rows:
            send = rows if item.max_rows <= 0 else rows[:max(0, item.max_rows - portal.count)]
            rest.add(rows[len(send):])
            try:
                chunks += render.data_rows(send, self._portal_oids(portal),
                                           render.formats_for(portal.result_formats, len(st.columns)),
                                           strict=portal.stmt.row_oids is not None)
            except SqlError as exc:
                self.skipping = True
                self.transport.send(m.error_response(exc.sqlstate, exc.message))
                return
            portal.count += len(send)
        if part.HasField("result"):
            res = portal.result = part.result
            chunks += [m.notice_response(n.sqlstate, n.message) for n in res.notices]
            if res.HasField("error"):
                chunks.append(render.error(res.error))
                self.skipping = True
            elif portal.rest is not None and portal.rest.remaining:
                chunks.append(m.PORTAL_SUSPENDED)
            else:
                chunks.append(m.command_complete(tags.command_tag(portal.stmt.classified, res.ok, portal.was_failed,
                                                                  portal.count)))
        self.transport.send(b"".join(chunks))
        await self.transport.flush()

    def _write_out(self) -> None:
        items, self.out = self.out, []
        self._write_items(items)

    def _write_items(self, items: list[Item]) -> None:
        chunks: list[bytes] = []
        for item in items:
            if isinstance(item, bytes):
                chunks.append(item)
                continue
            try:
                msgs, ok = self._render(item)
            except SqlError as exc:
                msgs, ok = [m.error_response(exc.sqlstate, exc.message)], False
            chunks += msgs
            if not ok:
                self.skipping = True
                break
        self.transport.send(b"".join(chunks))

    def _render(self, item: _Exec | _DescribePortal | _DescribeCursor) -> tuple[list[bytes], bool]:
        if isinstance(item, _DescribeCursor):
            cur = self.session.cursors.open.get(item.name)
            return ([self._cursor_description(cur, ())] if cur else []), True
        portal = item.portal
        res = portal.result
        if isinstance(item, _DescribePortal):
            if portal.stmt.route is Route.FETCH:
                cur = self.session.cursors.target(portal.stmt.sql)
                return [self._cursor_description(cur, portal.result_formats) if cur else m.NO_DATA], True
            if portal.stmt.route in (Route.CLOSE, Route.DECLARE):
                return [m.NO_DATA], True
            return self._render_describe(portal), True
        assert isinstance(item, _Exec)
        if portal.stmt.empty:
            return [m.EMPTY_QUERY], True
        try:
            if portal.stmt.route is Route.FETCH:
                fetched = self.session.cursors.fetch(portal.stmt.sql)
                oids = render.cursor_oids(fetched.cursor)
                rows = render.data_rows(fetched.rows, oids, render.formats_for(portal.result_formats, len(oids)),
                                        strict=False)
                return rows + [m.command_complete(fetched.tag)], True
            if portal.stmt.route is Route.CLOSE:
                return [m.command_complete(self.session.cursors.close(portal.stmt.sql))], True
            if portal.stmt.route is Route.DECLARE and isinstance(res, common_pb2.StatementResult) \
                    and res.HasField("ok"):
                assert portal.stmt.cursor is not None
                rest, portal.rest = portal.rest, None
                self.session.cursors.declare(portal.stmt.cursor[0], res.ok, portal.stmt.cursor[1], rest)
                return [m.command_complete("DECLARE CURSOR")], True
        except SqlError as exc:
            return [m.error_response(exc.sqlstate, exc.message)], False
        if res is None:
            return [], False  # did not run: an earlier statement failed
        if isinstance(res, commands.LocalResult):
            if res.error:
                return [m.error_response(res.error.sqlstate, res.error.message)], False
            msgs = [m.parameter_status(k, v) for k, v in res.changed]
            msgs += [m.data_row([None if v is None else v.encode() for v in row]) for row in res.rows]
            return msgs + [m.command_complete(res.tag)], True
        msgs = [m.notice_response(n.sqlstate, n.message) for n in res.notices] if portal.pos == 0 else []
        if res.HasField("error"):
            return msgs + [render.error(res.error)], False
        rs = res.ok
        if portal.rest is not None:  # the rest of a streamed result
            oids = self._portal_oids(portal)
            send = portal.rest.take(item.max_rows if item.max_rows > 0 else -1)
            msgs = render.data_rows(send, oids, render.formats_for(portal.result_formats, len(oids)),
                                    strict=portal.stmt.row_oids is not None)
            portal.count += len(send)
            if portal.rest.remaining:
                return msgs + [m.PORTAL_SUSPENDED], True
            return msgs + [m.command_complete(tags.command_tag(portal.stmt.classified, rs, portal.was_failed,
                                                               portal.count))], True
        if rs.columns:
            oids = self._portal_oids(portal)
            fmts = render.formats_for(portal.result_formats, len(oids))
            end = len(rs.rows) if item.max_rows <= 0 else min(len(rs.rows), portal.pos + item.max_rows)
            msgs += render.data_rows(rs.rows[portal.pos:end], oids, fmts, strict=portal.stmt.row_oids is not None)
            portal.pos = end
            if end < len(rs.rows):
                return msgs + [m.PORTAL_SUSPENDED], True
        return msgs + [m.command_complete(tags.command_tag(portal.stmt.classified, rs, portal.was_failed))], True

    @staticmethod
    def _cursor_description(cur: cursors.Cursor, result_formats: tuple[int, ...]) -> bytes:
        oids = render.cursor_oids(cur)
        if not oids:
            return m.NO_DATA
        return render.row_description([c.name for c in cur.result.columns], oids,
                                      render.formats_for(result_formats, len(oids)), cur.result.columns)

    def _portal_oids(self, portal: Portal) -> list[int]:
        if portal.oids is None:
            res = portal.result
            assert isinstance(res, common_pb2.StatementResult)
            portal.oids = portal.stmt.row_oids or render.result_oids(res.ok, portal.stmt.rewritten.column_hints)
        return portal.oids

    def _render_describe(self, portal: Portal) -> list[bytes]:
        res = portal.result
        stmt = portal.stmt
        if isinstance(res, commands.LocalResult) or (res is None and stmt.local):
            cols = res.columns if isinstance(res, commands.LocalResult) else []
            return [render.row_description(cols, [types.TEXT] * len(cols), [0] * len(cols)) if cols else m.NO_DATA]
        if isinstance(res, common_pb2.StatementResult) and res.HasField("ok"):
            if not res.ok.columns:
                return [m.NO_DATA]
            oids = self._portal_oids(portal)
            return [render.row_description([c.name for c in res.ok.columns], oids,
                                           render.formats_for(portal.result_formats, len(oids)), res.ok.columns)]
        if isinstance(res, common_pb2.StatementResult):
            return []  # the error is reported by the Execute that follows
        if stmt.description is None or not stmt.description.columns:
            return [m.NO_DATA]
        hints = [stmt.resolve_hint(h) for h in stmt.rewritten.column_hints]
        stmt.row_oids = stmt.row_oids or render.described_oids(stmt.description, hints)
        portal.oids = stmt.row_oids
        return [render.row_description([c.name for c in stmt.description.columns], stmt.row_oids,
                                       render.formats_for(portal.result_formats, len(stmt.row_oids)),
                                       stmt.description.columns)]


def _with_values(sql: str, values: list[common_pb2.Value]) -> str:
    """A statement the edge answers (SET, SHOW, current_setting($1) ...) with its parameters
    written in as literals: those statements are matched by their text."""
    if not values:
        return sql

    def literal(m: re.Match) -> str:
        n = int(m.group(1))
        if n < 1 or n > len(values):
            return m.group(0)
        v = values[n - 1]
        kind = v.WhichOneof("value")
        if kind is None or kind == "null":
            return "NULL"
        text = v.blob.decode(errors="replace") if kind == "blob" else str(getattr(v, kind))
        return "'" + text.replace("'", "''") + "'"
    return re.sub(r"\$(\d+)", literal, sql)
