"""The simple query protocol: one Query message, its statements, one ReadyForQuery.

Each statement is classified (common.statement) and routed (dispatch.py) once, here. Runs
of statements the scheduler answers become one Batch (one message each way), whatever their
number; the edge's own statements (SET, SHOW, cursors, COPY) are answered between them. The
first error ends the query, as in PostgreSQL.
"""
from __future__ import annotations

from sqld.common import sqlstate
from sqld.common.sqlstate import SqlError
from sqld.common.sqltext import is_empty, split
from sqld.common.statement import classify
from sqld.edge import colnames, commands, copy, cursors, databases, render, results
from sqld.edge.dispatch import Route
from sqld.edge.pgwire import messages as m
from sqld.edge.rowstore import RowStore
from sqld.edge.session import FAILED, IDLE, IN_TRANSACTION, Session
from sqld.edge.sqlrewrite import Rewritten, rewrite
from sqld.edge.transport import Transport
from sqld.v1 import common_pb2


async def query(s: Session, t: Transport, sql: str) -> None:
    if is_empty(sql):
        t.send(m.EMPTY_QUERY + s.ready())
        await t.flush()
        return
    s.query_text = sql  # pg_stat_activity.query
    texts = split(sql)
    routes = [s.route(text) for text in texts]
    try:  # as in PostgreSQL, a statement that cannot be parsed stops the whole query before it runs
        rewritten = [rewrite(text) if route is Route.REMOTE else None for text, route in zip(texts, routes)]
    except SqlError as exc:
        await refuse(s, t, exc)
        return
    i = 0
    while i < len(texts):
        if routes[i] is Route.REMOTE:
            j = i
            while j < len(texts) and routes[j] is Route.REMOTE:
                j += 1
            ok = await _remote(s, t, texts[i:j], [r for r in rewritten[i:j] if r is not None], implicit=len(texts) > 1)
            i = j
        else:
            ok = await _edge_statement(s, t, routes[i], texts[i])
            i += 1
        if not ok:
            break
    t.send(s.ready())
    await t.flush()


async def refuse(s: Session, t: Transport, error: SqlError) -> None:
    """A Query refused before it runs: ErrorResponse, ReadyForQuery, the connection stays."""
    t.send(m.error_response(error.sqlstate, error.message))
    if s.status == IN_TRANSACTION:
        await s.fail_transaction()
    t.send(s.ready())
    await t.flush()


async def _remote(s: Session, t: Transport, group: list[str], rewritten: list[Rewritten],
                  implicit: bool) -> bool:
    was_failed = s.status == FAILED
    classified = [classify(text) for text in group]
    stream = results.SimpleStream(s, t, group, classified, rewritten, was_failed)
    batch = await s.run([common_pb2.Statement(sql=r.sql, kind=c.kind) for r, c in zip(rewritten, classified)],
                        implicit=implicit, on_part=stream.part)
    if stream.failed:
        return False
    out: list[bytes] = []
    for text, c, r, result in list(zip(group, classified, rewritten, batch.results))[stream.done:]:
        if result.HasField("ok"):
            colnames.apply(r.column_names, result.ok.columns)
        out += render.simple_messages(text, c, result, was_failed)
        if result.HasField("error"):
            t.send(b"".join(out))
            return False
        commands.remember_forwarded(text, s.settings)
    t.send(b"".join(out))
    return True


async def _edge_statement(s: Session, t: Transport, route: Route, sql: str) -> bool:
    """A statement the edge answers itself; False when it failed."""
    try:
        if route is Route.LOCAL or route is Route.DATABASE:
            if route is Route.LOCAL:
                res = s.run_local(sql)
            else:
                assert s.admin is not None
                res = await databases.run(s.admin, sql, s.database, s.status == IDLE)
            assert res is not None
            t.send(b"".join(render.local_messages(res)))
            return res.error is None
        if route is Route.DECLARE:
            await declare(s, sql)
            t.send(m.command_complete("DECLARE CURSOR"))
        elif route is Route.FETCH:
            fetched = s.cursors.fetch(sql)
            out = []
            if fetched.tag.startswith("FETCH"):
                oids = render.cursor_oids(fetched.cursor)
                out.append(render.row_description([c.name for c in fetched.cursor.result.columns], oids,
                                                  [0] * len(oids), fetched.cursor.result.columns))
                out += render.data_rows(fetched.rows, oids, [0] * len(oids), strict=False)
            t.send(b"".join(out) + m.command_complete(fetched.tag))
        elif route is Route.CLOSE:
            t.send(m.command_complete(s.cursors.close(sql)))
        elif route is Route.COPY:
            await copy.run(s, t, sql)
        return True
    except SqlError as exc:
        t.send(m.error_response(exc.sqlstate, exc.message))
        if s.status == IN_TRANSACTION:
            await s.fail_transaction()
        return False


async def declare(s: Session, sql: str) -> None:
    """DECLARE: run the cursor's query now and keep its rows."""
    m_ = cursors.DECLARE.match(sql.strip())
    assert m_ is not None
    hold = (m_.group("hold") or "").upper() == "WITH"
    if s.status != IN_TRANSACTION and not hold:
        raise SqlError(sqlstate.NO_ACTIVE_SQL_TRANSACTION, "DECLARE CURSOR can only be used in transaction blocks")
    text = m_.group("query")
    query = rewrite(text)
    kept = results.Collect(RowStore())
    batch = await s.run([common_pb2.Statement(sql=query.sql, kind=classify(text).kind)], implicit=False,
                        on_part=kept.part)
    result = kept.result or batch.results[0]
    if result.HasField("error"):
        kept.rows.close()
        raise SqlError.from_proto(result.error)
    colnames.apply(query.column_names, result.ok.columns)
    s.cursors.declare(cursors.unquote(m_.group("name")), result.ok, hold,
                      kept.rows if kept.result is not None else None)
    if kept.result is None:
        kept.rows.close()
