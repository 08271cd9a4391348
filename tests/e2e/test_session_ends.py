"""However a session ends mid-statement, storage stops the statement and frees the write lock.

A transaction holds SQLite's write lock while a long statement runs; the session then ends
abruptly (its gRPC call cancelled, or the scheduler killed). The next write, from another
session, must commit at once, not meet `database is locked`.
"""
from __future__ import annotations

import queue
import time

import grpc

from sqld.common.values import to_value
from sqld.v1 import common_pb2, query_pb2, query_pb2_grpc

# Runs for a minute or more unless interrupted.
LONG = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500000000) SELECT count(*) FROM c"


def st(sql: str, *params) -> common_pb2.Statement:
    return common_pb2.Statement(sql=sql, params=[to_value(p) for p in params])


class Requests:
    """A Session call's request stream, fed one message at a time by the test."""

    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()

    def send(self, **kind) -> None:
        self.q.put(query_pb2.SessionRequest(**kind))

    def __iter__(self):
        while (req := self.q.get()) is not None:
            yield req

    def end(self) -> None:
        self.q.put(None)


def start_long_statement_in_write_transaction(stub, table: str):
    """A session that took the write lock (BEGIN; INSERT) and now runs LONG; its call and requests."""
    reqs = Requests()
    call = stub.Session(iter(reqs))
    reqs.send(open=query_pb2.OpenSession(database="main", user="t"))
    assert next(call).WhichOneof("kind") == "opened"
    reqs.send(batch=query_pb2.Batch(id=1, statements=[st("BEGIN"), st(f"INSERT INTO {table} VALUES (1)")]))
    first = next(call).result
    assert first.status == common_pb2.TRANSACTION_STATUS_IN_TRANSACTION, first
    assert all(r.HasField("ok") for r in first.results), first
    reqs.send(batch=query_pb2.Batch(id=2, statements=[st(LONG)]))
    time.sleep(0.5)  # the statement is running in storage
    return call, reqs


def timed_write(stub, table: str) -> tuple[float, common_pb2.StatementResult]:
    started = time.monotonic()
    resp = stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[st(f"INSERT INTO {table} VALUES (2)")]),
                        timeout=30)
    return time.monotonic() - started, resp.results[0]


def test_cancelled_session_call_frees_the_write_lock(own_stack):
    stack = own_stack()
    with stack.query_channel() as ch:
        stub = query_pb2_grpc.QueryServiceStub(ch)
        stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[st("CREATE TABLE ends_cancel (a INTEGER)")]))
        call, reqs = start_long_statement_in_write_transaction(stub, "ends_cancel")
        call.cancel()
        reqs.end()
        waited, result = timed_write(stub, "ends_cancel")
        assert result.HasField("ok"), result
        assert waited < 2, f"the next write waited {waited:.1f}s"
        rows = stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[st("SELECT a FROM ends_cancel")]))
        assert [r.values[0].integer for r in rows.results[0].ok.rows] == [2]  # the cancelled one rolled back
    assert not any("ThreadingViolation" in line for line in open(stack.log_dir / "storage.log"))


def test_execute_deadline_mid_statement_frees_the_write_lock(own_stack):
    stack = own_stack()
    with stack.query_channel() as ch:
        stub = query_pb2_grpc.QueryServiceStub(ch)
        stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[st("CREATE TABLE ends_deadline (a INTEGER)")]))
        try:
            stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[
                st("BEGIN"), st("INSERT INTO ends_deadline VALUES (1)"), st(LONG)]), timeout=1)
            raise AssertionError("the long statement finished within its deadline")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        waited, result = timed_write(stub, "ends_deadline")
        assert result.HasField("ok") and waited < 2, (waited, result)


def test_scheduler_killed_mid_statement_frees_the_write_lock(own_stack):
    stack = own_stack()
    stack.allowed_errors.append(r"storage call failed")
    with stack.query_channel() as ch:
        stub = query_pb2_grpc.QueryServiceStub(ch)
        stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[st("CREATE TABLE ends_kill (a INTEGER)")]))
        call, reqs = start_long_statement_in_write_transaction(stub, "ends_kill")
        stack.kill("scheduler")
        reqs.end()
        stack.start("scheduler")
    with stack.query_channel() as ch:
        stub = query_pb2_grpc.QueryServiceStub(ch)
        waited, result = timed_write(stub, "ends_kill")
        assert result.HasField("ok"), result
        assert waited < 2, f"the next write waited {waited:.1f}s"
    assert not any("ThreadingViolation" in line for line in open(stack.log_dir / "storage.log"))


def test_storage_stopping_mid_statement_ends_it(own_stack):
    """SIGTERM while a statement runs in a transaction: storage interrupts it, rolls back and
    exits within its grace period (not when the statement would have finished)."""
    stack = own_stack()
    stack.allowed_errors.append(r"storage call failed")
    with stack.query_channel() as ch:
        stub = query_pb2_grpc.QueryServiceStub(ch)
        stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[st("CREATE TABLE ends_stop (a INTEGER)")]))
        call, reqs = start_long_statement_in_write_transaction(stub, "ends_stop")
        started = time.monotonic()
        code = stack.stop_one("storage")
        assert time.monotonic() - started < 15 and code == 0
        reqs.end()
        answer = next(call).result.results[0]
        assert answer.HasField("error"), answer
        call.cancel()
        stack.start("storage")
        waited, result = timed_write(stub, "ends_stop")
        assert result.HasField("ok") and waited < 2, (waited, result)
        rows = stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[st("SELECT a FROM ends_stop")]))
        assert [r.values[0].integer for r in rows.results[0].ok.rows] == [2]
