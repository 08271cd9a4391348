"""pg_stat_replication, answered by the scheduler from the replication service's status.

A statement that names pg_stat_replication runs against an in-memory SQLite table filled
from sqld.v1.Replication/Status, so any SELECT over it works (columns, WHERE, ORDER BY).
Positions are frame numbers where PostgreSQL shows LSNs; lags are seconds.
"""
from __future__ import annotations

import re

import apsw
import grpc

from sqld.common import errors, grpc_client, sqlstate
from sqld.common.values import to_value
from sqld.v1 import common_pb2, replication_pb2_grpc
from sqld.v1 import replication_pb2 as pb

_NAMES = re.compile(r"\bpg_stat_replication\b", re.I)

COLUMNS = [
    ("pid", "INTEGER"), ("usename", "TEXT"), ("application_name", "TEXT"), ("client_addr", "TEXT"),
    ("datname", "TEXT"), ("state", "TEXT"), ("sent_lsn", "INTEGER"), ("write_lsn", "INTEGER"),
    ("flush_lsn", "INTEGER"), ("replay_lsn", "INTEGER"), ("write_lag", "REAL"), ("flush_lag", "REAL"),
    ("replay_lag", "REAL"), ("sync_state", "TEXT"), ("log_id", "TEXT"), ("head_lsn", "INTEGER"),
    ("lag_frames", "INTEGER"),
]


def mentions(sql: str) -> bool:
    return bool(_NAMES.search(sql))


class ReplicationStatus:
    def __init__(self, target: str) -> None:
        self._channel = grpc_client.channel(target) if target else None
        self._stub = replication_pb2_grpc.ReplicationStub(self._channel) if self._channel else None

    async def query(self, st: common_pb2.Statement, database: str = "") -> common_pb2.StatementResult:
        """`st` over the replicas of `database` (the session's; PostgreSQL's one row per standby:
        each database has its own log and its own stream to each replica); "" for every database."""
        rows: list[tuple] = []
        if self._stub is not None:
            try:
                status = await self._stub.Status(pb.StatusRequest(database=database), timeout=5)
            except grpc.aio.AioRpcError as exc:
                return common_pb2.StatementResult(error=errors.from_rpc_error(exc, "read pg_stat_replication"))
            for lg in status.logs:
                for i, r in enumerate(lg.replicas):
                    state = "streaming" if r.connected else "disconnected"
                    rows.append((i + 1, "sqld", r.replica_id, r.replica_id.rsplit(":", 1)[0], lg.database, state,
                                 r.sent_frame_no, r.written_frame_no, r.written_frame_no, r.applied_frame_no,
                                 r.replay_lag_seconds, r.replay_lag_seconds, r.replay_lag_seconds,
                                 r.sync_state, lg.log_id, lg.head_frame_no, r.lag_frames))
        db = apsw.Connection(":memory:")
        try:
            db.execute(f"CREATE TABLE pg_stat_replication ({', '.join(f'{n} {t}' for n, t in COLUMNS)})")
            db.executemany(f"INSERT INTO pg_stat_replication VALUES ({', '.join('?' * len(COLUMNS))})", rows)
            sql = re.sub(r"\bpg_catalog\s*\.\s*pg_stat_replication\b", "pg_stat_replication", st.sql, flags=re.I)
            cursor = db.cursor()
            seen: list = []

            def trace(cur, _sql, _bindings):
                seen[:] = [cur.description if cur.has_vdbe else ()]
                return True
            cursor.exec_trace = trace
            out = list(cursor.execute(sql))
            desc = seen[0] if seen else ()
        except apsw.Error as exc:
            return common_pb2.StatementResult(error=errors.error(sqlstate.SYNTAX_ERROR, f"pg_stat_replication: {exc}"))
        finally:
            db.close()
        return common_pb2.StatementResult(ok=common_pb2.ResultSet(
            columns=[common_pb2.Column(name=d[0], decltype=d[1] or "") for d in desc],
            rows=[common_pb2.Row(values=[to_value(x) for x in row]) for row in out]))

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
