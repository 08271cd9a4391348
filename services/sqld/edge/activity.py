"""pg_stat_activity, pg_settings, pg_cancel_backend and pg_terminate_backend at run time.

catalog/live.py rewrote them into SQL over MARKER literals and `json_array('sqld:cancel', pid)`
values; here, just before a batch is sent, each marker becomes the rows of that moment (the
site's sessions from the scheduler's SessionAdmin, or this session's settings), and after the
batch each signal value is sent to the scheduler and replaced by PostgreSQL's answer: true,
false with a WARNING when no session has that pid, or the statement fails with 42501 when
the caller may not signal that session (activity.proto). The session running the query shows
itself as PostgreSQL does: active, with this query, waiting for nothing.
"""
from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Sequence

import grpc

from sqld.common import errors, sqlstate
from sqld.edge import progress
from sqld.edge.catalog import functions, live
from sqld.v1 import activity_pb2 as pb
from sqld.v1 import activity_pb2_grpc, common_pb2, query_pb2

TIMEOUT = 10.0
_PID_MIN, _PID_MAX = -(1 << 31), (1 << 31) - 1
_BACKEND_PID = re.compile(r"\b(?:pg_catalog\s*\.\s*)?pg_backend_pid\s*\(\s*\)", re.I)
_SIGNAL_OF = {live.SIGNALS["pg_cancel_backend"]: pb.SIGNAL_CANCEL,
              live.SIGNALS["pg_terminate_backend"]: pb.SIGNAL_TERMINATE}


def _time(us: int) -> str | None:
    """A timestamptz as PostgreSQL prints it with TimeZone UTC."""
    if not us:
        return None
    return datetime.datetime.fromtimestamp(us / 1e6, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def needs(statements: Sequence[common_pb2.Statement]) -> bool:
    return any("'[/*sqld:" in st.sql or "'sqld:cancel'" in st.sql or "'sqld:terminate'" in st.sql
               for st in statements)


def _literal(rows: list[list]) -> str:
    return "'" + json.dumps(rows, separators=(",", ":")).replace("'", "''") + "'"


async def _sessions(stub: activity_pb2_grpc.SessionAdminStub, user: str, superuser: bool, me: int,
                    query: str) -> list[list]:
    response = await stub.ListSessions(pb.ListSessionsRequest(as_user=user, superuser=superuser), timeout=TIMEOUT)
    now = int(time.time() * 1e6)
    rows = []
    for s in response.sessions:
        if s.pid == me:  # this query, running now
            s.state, s.query, s.query_start_us, s.state_change_us = "active", query or s.query, now, now
            s.xact_start_us = s.xact_start_us or now
            s.wait_event_type = s.wait_event = ""
        rows.append([s.database, s.pid, s.user, s.application_name, s.client_addr or None,
                     s.client_port if s.client_addr else None, _time(s.backend_start_us), _time(s.xact_start_us),
                     _time(s.query_start_us), _time(s.state_change_us), s.wait_event_type or None,
                     s.wait_event or None, s.state, s.query, s.backend_type])
    return rows


async def fill(statements: list[common_pb2.Statement], stub: activity_pb2_grpc.SessionAdminStub | None,
               user: str, superuser: bool, me: int, query: str, settings_rows: list[list]
               ) -> list[common_pb2.Statement]:
    """The statements with their markers replaced by the rows of this moment."""
    out = []
    activity: str | None = None
    for st in statements:
        if "pg_backend_pid" in st.sql:  # `WHERE pid <> pg_backend_pid()`: this session's pid
            sql = functions.outside_quotes(st.sql, lambda part: _BACKEND_PID.sub(str(me), part))
            st = common_pb2.Statement(sql=sql, params=st.params,
                                      named_params=st.named_params, kind=st.kind)
        if live.ACTIVITY in st.sql:
            if activity is None:
                rows: list[list] = []
                if stub is not None:
                    try:
                        rows = await _sessions(stub, user, superuser, me, query)
                    except grpc.aio.AioRpcError:
                        rows = []  # the view is empty rather than the statement failing
                activity = _literal(rows)
            st = common_pb2.Statement(sql=st.sql.replace(live.ACTIVITY, activity), params=st.params,
                                      named_params=st.named_params, kind=st.kind)
        if live.PROGRESS_COPY in st.sql:
            st = common_pb2.Statement(sql=st.sql.replace(live.PROGRESS_COPY, _literal(progress.rows())),
                                      params=st.params, named_params=st.named_params, kind=st.kind)
        if live.SETTINGS in st.sql:
            st = common_pb2.Statement(sql=st.sql.replace(live.SETTINGS, _literal(settings_rows)), params=st.params,
                                      named_params=st.named_params, kind=st.kind)
        out.append(st)
    return out


async def signal(statements: Sequence[common_pb2.Statement], batch: query_pb2.BatchResult,
                 stub: activity_pb2_grpc.SessionAdminStub | None, user: str, superuser: bool) -> bool:
    """Send the signals a batch's results ask for, answering each with a boolean; True when a
    statement failed here (42501), so the caller fails the transaction."""
    failed = False
    for st, result in zip(statements, batch.results):
        if not ("'sqld:cancel'" in st.sql or "'sqld:terminate'" in st.sql) or not result.HasField("ok"):
            continue
        for row in result.ok.rows:
            for value in row.values:
                if not value.HasField("text") or not value.text.startswith('["sqld:'):
                    continue
                try:
                    kind, pid = json.loads(value.text)[:2]
                except ValueError:
                    continue
                if pid is None:
                    value.CopyFrom(common_pb2.Value(null=True))
                    continue
                refused: common_pb2.StatementError | None
                answer = pb.SignalSessionResponse(signalled=False)
                if not isinstance(pid, int) or not _PID_MIN <= pid <= _PID_MAX:
                    refused = None  # no session has it (a pid is an int4): false with the WARNING
                elif stub is None:
                    refused = errors.error(sqlstate.FEATURE_NOT_SUPPORTED, "signals need the scheduler's SessionAdmin")
                else:
                    try:
                        answer = await stub.SignalSession(pb.SignalSessionRequest(
                            pid=pid, signal=_SIGNAL_OF.get(kind, pb.SIGNAL_UNSPECIFIED), as_user=user,
                            superuser=superuser), timeout=TIMEOUT)
                    except grpc.aio.AioRpcError as exc:
                        answer = pb.SignalSessionResponse(error=errors.from_rpc_error(exc, "signal session"))
                    refused = answer.error if answer.HasField("error") else None
                if refused is not None:
                    result.ClearField("ok")
                    result.error.CopyFrom(refused)
                    failed = True
                    break
                if not answer.signalled:
                    result.notices.append(common_pb2.Notice(
                        sqlstate=sqlstate.WARNING, message=f"PID {pid} is not a PostgreSQL backend process"))
                value.CopyFrom(common_pb2.Value(integer=1 if answer.signalled else 0))
            if failed:
                break
    return failed
