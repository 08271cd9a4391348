"""A batch's results written to the client as they stream in (simple query protocol).

Large results arrive as ResultParts (common.proto) before the batch's BatchResult; each part
is rendered and written at once, and the socket is drained before the next is taken, so a
client that reads slowly slows its own statement and the edge holds about one part. The
column types are decided from the first part's rows (RowDescription must precede the rows);
later values that do not fit are written as text, as for a cursor.
"""
from __future__ import annotations

from collections.abc import Sequence

from sqld.common.rowparts import RowJoiner
from sqld.common.statement import Classified
from sqld.edge import catalog, colnames, commands, render, tags
from sqld.edge.pgwire import messages as m
from sqld.edge.rowstore import RowStore
from sqld.edge.session import Session
from sqld.edge.sqlrewrite import Rewritten
from sqld.edge.transport import Transport
from sqld.v1 import common_pb2


class SimpleStream:
    """Writes the parts of one batch of a simple Query; `done` statements were answered."""

    def __init__(self, session: Session, transport: Transport, texts: Sequence[str],
                 classified: Sequence[Classified], rewritten: Sequence[Rewritten], was_failed: bool) -> None:
        self.session = session
        self.transport = transport
        self.texts = texts
        self.classified = classified
        self.rewritten = rewritten
        self.was_failed = was_failed
        self.done = 0          # results[:done] were written from parts
        self.failed = False    # one of them was an error
        self._index = -1
        self._joiner = RowJoiner()
        self._columns: list[common_pb2.Column] = []
        self._oids: list[int] | None = None
        self._count = 0

    async def part(self, part: common_pb2.ResultPart) -> None:
        k = part.statement
        if k >= len(self.texts):
            return  # not one of the query's statements (the scheduler answers it in the result)
        if k != self._index:
            self._index, self._joiner, self._oids, self._count = k, RowJoiner(), None, 0
        text = self.texts[k]
        if part.columns:
            colnames.apply(self.rewritten[k].column_names, part.columns)
            self._columns = list(part.columns)
        out: list[bytes] = []
        if self._oids is None and part.HasField("result"):  # a whole result in one part
            res = part.result
            if res.HasField("ok"):
                colnames.apply(self.rewritten[k].column_names, res.ok.columns)
            out += render.simple_messages(text, self.classified[k], res, self.was_failed)
        else:
            rows = self._joiner.feed(part)
            if self._oids is None:
                if not rows and not part.HasField("result"):
                    return  # the first row is still on its way (a large value)
                self._oids = render.result_oids(common_pb2.ResultSet(columns=self._columns, rows=rows),
                                                catalog.hints_for(text))
                out.append(render.row_description([c.name for c in self._columns], self._oids,
                                                  [0] * len(self._oids), self._columns))
            out += render.data_rows(rows, self._oids, [0] * len(self._oids), strict=False)
            self._count += len(rows)
            if part.HasField("result"):
                res = part.result
                out += [m.notice_response(n.sqlstate, n.message) for n in res.notices]
                if res.HasField("error"):
                    out.append(render.error(res.error))
                else:
                    out.append(m.command_complete(tags.command_tag(self.classified[k], res.ok, self.was_failed,
                                                                       self._count)))
        if part.HasField("result"):
            self.done = k + 1
            if part.result.HasField("error"):
                self.failed = True
            else:
                commands.remember_forwarded(text, self.session.settings)
        self.transport.send(b"".join(out))
        await self.transport.flush()


class Collect:
    """Keeps one statement's streamed rows in a RowStore (a cursor's, COPY TO's); the final
    result (rows left out when they were streamed) is `result`."""

    def __init__(self, rows: RowStore) -> None:
        self.rows = rows
        self.columns: list[common_pb2.Column] = []
        self.result: common_pb2.StatementResult | None = None
        self._joiner = RowJoiner()

    async def part(self, part: common_pb2.ResultPart) -> None:
        if part.columns:
            self.columns = list(part.columns)
        self.rows.add(self._joiner.feed(part))
        if part.HasField("result"):
            self.result = part.result
            if part.result.HasField("ok"):  # a whole result in one part
                self.rows.add(part.result.ok.rows)
