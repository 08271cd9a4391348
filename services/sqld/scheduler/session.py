"""One client session: the transaction state machine that orders its work.

States follow PostgreSQL's: IDLE (autocommit), IN_TRANSACTION, FAILED (an error inside a
transaction; only ROLLBACK, COMMIT or ROLLBACK TO SAVEPOINT are accepted). BEGIN is lazy:
no storage connection is taken until the first statement. A transaction whose first
statement reads runs on a pinned connection in a deferred SQLite transaction; its first
write takes the writer token. A transaction that starts with a write takes the token
first and runs BEGIN IMMEDIATE. The token is held until COMMIT/ROLLBACK is sent; when a
transaction begins as a writer even if it reads first, and how long it may hold the
token, is `scheduler.writer`'s policy.

Statements sent to storage together form a group: consecutive statements that are not
transaction control travel in one message.

Session state: when storage answers that a connection now carries state of the session
(a per-session PRAGMA such as foreign_keys, or a TEMP table; Executed.session_state), the
session keeps that connection as its own: every later statement and transaction runs on
it (reads no longer go to a replica), and it is closed, never pooled, when the session
ends. If its stream dies the state is gone, as with a lost PostgreSQL connection.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from typing import cast

import grpc

from sqld.common import errors, sqlstate, statement
from sqld.common.sqlstate import SqlError
from sqld.common.sqltext import LONGEST_CACHED, TEXTS_CACHED, leading_words, split
from sqld.common.statement import CONTROL, Kind, kind_of
from sqld.scheduler import metrics, routing, stat_replication
from sqld.scheduler.pool import DatabasePool, Pools
from sqld.scheduler.storage_client import PartSink, StorageConnection, StorageUnavailable
from sqld.scheduler.writer import WriterTurn
from sqld.v1 import common_pb2

log = logging.getLogger(__name__)

IDLE = common_pb2.TRANSACTION_STATUS_IDLE
IN_TRANSACTION = common_pb2.TRANSACTION_STATUS_IN_TRANSACTION
FAILED = common_pb2.TRANSACTION_STATUS_FAILED

_ABORTED = errors.error(sqlstate.IN_FAILED_SQL_TRANSACTION,
                        "current transaction is aborted, commands ignored until end of transaction block")
LOCAL = -1  # not a StatementKind: a statement the scheduler answers itself (Session._local)


def _canceled() -> SqlError:
    return SqlError(sqlstate.QUERY_CANCELED, "canceling statement due to user request")


_COMMIT = common_pb2.Statement(sql="COMMIT", kind=statement.COMMIT)
_WAIT_WRITER = ("Lock", "WriteToken")                 # pg_stat_activity's wait_event_type, wait_event
_WAIT_CONNECTION = ("IPC", "StorageConnection")


def _ok(*notices: common_pb2.Notice) -> common_pb2.StatementResult:
    return common_pb2.StatementResult(ok=common_pb2.ResultSet(), notices=notices)


def _fail(err: common_pb2.StatementError) -> common_pb2.StatementResult:
    return common_pb2.StatementResult(error=err)


def expand(statements: Sequence[common_pb2.Statement]) -> list[common_pb2.Statement] | common_pb2.StatementError:
    """Split statements that hold several SQL statements (QueryService callers may send a
    script; the edge splits before it sends), each piece classified; parameters allow only one."""
    out: list[common_pb2.Statement] = []
    for st in statements:
        semi = st.sql.find(";")
        parts = split(st.sql) if semi != -1 and st.sql[semi + 1:].strip() else ()  # not one ending in ";"
        if len(parts) <= 1:
            out.append(st)
            continue
        if st.params or st.named_params:
            return errors.error(sqlstate.SYNTAX_ERROR, "cannot insert multiple commands into a prepared statement")
        out.extend(common_pb2.Statement(sql=p, kind=cast(Kind, statement.classify(p).kind)) for p in parts)
    return out


def _kind(st: common_pb2.Statement) -> int:
    """How the session orders `st`: its StatementKind, or LOCAL. A pure function of the text and
    the kind, remembered for short texts (common.sqltext.per_text's bounds)."""
    kind = kind_of(st)
    sql = st.sql
    return _local_or(sql, kind) if len(sql) <= LONGEST_CACHED else _local_or.__wrapped__(sql, kind)


@functools.lru_cache(maxsize=TEXTS_CACHED)
def _local_or(sql: str, kind: int) -> int:
    """LOCAL when the scheduler answers `sql` itself, else `kind`."""
    if routing.is_setting(sql) or (kind == statement.READ and stat_replication.mentions(sql)):
        return LOCAL
    return kind


@dataclasses.dataclass
class Replicas:
    """A site's read replica and what the session needs to route reads there."""
    pools: Pools | None = None
    status: stat_replication.ReplicationStatus | None = None
    read_your_writes_wait_ms: int = 500
    max_lag_ms: int = 5000
    skip_until: float = 0.0  # after a replica failure, reads skip it until then (monotonic time)


class Session:
    def __init__(self, pool: DatabasePool, replicas: Replicas | None = None,
                 policy: routing.Policy | None = None, frame_no: int = 0, max_write_hold: float = 0.0) -> None:
        self.pool = pool
        self.replicas = replicas or Replicas()
        self.policy = policy or routing.Policy()
        self.frame_no = frame_no          # the frame number of this session's last write
        self.served_by_replica = False    # the last batch's reads ran on a replica
        self.status = IDLE
        self.conn: StorageConnection | None = None  # pinned by the open transaction
        self.own: StorageConnection | None = None   # carries this session's state; never pooled
        self.holds_writer = False
        self.read_only = False
        self.implicit = False
        self.active: StorageConnection | None = None  # the connection running a call now
        self._in_batch = False
        self._cancel_pending = False  # a Cancel came while the batch ran but not on storage
        self._waiting: asyncio.Future | None = None  # a wait for the writer token or a connection
        self.waiting_for: tuple[str, str] | None = None  # that wait as pg_stat_activity names it
        self.turn = WriterTurn(max_write_hold, self._write_hold_expired)
        self._expiring: asyncio.Task | None = None
        # Large results flow to the caller in ResultParts while the batch runs (see _relay).
        self._sink: PartSink | None = None
        self._results: list[common_pb2.StatementResult] = []  # the running batch's results so far
        self._base = 0     # batch index of the first statement of the group on storage now
        self._skip = 0     # statements the session added in front of that group (BEGIN)
        self._sent = 0     # results already handed on in parts
        self._relayed = 0  # parts handed on in this batch

    @property
    def pinned(self) -> bool:
        return self.conn is not None

    async def run(self, statements: Sequence[common_pb2.Statement], implicit_transaction: bool = False,
                  on_part: PartSink | None = None) -> list[common_pb2.StatementResult]:
        """Run a batch; stop at the first error. `self.status` tells where the session stands.
        With `on_part`, a large result is handed on in ResultParts as storage sends them (each
        awaited: back-pressure), indexed by the batch's statements; the results returned then
        leave out the rows of the statements answered by parts (common.proto)."""
        self._in_batch, self._cancel_pending = True, self.turn.expired  # expired: the session is ending
        self._sink, self._sent, self._relayed = on_part, 0, 0
        try:
            return await self._run(statements, implicit_transaction)
        finally:
            self._in_batch = self._cancel_pending = False
            self._sink = None

    async def _relay(self, part: common_pb2.ResultPart) -> None:
        """A part from storage, renumbered from the storage batch to the client's. Results the
        batch got before (from earlier groups or the session itself) go first, in parts."""
        i = part.statement - self._skip
        if self._sink is None or i < 0:
            return  # a part for the BEGIN the session added: nothing the client asked for
        for j in range(self._sent, self._base):
            await self._sink(common_pb2.ResultPart(statement=j, result=self._results[j]))
        part.statement = self._base + i
        self._sent = part.statement + 1 if part.HasField("result") else part.statement
        self._relayed += 1
        await self._sink(part)

    def _take_cancel(self) -> common_pb2.StatementResult | None:
        """A Cancel that came before this batch's statement reached storage: it fails now."""
        if not self._cancel_pending:
            return None
        self._cancel_pending = False
        return _fail(_canceled().to_proto())

    async def _wait(self, aw, contended: bool, event: tuple[str, str] = _WAIT_CONNECTION):
        """Wait for the writer token or a connection; a Cancel ends the wait with 57014.
        Uncontended, it is awaited directly (no task: the fast path). `event`: the wait as
        pg_stat_activity shows it (wait_event_type, wait_event)."""
        if self._cancel_pending:
            aw.close()
            self._cancel_pending = False
            raise _canceled()
        if not contended:
            return await aw
        self._waiting = asyncio.ensure_future(aw)
        self.waiting_for = event
        try:
            return await self._waiting
        except asyncio.CancelledError:
            if not (self._cancel_pending and self._waiting.cancelled()):
                raise  # the session itself is being cancelled
            self._cancel_pending = False
            raise _canceled() from None
        finally:
            self._waiting = None
            self.waiting_for = None

    async def _run(self, statements: Sequence[common_pb2.Statement], implicit_transaction: bool
                   ) -> list[common_pb2.StatementResult]:
        expanded = expand(statements)
        if isinstance(expanded, common_pb2.StatementError):
            return [_fail(expanded)]
        kinds = [_kind(st) for st in expanded]
        self.served_by_replica = False
        results: list[common_pb2.StatementResult] = []
        self._results = results
        if (implicit_transaction and self.status == IDLE and len(expanded) > 1
                and not any(k in CONTROL for k in kinds)):
            self.status, self.implicit, self.read_only = IN_TRANSACTION, True, False
        i = 0
        while i < len(expanded):
            kind = kinds[i]
            self._base = len(results)
            if kind == LOCAL:
                results.append(await self._local(expanded[i]))
                i += 1
            elif kind in CONTROL:
                result = await self._control(kind, expanded[i])
                results.append(result)
                i += 1
            else:
                j = i
                while j < len(expanded) and kinds[j] not in CONTROL and kinds[j] != LOCAL:
                    j += 1
                # a COMMIT right behind the group (a transaction pipelined whole) goes with it
                commit = j < len(expanded) and kinds[j] == statement.COMMIT and self.status == IN_TRANSACTION
                group_results = await self._group(expanded[i:j], statement.WRITE in kinds[i:j], commit)
                if commit and len(group_results) > j - i:
                    group_results[-1] = await self._committed(group_results[-1])
                    j += 1
                results.extend(group_results)
                i = j
            if results and results[-1].HasField("error"):
                break
        if self.implicit:
            await self._end("ROLLBACK" if self.status == FAILED else "COMMIT", results)
        return results

    def fail(self) -> None:
        """The client met an error of its own inside the transaction: fail it."""
        if self.status == IN_TRANSACTION:
            self.status = FAILED

    async def describe(self, statements: Sequence[common_pb2.Statement]) -> list[common_pb2.StatementResult]:
        """Describe without running: on the pinned connection (it sees this transaction's
        schema changes), else on any connection; never takes the writer token."""
        if self.status == FAILED:
            return [_fail(_ABORTED)]
        if self.conn is not None or self.own is not None:
            mine = self.conn or self.own
            assert mine is not None
            try:
                return await mine.execute(statements, read_only=True, describe_only=True)
            except StorageUnavailable as exc:
                if self.conn is not None:
                    self._unpin(reuse=False)
                    self.status = FAILED
                else:
                    self._settle(mine, reuse=False)
                return [_fail(self._transport_error(exc))]
        conn = None
        try:
            conn = await self.pool.acquire()
            return await conn.execute(statements, read_only=True, describe_only=True)
        except (SqlError, StorageUnavailable) as exc:
            return [_fail(self._transport_error(exc))]
        finally:
            if conn is not None:
                self.pool.release(conn)

    async def _local(self, st: common_pb2.Statement) -> common_pb2.StatementResult:
        """A statement the scheduler answers: a session setting, or pg_stat_replication."""
        if routing.is_setting(st.sql):
            problem = routing.apply_setting(self.policy, st.sql)
            return _fail(errors.error(sqlstate.INVALID_PARAMETER_VALUE, problem)) if problem else _ok()
        if self.replicas.status is None:
            return _fail(errors.error(sqlstate.FEATURE_NOT_SUPPORTED, "pg_stat_replication: this scheduler was "
                                      "started without --replication; point it at the replication service"))
        return await self.replicas.status.query(st, self.pool.name)

    async def _on_replica(self, group: Sequence[common_pb2.Statement]) -> list[common_pb2.StatementResult] | None:
        """Run an autocommit read on the replica when the policy allows; None: use the primary."""
        if self.replicas.pools is None or self.policy.consistency == routing.STRONG \
                or self.own is not None or time.monotonic() < self.replicas.skip_until:
            return None
        ryw = self.policy.consistency == routing.READ_YOUR_WRITES
        conn = None
        pool = None
        relayed = self._relayed
        try:
            pool = await self.replicas.pools.get(self.pool.name)
            conn = await pool.acquire()
            self.active = conn
            if self._cancel_pending:
                return None  # the primary path answers the cancel
            results = await conn.execute(
                group, True, on_part=self._relay, min_frame_no=self.frame_no if ryw else 0,
                wait_ms=self.replicas.read_your_writes_wait_ms if ryw else 0,
                max_staleness_ms=self.policy.max_staleness_ms or self.replicas.max_lag_ms)
        except (SqlError, StorageUnavailable) as exc:
            if conn is not None and self._relayed != relayed:  # rows went out: not run again
                return [_fail(self._transport_error(exc))]
            log.debug("replica read failed, using the primary db=%s err=%s", self.pool.name, exc)
            if isinstance(exc, StorageUnavailable):
                self.replicas.skip_until = time.monotonic() + 1.0
            return None
        finally:
            self.active = None
            if conn is not None and pool is not None:
                pool.release(conn)
        if conn.not_caught_up:
            return None
        self.served_by_replica = True
        return results

    def _wrote(self, conn: StorageConnection) -> None:
        self.frame_no = max(self.frame_no, conn.frame_no)

    async def _control(self, kind: int, st: common_pb2.Statement) -> common_pb2.StatementResult:
        if kind in (statement.BEGIN, statement.BEGIN_READ_ONLY):
            if self.status == FAILED:
                return _fail(_ABORTED)
            if self.status == IN_TRANSACTION:
                return _ok(common_pb2.Notice(sqlstate=sqlstate.ACTIVE_SQL_TRANSACTION,
                                             message="there is already a transaction in progress"))
            self.status, self.implicit = IN_TRANSACTION, False
            self.read_only = kind == statement.BEGIN_READ_ONLY
            return _ok()
        if kind in (statement.COMMIT, statement.ROLLBACK):
            if self.status == IDLE:
                return _ok(common_pb2.Notice(sqlstate=sqlstate.NO_ACTIVE_SQL_TRANSACTION,
                                             message="there is no transaction in progress"))
            results: list[common_pb2.StatementResult] = []
            await self._end("COMMIT" if kind == statement.COMMIT and self.status == IN_TRANSACTION else "ROLLBACK",
                            results)
            return results[-1] if results else _ok()
        # SAVEPOINT, RELEASE, ROLLBACK TO
        if self.status == IDLE:
            word = (leading_words(st.sql, 1) or ["SAVEPOINT"])[0]
            return _fail(errors.error(sqlstate.NO_ACTIVE_SQL_TRANSACTION, f"{word} can only be used in transaction blocks"))
        if self.status == FAILED and kind != statement.ROLLBACK_TO:
            return _fail(_ABORTED)
        if self.conn is None:  # nothing ran yet: SAVEPOINT needs a real transaction under it
            results = await self._group([st], False)
        else:
            results = await self._send([st])
        result = results[-1]
        if kind == statement.ROLLBACK_TO and not result.HasField("error") and self.conn is not None \
                and self.conn.in_transaction:
            self.status = IN_TRANSACTION
        return result

    async def _group(self, group: Sequence[common_pb2.Statement], writes: bool, commit: bool = False
                     ) -> list[common_pb2.StatementResult]:
        """Run `group` in the transaction (autocommit when IDLE); with `commit`, the transaction's
        COMMIT goes in the same storage call, after the group (its result last, when it ran)."""
        if self.status == FAILED:
            return [_fail(_ABORTED)]
        if self.status == IDLE:
            return await self._autocommit(group, writes)
        prefix: list[common_pb2.Statement] = []
        # The token goes back when the COMMIT is sent only for a transaction that is all in this
        # call: if the group fails before its COMMIT, no savepoint can bring it back to writing
        # (which would need the token again while storage's queue is held for it).
        whole = commit and self.conn is None
        try:
            as_writer = writes or (self.conn is None and self.turn.begins_as_writer(self.policy.begin_as_writer))
            if as_writer and not self.read_only and not self.holds_writer:
                await self._wait(self.pool.acquire_writer(), self.pool.writer.locked(), _WAIT_WRITER)
                self.holds_writer = True
                self.turn.taken()
            if self.conn is None:
                self.conn = self.own or await self._wait(self.pool.acquire(), self.pool.busy)
                prefix = [common_pb2.Statement(sql="BEGIN IMMEDIATE" if self.holds_writer else "BEGIN")]
        except (SqlError, StorageUnavailable) as exc:
            self.status = FAILED
            return [_fail(self._transport_error(exc))]
        self._skip = len(prefix)
        try:
            results = await self._send([*prefix, *group, *([_COMMIT] if commit else [])], whole)
        finally:
            self._skip = 0
        if prefix:
            if results and results[0].HasField("error"):
                results = results[:1]
            else:
                results = results[1:]
        return results

    async def _send(self, group: Sequence[common_pb2.Statement], commits: bool = False
                    ) -> list[common_pb2.StatementResult]:
        """Run on the pinned connection; any error fails the transaction. `commits`: the group
        ends with the transaction's COMMIT (the writer token goes back when it is sent, as in _end)."""
        assert self.conn is not None
        if (cancelled := self._take_cancel()) is not None:
            self.status = FAILED
            return [cancelled]
        take_writer = self.holds_writer
        if commits:
            self._release_writer()
        try:
            self.active = self.conn
            results = await self.conn.execute(group, self.read_only, on_part=self._relay,
                                              synchronous_commit=self.policy.synchronous_commit,
                                              take_writer=take_writer,
                                              writer_wait_ms=self._writer_wait_ms if take_writer else 0)
            self._wrote(self.conn)
        except StorageUnavailable as exc:
            self._unpin(reuse=False)
            self.status = FAILED
            return [_fail(self._transport_error(exc))]
        finally:
            self.active = None
        if results and results[-1].HasField("error"):
            # SQLite undid the failed statement; under SQLite's rule (sqld.statement_errors) the
            # transaction goes on while SQLite kept it open.
            if not (self.policy.sqlite_errors and self.conn is not None and self.conn.in_transaction):
                self.status = FAILED
            self.turn.note(results)
        return results

    async def _autocommit(self, group: Sequence[common_pb2.Statement], writes: bool
                          ) -> list[common_pb2.StatementResult]:
        if not writes:
            on_replica = await self._on_replica(group)
            if on_replica is not None:
                return on_replica
        took_writer = False
        conn = None
        answered = False
        try:
            if writes:
                await self._wait(self.pool.acquire_writer(), self.pool.writer.locked(), _WAIT_WRITER)
                took_writer = True
            conn = self.own or await self._wait(self.pool.acquire(), self.pool.busy)
            self.active = conn
            if (cancelled := self._take_cancel()) is not None:
                return [cancelled]
            if took_writer:  # from here storage's queue orders it, as in _end
                self.pool.writer.release()
                took_writer = False
            results = await conn.execute(group, read_only=not writes, on_part=self._relay,
                                         synchronous_commit=self.policy.synchronous_commit,
                                         take_writer=writes, writer_wait_ms=self._writer_wait_ms if writes else 0)
            answered = True
            self._wrote(conn)
            if writes and results and not results[-1].HasField("error"):
                metrics.COMMITS.inc()
            if conn.in_transaction:  # a statement such as a bare SAVEPOINT opened one
                await conn.execute([common_pb2.Statement(sql="ROLLBACK")], read_only=False)
            return results
        except (SqlError, StorageUnavailable) as exc:
            return [_fail(self._transport_error(exc, could_commit=writes and not answered))]
        finally:
            self.active = None
            if conn is not None:
                self._settle(conn)
            if took_writer:
                self.pool.writer.release()

    @property
    def _writer_wait_ms(self) -> int:
        """Execute.writer_wait_ms for a call holding the writer token (take_writer): the token is
        this scheduler's; storage's queue orders the writers of every scheduler that writes to
        the database, the replica site's too. Idempotent while the transaction lasts."""
        return max(1, int(self.pool.wait_timeout * 1000))

    async def _end(self, verb: str, results: list[common_pb2.StatementResult]) -> None:
        """COMMIT or ROLLBACK the transaction and release what it held."""
        if self.conn is not None and self.conn.alive and self.conn.in_transaction:
            answered = False
            # Storage's queue holds the writer for this connection until SQLite has committed
            # (storage/writers.py), so the next writer may queue there now: it starts as soon
            # as this commit is made, while this commit is being logged (group commit).
            self._release_writer()
            try:
                res = await self.conn.execute([common_pb2.Statement(sql=verb)], read_only=False,
                                              synchronous_commit=self.policy.synchronous_commit)
                answered = True
                self._wrote(self.conn)
                if verb == "COMMIT" and res and not res[-1].HasField("error"):
                    metrics.COMMITS.inc()
                if verb == "COMMIT" and res and res[-1].notices and not self.implicit:
                    results.append(res[-1])
                if res and res[-1].HasField("error"):
                    results.append(res[-1])
                    self.turn.note(res)
                    if self.conn.in_transaction:
                        await self.conn.execute([common_pb2.Statement(sql="ROLLBACK")], read_only=False)
            except StorageUnavailable as exc:
                results.append(_fail(self._transport_error(exc, could_commit=verb == "COMMIT" and not answered)))
        elif verb == "COMMIT" and self.conn is not None and not self.conn.alive:  # storage ended it: rolled back
            results.append(_fail(self._transport_error(StorageUnavailable(
                grpc.StatusCode.UNAVAILABLE, "storage: the connection was lost before COMMIT"))))
        self._unpin(reuse=True)
        self.status, self.implicit, self.read_only = IDLE, False, False

    async def _committed(self, res: common_pb2.StatementResult) -> common_pb2.StatementResult:
        """The COMMIT that ran at the end of a group (_group with `commit`): what _end does
        after its own COMMIT call; its result, as _control answers a COMMIT."""
        if res.HasField("error"):
            self.turn.note([res])
            if self.conn is not None and self.conn.alive and self.conn.in_transaction:
                with contextlib.suppress(StorageUnavailable):  # a lost stream is rolled back by storage
                    await self.conn.execute([common_pb2.Statement(sql="ROLLBACK")], read_only=False)
        else:
            metrics.COMMITS.inc()
            if not res.notices:
                res = _ok()
        self._unpin(reuse=True)
        self.status, self.implicit, self.read_only = IDLE, False, False
        return res

    def _settle(self, conn: StorageConnection, reuse: bool = True) -> None:
        """A connection's call outside a transaction is over: the session keeps it when it
        carries session state, else it goes back to the pool."""
        if conn is self.own:
            if not (reuse and conn.alive and not conn.in_transaction):
                if not conn.alive:
                    log.warning("session connection lost; its settings and TEMP objects are gone db=%s",
                                self.pool.name)
                self.own = None
                self.pool.release(conn, reuse=False)
        elif reuse and conn.alive and conn.session_state and self.own is None:
            self.own = conn
        else:
            self.pool.release(conn, reuse=reuse)

    def _unpin(self, reuse: bool) -> None:
        if self.conn is not None:
            self._settle(self.conn, reuse)
            self.conn = None
        self._release_writer()

    def _release_writer(self) -> None:
        if self.holds_writer:
            self.pool.writer.release()
            self.holds_writer = False
            self.turn.released()

    def _transport_error(self, exc: Exception, could_commit: bool = False) -> common_pb2.StatementError:
        """`could_commit`: the call was a COMMIT or an autocommit write, so once sent its
        outcome is unknown; anything else (a read, a statement inside a transaction, which
        storage rolls back when the stream ends) certainly did not commit."""
        if isinstance(exc, SqlError):
            return exc.to_proto()
        assert isinstance(exc, StorageUnavailable)
        log.warning("storage call failed db=%s err=%s", self.pool.name, exc)
        return errors.lost(exc.code, str(exc), in_doubt=could_commit and exc.sent)

    async def interrupt(self) -> None:
        """Stop the statement running now, if any (it fails with 57014); a batch whose
        statement is not on storage yet fails when it gets there."""
        if self.active is not None:
            await self.active.interrupt()
        elif self._in_batch:
            self._cancel_pending = True
            if self._waiting is not None:
                self._waiting.cancel()

    def _write_hold_expired(self) -> None:
        """The transaction held the writer token too long: stop what it runs; the servicer
        ends the session (it sees `turn.expired`)."""
        self._expiring = asyncio.ensure_future(self.interrupt())

    async def close(self) -> None:
        """End the session: roll back and release everything, even when cancelled midway."""
        try:
            if self.status != IDLE:
                await self._end("ROLLBACK", [])
        finally:
            self._unpin(reuse=False)  # a stream closed mid-transaction is rolled back by storage
            if self.own is not None:  # its state belongs to this session: close, never pool
                self._settle(self.own, reuse=False)
            self.status = IDLE
