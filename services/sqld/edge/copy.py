"""COPY in the simple query protocol: COPY ... TO STDOUT and COPY ... FROM STDIN over the transport.

The formats are copyformat.py's (no I/O). COPY TO runs its query as one statement and keeps
the rows in a RowStore (memory up to 8 MiB, then a temporary file), then writes CopyData
messages, draining the socket after each thousand rows. COPY FROM reads CopyData until
CopyDone (its own small message loop: PostgreSQL's COPY sub-protocol) and sends the rows on
in batches of about BATCH_BYTES of input as they come, so memory stays bounded however big the
import. A COPY is atomic as in PostgreSQL: a small one is one implicit-transaction batch; a big
one runs its batches in a transaction it opens (or in the client's own), rolled back on error.
"""
from __future__ import annotations

import dataclasses
import logging
import re

from sqld.common import sqlstate
from sqld.common.sqlstate import SqlError
from sqld.common.statement import READ, WRITE, classify
from sqld.edge import colnames, copyformat, progress, render, results, types
from sqld.edge.pgwire import codec
from sqld.edge.pgwire import messages as m
from sqld.edge.rowstore import RowStore
from sqld.edge.session import IDLE, Session
from sqld.edge.sqlrewrite import rewrite
from sqld.edge.transport import Transport
from sqld.v1 import common_pb2

log = logging.getLogger(__name__)


async def run(s: Session, t: Transport, sql: str) -> None:
    """One COPY statement; SqlError when it fails (the caller answers it)."""
    spec = copyformat.parse(sql)
    progress.RUNNING[s.pid] = progress.Copy(s.pid, s.database, spec.table or "",
                                            "COPY TO" if spec.direction == "TO" else "COPY FROM")
    try:
        if spec.direction == "TO":
            await _copy_to(s, t, spec)
        else:
            await _copy_from(s, t, spec)
    finally:
        progress.RUNNING.pop(s.pid, None)


async def _copy_to(s: Session, t: Transport, spec: copyformat.CopySpec) -> None:
    text = spec.query or f"SELECT {', '.join(spec.columns) or '*'} FROM {spec.table}"
    query = rewrite(text)
    kept = results.Collect(RowStore())  # bounded: memory up to 8 MiB, then a temp file
    try:
        batch = await s.run([common_pb2.Statement(sql=query.sql, kind=classify(text).kind)], implicit=False,
                            on_part=kept.part)
        result = kept.result or batch.results[0]
        if result.HasField("error"):
            raise SqlError.from_proto(result.error)
        if kept.result is None:
            kept.rows.add(result.ok.rows)
        rs = common_pb2.ResultSet(columns=result.ok.columns, rows=kept.rows.sample)
        colnames.apply(query.column_names, rs.columns)
        oids = render.result_oids(rs)
        total = kept.rows.remaining
        t.send(m.copy_out_response(len(rs.columns)))
        header = spec.header
        while kept.rows.remaining or header:
            rows = [[None if (b := types.to_text(v, o)) is None else b.decode() for v, o in zip(r.values, oids)]
                    for r in kept.rows.take(1000)]
            data = b"".join(m.copy_data(d) for d in copyformat.format_rows(
                [c.name for c in rs.columns], rows, dataclasses.replace(spec, header=header)))
            t.send(data)
            _progress(s, len(data), len(rows))
            header = False
            await t.flush()
    finally:
        kept.rows.close()
    t.send(m.COPY_DONE + m.command_complete(f"COPY {total}"))


# COPY FROM sends its rows on as it reads them, in batches of about this many bytes of input, so
# the edge holds one batch at a time however big the import; a log line marks every PROGRESS_ROWS.
BATCH_BYTES = 4 << 20
PROGRESS_ROWS = 100_000
# The longest row (in CSV, a quoted field that is still open counts as one row) COPY FROM takes: a
# batch is cut at a row's end, so a row is held whole; past this the COPY fails with 54000
# (program_limit_exceeded) instead of buffering without bound (one line of 1 GB, a CSV quote never closed).
MAX_ROW_BYTES = 64 << 20


