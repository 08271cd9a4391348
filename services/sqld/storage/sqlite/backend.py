"""The sqlite backend: a local database file in WAL mode; and the storage Connection.

The Connection runs batches on the apsw connection it is given, so it serves every kind of
database: a primary's file, a replica's (read-only, storage.replica.database) and the page
store's (opened through its VFS, storage.mvsqlite.backend).

Durability: WAL mode with `synchronous=FULL`, so the WAL is fsynced at every commit and
an acknowledged commit survives kill -9 and power loss. Foreign keys are enforced, as in
PostgreSQL. Once the server's own setup is done, every connection is guarded
(storage.sqlite.guard): client SQL cannot change what the server set up. A connection runs
one batch at a time on a worker thread (apsw releases the GIL while SQLite works), except
that the servicer may start a batch of reads on its event loop (`set_inline`): only a
statement of kind READ that SQLite itself sees as read-only runs there, without waiting for
a lock and within a budget the servicer's watchdog enforces (`overrun`); anything else hands
the batch to the worker thread, which runs the statement from its start (a read stopped by
an interrupt or SQLITE_BUSY does not roll the transaction back, and nothing of it was sent).
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Generator, Sequence
from typing import Any, Protocol

import apsw

from sqld.common.sqlstate import (
    PROTOCOL_VIOLATION,
    QUERY_CANCELED,
    READ_ONLY_SQL_TRANSACTION,
    SYNTAX_ERROR,
    SYSTEM_ERROR,
    WARNING,
    SqlError,
)
from sqld.common.statement import READ
from sqld.common.values import to_python
from sqld.storage.capture.capturer import CaptureError, Capturer, LogForked, ReplicationBroken, no_auto_checkpoint
from sqld.storage.sqlite import compat, parts
from sqld.storage.sqlite.describe import describe
from sqld.storage.sqlite.errors import to_error
from sqld.storage.sqlite.guard import Guard
from sqld.v1 import common_pb2

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


class _NotInline(Exception):
    """The statement cannot run on the event loop: it goes to the worker thread."""


_RETRY = common_pb2.StatementResult()  # _execute_one: run this statement again, on the worker thread


class Capture(Protocol):
    """Logs a commit before it is acknowledged (storage.capture.capturer, or the page store's
    storage.mvsqlite.capture): the frame it ends at, and whether a replica applied it."""

    def capture(self, wait_for_replica: bool = False) -> tuple[int, bool]: ...


class Database:
    """One database file. Creating it switches the file to WAL mode once.

    With a `replication` address, every commit's frames are captured (see
    storage.capture.capturer) before the commit is acknowledged; `synchronous` makes
    every commit wait for a replica to apply it. `read_only`: a file someone else writes
    (a replica's, storage.replica): no setup, read-only connections.
    """

    follower: None = None  # a primary's file (storage.replica.database adds one)
    connect_at: None = None  # a file keeps no old versions

    def __init__(self, name: str, path: str, replication: str = "", synchronous: bool = False,
                 read_only: bool = False) -> None:
        self.name = name
        self.path = path
        self.synchronous = synchronous
        self.capturer: Capturer | None = None
        if read_only:
            self._flags = apsw.SQLITE_OPEN_READONLY
            return
        self._flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        setup = apsw.Connection(path)
        if replication:
            no_auto_checkpoint(setup)
        mode = setup.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
        if mode != "wal":
            raise RuntimeError(f"open {path}: cannot switch to WAL mode (got {mode!r})")
        setup.close()
        if replication:
            self.capturer = Capturer(name, path, replication)
            self.capturer.start()

    def connect(self) -> Connection:
        return Connection(self.name, apsw.Connection(self.path, flags=self._flags), self.capturer,
                          self.synchronous, inline=True)

    def close(self) -> None:
        if self.capturer is not None:
            self.capturer.close()


class Connection:
    """One SQLite connection. Not thread-safe: the caller runs one batch at a time."""

    def __init__(self, name: str, conn: apsw.Connection, capturer: Capture | None = None,
                 synchronous: bool = False, committed: Callable[[], int] | None = None,
                 inline: bool = False) -> None:
        """`conn` (just opened) of database `name` becomes a guarded storage connection. With
        a `capturer`, every commit is captured before it is acknowledged: SQLite's WAL hook
        sees it, or, for a connection without a WAL (the page store), `committed` says after
        each statement whether it committed (non-zero). `synchronous`: every commit waits for
        a replica to apply it. `inline`: reads may start on the caller's event loop
        (`set_inline`; not for the page store, whose reads wait for the network)."""
        self.name = name
        self.conn = conn
        self.conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        self.conn.execute("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        compat.register(self.conn)
        self.frame_no = 0  # last frame logged by a commit on this connection
        self.release_writer: Callable[[], None] | None = None  # the servicer's (storage.backend)
        self._last = False  # the running statement is the batch's last
        self._capturer = capturer
        self._committed = committed
        self._synchronous = synchronous
        self._sync = False
        self._sync_missed = False
        if capturer is not None and committed is None:
            no_auto_checkpoint(self.conn)
            self.conn.set_wal_hook(self._on_commit)
        self._read_only = False
        self._interrupted = False
        self.may_inline = inline
        self._inline = False   # this step runs on the event loop (set_inline)
        self._overran = False  # ... and ran past its budget (overrun)
        self._kind = 0         # the running statement's kind (common.statement)
        self._statements_seen = 0
        self._streaming = False  # the running batch answers by parts (a large result began)
        self._streamed_now: parts.Rows | None = None  # the statement being sent in parts
        self._description: tuple[tuple[Any, ...], ...] = ()  # (name, declared type or None, ...)
        self.session_state = False  # the connection carries a session's settings or TEMP objects
        self.guard = Guard(self.conn)
        self.guard.install()  # last: the setup above is the server's, not a client's

    def _capture(self) -> None:
        """Log the commit just made (may raise CaptureError)."""
        assert self._capturer is not None
        self._logged(*self._capturer.capture(self._sync))

    def _logged(self, frame_no: int, applied: bool) -> None:
        self.frame_no = frame_no
        if self._sync and not applied:
            self._sync_missed = True

    def _after_statement(self) -> None:
        """Log what the statement committed, if it did, when no WAL hook does (the page store
        commits inside the statement, in the VFS). May raise CaptureError."""
        if self._committed is not None and self._committed() and self._capturer is not None:
            self._capture()

    def _exec_trace(self, cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        self._statements_seen += 1
        if self._statements_seen > 1:
            raise SqlError(SYNTAX_ERROR, "cannot insert multiple commands into a prepared statement")
        if self._read_only and not cursor.is_readonly:
            raise SqlError(READ_ONLY_SQL_TRANSACTION,
                           "cannot execute a statement that writes in a read-only transaction",
                           sqlite_code=apsw.SQLITE_READONLY)
        if self._inline and not (self._kind == READ and cursor.is_readonly):
            raise _NotInline
        if self._interrupted:  # an interrupt that came before this statement started
            raise apsw.InterruptError("interrupted")
        self._description = cursor.description if cursor.has_vdbe else ()
        self.guard.running = True
        return True

    def _columns(self) -> list[common_pb2.Column]:
        """The running statement's result columns: name and declared type."""
        return [common_pb2.Column(name=d[0], decltype=d[1] or "") for d in self._description]

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def interrupt(self) -> None:
        """Stop the running batch (safe to call from any thread): the statement running now, or
        the next one if none has started (SQLite ignores an interrupt when nothing runs). A
        connection that closed meanwhile (on its worker thread, before the servicer forgot it)
        has nothing to stop."""
        self._interrupted = True
        with contextlib.suppress(apsw.ConnectionClosedError):
            self.conn.interrupt()

    def set_inline(self, inline: bool) -> None:
        """See storage.backend.Connection.set_inline: inline, a lock is not waited for."""
        self._inline, self._overran = inline, False
        self.conn.set_busy_timeout(0 if inline else BUSY_TIMEOUT_MS)

    def overrun(self) -> None:
        """The inline step ran past its budget (any thread): its read stops, to run again."""
        self._overran = True
        self.conn.interrupt()

    def reset_interrupt(self) -> None:
        """The interrupted batch is over: later batches run."""
        self._interrupted = False

    def _on_commit(self, conn: apsw.Connection, schema: str, pages: int) -> int:  # noqa: ARG002
        """SQLite's WAL hook: runs right after a commit, before the statement returns. SQLite's
        write lock is free by now; when the commit ends the batch, the writer turn is handed on
        (`release_writer`) before the commit waits for the log, unless a checkpoint is due
        (it needs the write lock: `Capturer.checkpoint_due`)."""
        capturer = self._capturer
        assert isinstance(capturer, Capturer)
        early = self._last and self.release_writer is not None and not capturer.checkpoint_due
        if early and self.release_writer is not None:
            self.release_writer()
        self._logged(*capturer.capture(self._sync, checkpoint=not early))
        return apsw.SQLITE_OK

    def execute(self, statements: list[common_pb2.Statement], read_only: bool, describe_only: bool = False,
                synchronous: bool = False) -> list[common_pb2.StatementResult]:
        """Run (or only describe) `statements` in order; stop after the first one that fails.
        Every row in the results, however many: for callers that read small results."""
        run = self.run(statements, read_only, describe_only, synchronous, stream=False)
        try:
            while True:
                next(run)
        except StopIteration as stop:
            return stop.value

    def run(self, statements: Sequence[common_pb2.Statement], read_only: bool, describe_only: bool = False,
            synchronous: bool = False, stream: bool = True
            ) -> Generator[common_pb2.ResultPart | None, None, list[common_pb2.StatementResult]]:
        """Run (or only describe) `statements` in order; stop after the first one that fails.

        A generator: it yields ResultParts as a large result is stepped (common.proto; SQLite
        steps only while the caller asks for the next part, so a slow reader pauses the
        statement) and returns the results, rows left out of those sent in parts. Safe to
        resume on any thread, one at a time; closing it stops the statement. On an inline step
        (set_inline), a statement that cannot finish there yields None first; it runs from
        its start when resumed."""
        results: list[common_pb2.StatementResult] = []
        self._sync = synchronous or self._synchronous
        self._read_only = read_only
        self._streaming = False
        for i, st in enumerate(statements):
            self._streamed_now = None
            self._last = i == len(statements) - 1
            if self._interrupted:
                result = common_pb2.StatementResult(error=SqlError(
                    QUERY_CANCELED, "canceling statement due to user request",
                    sqlite_code=apsw.SQLITE_INTERRUPT).to_proto())
            elif describe_only:
                result = self._describe_one(st)
            else:
                while (result := (yield from self._execute_one(st, i, results if stream else None))) is _RETRY:
                    yield None  # resumed on the worker thread, not inline
            if self._streaming:  # from now on every outcome goes out in a part
                out = self._streamed_now
                yield out.final(result) if out is not None else parts.done(i, result)
                result = parts.stripped(result)
            results.append(result)
            if result.HasField("error"):
                break
        if self.guard.noted or self.session_state:
            if self._inline:
                yield None  # it reads the session's settings: on the worker thread
            self.session_state = self.guard.session_state()
        return results

    def _describe_one(self, st: common_pb2.Statement) -> common_pb2.StatementResult:
        self.guard.denied = None
        try:
            return common_pb2.StatementResult(description=describe(self.conn, st.sql))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a statement error
            return common_pb2.StatementResult(error=to_error(exc, self.guard.take_denied()))

    def _execute_one(self, st: common_pb2.Statement, index: int,
                     earlier: list[common_pb2.StatementResult] | None
                     ) -> Generator[common_pb2.ResultPart, None, common_pb2.StatementResult]:
        """One statement; its rows go out in parts once they outgrow one part (and `earlier`,
        the batch's results so far, is given: None keeps every row in the result)."""
        if st.params and st.named_params:
            return common_pb2.StatementResult(error=SqlError(
                PROTOCOL_VIOLATION, "a statement takes positional or named parameters, not both").to_proto())
        bindings: Any = None
        if st.named_params:
            bindings = {k: to_python(v) for k, v in st.named_params.items()}
        elif st.params:
            bindings = tuple(to_python(v) for v in st.params)
        self._statements_seen = 0
        self._kind = st.kind
        self._description = ()
        conn = self.conn
        before = conn.total_changes()
        cursor = conn.cursor()
        cursor.exec_trace = self._exec_trace
        self.guard.denied, self.guard.running = None, False
        out: parts.Rows | None = None
        try:
            for row in cursor.execute(st.sql, bindings):
                if out is None:
                    out = parts.Rows(index, self._columns())
                if earlier is None:
                    out.rows.append(parts.row(row))
                    continue
                for part in out.add(row):
                    if self._inline:  # a result larger than a part streams from the worker thread
                        raise _NotInline
                    if not self._streaming:
                        self._streaming = True
                        for j, r in enumerate(earlier):
                            yield parts.done(j, r)
                        earlier[:] = [parts.stripped(r) for r in earlier]
                    self._streamed_now = out
                    yield part
                    if self._interrupted:
                        raise apsw.InterruptError("interrupted")
            self._after_statement()
        except _NotInline:
            return _RETRY
        except SqlError as exc:  # refused before it ran (_exec_trace)
            return common_pb2.StatementResult(error=exc.to_proto())
        except CaptureError as exc:
            if not isinstance(exc, (LogForked, ReplicationBroken)):  # said once, by the capturer
                log.error("%s", exc)
            return common_pb2.StatementResult(error=SqlError(SYSTEM_ERROR, str(exc)).to_proto())
        except Exception as exc:  # noqa: BLE001 - every failure becomes a statement error
            if self._inline and (self._overran or isinstance(exc, apsw.BusyError)):
                return _RETRY  # a read (_exec_trace): stopped, nothing sent, nothing rolled back
            return common_pb2.StatementResult(error=to_error(exc, self.guard.take_denied()))
        finally:
            self.guard.running = False
            cursor.close(force=True)
        changed = conn.total_changes() != before
        notices = []
        if self._sync_missed:
            self._sync_missed = False
            notices.append(common_pb2.Notice(sqlstate=WARNING, message=(
                "the commit is durable on the primary, but no replica applied it within the "
                "synchronous commit timeout")))
        return common_pb2.StatementResult(notices=notices, ok=common_pb2.ResultSet(
            columns=self._columns(),
            rows=out.take() if out is not None and not out.sent else (),
            rows_affected=conn.changes() if changed else 0,
            last_insert_rowid=conn.last_insert_rowid(), total_changes=conn.total_changes() - before))

    def close(self) -> None:
        """Roll back what is open and close the connection."""
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except apsw.Error as exc:
            log.warning("rollback on close failed db=%s err=%s", self.name, exc)
        self.conn.close()