class _Import:
    """One COPY FROM STDIN: the rows so far, sent on to the scheduler batch by batch."""

    def __init__(self, s: Session, spec: copyformat.CopySpec, columns: list[str], decltypes: list[str]) -> None:
        self.s, self.spec, self.columns, self.decltypes = s, spec, columns, decltypes
        self.pending = bytearray()
        self.ends = RowEnds(spec)
        self.rows = 0           # rows sent so far
        self.began = False      # this COPY opened the transaction its batches run in
        self.header = spec.header
        self.insert = ""
        self.width = 0
        self.next_send = BATCH_BYTES  # the held bytes at which a batch is looked for again

    def add(self, data: bytes) -> bool:
        """Keep `data`; True when a batch's worth is ready to send."""
        self.pending += data
        _progress(self.s, len(data), 0)
        return len(self.pending) >= self.next_send

    async def send(self, final: bool) -> None:
        """Send the complete rows held (all of them when `final`)."""
        cut = len(self.pending) if final else self.ends.find(self.pending)
        if cut <= 0:
            if len(self.pending) > MAX_ROW_BYTES:
                raise SqlError(sqlstate.PROGRAM_LIMIT_EXCEEDED,
                               f"COPY data line {self.rows + 1}: a row longer than {MAX_ROW_BYTES >> 20} MiB "
                               "(or a CSV quoted field never closed)")
            self.next_send = len(self.pending) + BATCH_BYTES  # no row ends yet: look again a batch later
            return
        self.next_send = BATCH_BYTES
        chunk = bytes(self.pending[:cut])
        del self.pending[:cut]
        self.ends.cut(cut)
        rows = self._parse(chunk)
        if not rows:
            return
        if not final and not self.began and self.s.status == IDLE:
            # more batches follow: one transaction holds them all, so the COPY stays atomic
            await self._control("BEGIN")
            self.began = True
        if not self.insert:
            self.width = len(self.spec.columns) or len(rows[0])
            cols = f" ({', '.join(self.spec.columns)})" if self.spec.columns else ""
            self.insert = f"INSERT INTO {self.spec.table}{cols} VALUES ({', '.join(f'?{i + 1}' for i in range(self.width))})"
        # Foreign keys are checked at COMMIT, so that a transaction can load a child table before its
        # parent (a pg_dump script orders its data by table name; restore it with psql -1).
        statements = [] if self.rows else [common_pb2.Statement(sql="PRAGMA defer_foreign_keys = ON", kind=WRITE)]
        pragma = len(statements)
        types_ = self.decltypes
        for n, row in enumerate(rows, self.rows + 1):
            if len(row) != self.width:
                raise SqlError(sqlstate.BAD_COPY_FILE_FORMAT,
                               f"COPY data line {n}: expected {self.width} columns, got {len(row)}")
            statements.append(common_pb2.Statement(sql=self.insert, kind=WRITE, params=[
                _value(v, types_[i] if i < len(types_) else "") for i, v in enumerate(row)]))
        batch = await self.s.run(statements, implicit=not self.began)
        last = batch.results[-1] if batch.results else None
        if last is not None and last.HasField("error"):
            line = self.rows + len(batch.results) - pragma
            raise SqlError(last.error.sqlstate, f"COPY line {line}: {last.error.message}")
        before, self.rows = self.rows, self.rows + len(rows)
        _progress(self.s, 0, len(rows))
        if self.rows // PROGRESS_ROWS > before // PROGRESS_ROWS:
            log.info("copy progress: table=%s rows=%d", self.spec.table, self.rows)

    async def commit(self) -> None:
        if self.began:
            self.began = False
            await self._control("COMMIT")

    async def abandon(self) -> None:
        """After an error: the transaction this COPY opened is rolled back."""
        if self.began:
            self.began = False
            await self._control("ROLLBACK")

    async def _control(self, sql: str) -> None:
        batch = await self.s.run([common_pb2.Statement(sql=sql, kind=classify(sql).kind)], implicit=False)
        if batch.results and batch.results[-1].HasField("error"):
            raise SqlError.from_proto(batch.results[-1].error)

    def _parse(self, chunk: bytes) -> list[list[str | None]]:
        try:
            rows = copyformat.parse_rows(chunk.decode(), dataclasses.replace(self.spec, header=self.header))
        except UnicodeDecodeError as exc:
            raise SqlError(sqlstate.CHARACTER_NOT_IN_REPERTOIRE, codec.utf8_error(exc)) from exc
        except ValueError as exc:
            raise SqlError(sqlstate.INVALID_TEXT_REPRESENTATION, f"COPY data: {exc}") from exc
        self.header = False
        copyformat.force(rows, self.spec, self.columns)
        return rows


def _progress(s: Session, nbytes: int, tuples: int) -> None:
    """pg_stat_progress_copy's counters of this session's COPY (edge/progress.py)."""
    if (entry := progress.RUNNING.get(s.pid)) is not None:
        entry.bytes_processed += nbytes
        entry.tuples_processed += tuples


class RowEnds:
    """Where the last complete row of the held input ends (`find`; 0: none yet), scanned once:
    what was scanned is remembered across calls, so input that never ends a row (a line of
    100 MiB, a CSV quote never closed) costs linear time, not a rescan per message.

    A newline always ends a row in text format; in CSV only outside quotes. While the escape
    is the quote itself ("" inside quotes), the parity of the quote count says whether a
    newline is outside. With another escape character, quoted fields are walked: inside one,
    the escape takes the quote or escape after it (an escape at the very end of the held
    input waits for the next message)."""

    def __init__(self, spec: copyformat.CopySpec) -> None:
        self.csv = spec.csv
        self.quote = spec.quote.encode()
        self.escape = (spec.escape or spec.quote).encode()
        q, e = re.escape(self.quote), re.escape(self.escape)
        self._outside = re.compile(b"[\n" + q + b"]")
        self._inside = re.compile(b"[" + q + e + b"]")
        self.scanned = 0       # bytes of the held input already looked at
        self.in_quote = False  # the scan stopped inside a quoted field
        self.end = 0           # the last row end found

    def find(self, data: bytearray) -> int:
        if not self.csv:
            return data.rfind(b"\n") + 1
        n, pos = len(data), self.scanned
        if self.escape == self.quote:
            # the parity at the last newline of the new bytes, then back over at most WALK_BACK
            # newlines to one outside quotes (none: the row end found before stays)
            end = data.rfind(b"\n", pos, n) + 1
            if end:
                odd = self.in_quote ^ (data.count(self.quote, pos, end) % 2 == 1)
                for _ in range(WALK_BACK):
                    if not odd:
                        self.end = end
                        break
                    before = data.rfind(b"\n", pos, end - 1) + 1
                    if before <= pos:
                        break
                    odd ^= data.count(self.quote, before, end) % 2 == 1
                    end = before
            self.in_quote ^= data.count(self.quote, pos, n) % 2 == 1
            pos = n
        else:
            q, e = self.quote[0], self.escape[0]
            while pos < n:
                m = (self._inside if self.in_quote else self._outside).search(data, pos)
                if m is None:
                    pos = n
                    break
                i = m.start()
                if not self.in_quote:
                    pos = i + 1
                    if data[i] == q:
                        self.in_quote = True
                    else:
                        self.end = pos
                elif data[i] == e:
                    if i + 1 == n:  # the escaped character is still to come
                        pos = i
                        break
                    pos = i + 2 if data[i + 1] in (q, e) else i + 1
                else:
                    self.in_quote, pos = False, i + 1
        self.scanned = pos
        return self.end

    def cut(self, n: int) -> None:
        """The first `n` bytes (up to a row end found) left the held input."""
        self.scanned, self.end = self.scanned - n, self.end - n


WALK_BACK = 1000


async def _copy_from(s: Session, t: Transport, spec: copyformat.CopySpec) -> None:
    if spec.table is None:
        raise SqlError(sqlstate.SYNTAX_ERROR, "COPY FROM needs a table")
    named = [c for c in spec.force_not_null + spec.force_null if c != "*"]
    columns = await _columns(s, spec) if named else []
    decltypes = await _decltypes(s, spec)
    t.send(m.copy_in_response(len(spec.columns)))
    await t.flush()
    job = _Import(s, spec, columns, decltypes)
    failure: SqlError | None = None
    while True:
        kind, body = await t.read_message()
        if kind == b"d":
            if failure is None and job.add(body):
                try:
                    await job.send(final=False)
                except SqlError as exc:  # PostgreSQL too reads on to CopyDone, then answers the error
                    failure, job.pending = exc, bytearray()
        elif kind == b"c":
            break
        elif kind == b"f":
            failure = SqlError(sqlstate.QUERY_CANCELED, f"COPY from stdin failed: {codec.cstring(body)[0]}")
            break
        elif kind in (b"H", b"S"):
            continue
        else:
            await job.abandon()
            raise codec.ProtocolError(f"unexpected message type {kind!r} during COPY")
    try:
        if failure is not None:
            raise failure
        await job.send(final=True)
        await job.commit()
    except SqlError:
        await job.abandon()
        raise
    t.send(m.command_complete(f"COPY {job.rows}"))


_TRUE = {"t", "true", "y", "yes", "on", "1"}
_INTEGER = re.compile(r"^-?(?:0|[1-9][0-9]{0,18})$")
_FLOAT = re.compile(r"^-?[0-9][0-9.e+-]*$")
_FALSE = {"f", "false", "n", "no", "off", "0"}


def _value(text: str | None, decltype: str) -> common_pb2.Value:
    """A COPY field as the column's PostgreSQL type reads it: a boolean column's t/f as SQLite's
    1/0, a bytea (BLOB) column's \\x hex as bytes, and in a column without a declared type a number
    spelled as COPY TO spells one (SQLite keeps each value's own class there; text that looks like a
    number becomes one: the one case a round trip cannot tell apart). Any other text goes in as
    text and SQLite's column affinity converts it, as for an INSERT of a string."""
    if text is None:
        return common_pb2.Value(null=True)
    oid = types.affinity_oid(decltype)
    if oid == types.BOOL and text.lower() in _TRUE | _FALSE:
        return common_pb2.Value(integer=1 if text.lower() in _TRUE else 0)
    if not decltype and _INTEGER.match(text):  # no declared type: a number as COPY TO printed it
        return common_pb2.Value(integer=int(text))
    if not decltype and _FLOAT.match(text) and types.format_float8(float(text)) == text:
        return common_pb2.Value(real=float(text))
    if text.startswith("\\x") and (oid is None or "BYTEA" in decltype.upper()):
        try:
            return common_pb2.Value(blob=bytes.fromhex(text[2:]))
        except ValueError:
            pass
    return common_pb2.Value(text=text)


async def _decltypes(s: Session, spec: copyformat.CopySpec) -> list[str]:
    """The declared types of the columns a COPY FROM fills, in its order."""
    cols = ", ".join(spec.columns) or "*"
    result = await s.describe(common_pb2.Statement(sql=rewrite(f"SELECT {cols} FROM {spec.table}").sql, kind=READ))
    if result.HasField("error"):
        raise SqlError.from_proto(result.error)
    return [c.decltype for c in result.description.columns]


async def _columns(s: Session, spec: copyformat.CopySpec) -> list[str]:
    """The columns a COPY FROM fills (its list, else the table's), for FORCE_NOT_NULL / FORCE_NULL."""
    if spec.columns:
        return [copyformat.column_key(c) for c in spec.columns]
    result = await s.describe(common_pb2.Statement(sql=rewrite(f"SELECT * FROM {spec.table}").sql, kind=READ))
    if result.HasField("error"):
        raise SqlError.from_proto(result.error)
    return [copyformat.column_key(c.name) for c in result.description.columns]
