"""The public query API called directly over gRPC, without the edge; health and reflection."""
from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from sqld.common.values import to_value
from sqld.v1 import common_pb2, query_pb2, query_pb2_grpc


def st(sql: str, *params, **named) -> common_pb2.Statement:
    return common_pb2.Statement(sql=sql, params=[to_value(p) for p in params],
                                named_params={k: to_value(v) for k, v in named.items()})


@pytest.fixture
def stub(stack):
    with stack.query_channel() as ch:  # TLS, a full-access bearer token
        yield query_pb2_grpc.QueryServiceStub(ch)


def test_execute_returns_typed_rows(stub):
    resp = stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[
        st("DROP TABLE IF EXISTS g"),
        st("CREATE TABLE g (i INTEGER, r REAL, t TEXT, b BLOB, n)"),
        st("INSERT INTO g VALUES (?1, ?2, ?3, ?4, ?5)", 2**62, 0.25, "héllo", b"\x00\x01", None),
        st("INSERT INTO g VALUES (:i, :r, :t, :b, :n)", i=-1, r=-0.5, t="", b=b"", n=None),
        st("SELECT * FROM g ORDER BY i DESC"),
    ]))
    assert [r.WhichOneof("result") for r in resp.results] == ["ok"] * 5
    insert = resp.results[2].ok
    assert insert.rows_affected == 1 and insert.last_insert_rowid == 1
    sel = resp.results[4].ok
    assert [(c.name, c.decltype) for c in sel.columns] == [
        ("i", "INTEGER"), ("r", "REAL"), ("t", "TEXT"), ("b", "BLOB"), ("n", "")]
    first = [v.WhichOneof("value") for v in sel.rows[0].values]
    assert first == ["integer", "real", "text", "blob", "null"]
    assert sel.rows[0].values[0].integer == 2**62 and sel.rows[0].values[2].text == "héllo"
    assert sel.rows[1].values[3].blob == b""


def test_statement_error_is_data_not_status(stub):
    resp = stub.Execute(query_pb2.ExecuteRequest(statements=[st("SELECT 1"), st("SELECT * FROM nope"), st("SELECT 2")]))
    assert len(resp.results) == 2  # stops at the first error
    err = resp.results[1].error
    assert err.sqlstate == "42P01" and err.sqlite_code == 1 and "nope" in err.message


def test_unknown_database_is_not_found(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.Execute(query_pb2.ExecuteRequest(database="nope", statements=[st("SELECT 1")]))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_session_stream_keeps_a_transaction(stub):
    def batches():
        yield query_pb2.SessionRequest(open=query_pb2.OpenSession(database="main", user="grpc"))
        yield query_pb2.SessionRequest(batch=query_pb2.Batch(id=1, statements=[
            st("DROP TABLE IF EXISTS gs"), st("CREATE TABLE gs (a)")]))
        yield query_pb2.SessionRequest(batch=query_pb2.Batch(id=2, statements=[st("BEGIN"), st("INSERT INTO gs VALUES (1)")]))
        yield query_pb2.SessionRequest(batch=query_pb2.Batch(id=3, statements=[st("SELECT count(*) FROM gs")]))
        yield query_pb2.SessionRequest(batch=query_pb2.Batch(id=4, statements=[st("ROLLBACK")]))
        yield query_pb2.SessionRequest(batch=query_pb2.Batch(id=5, statements=[st("SELECT count(*) FROM gs")]))

    responses = list(stub.Session(batches()))
    assert responses[0].WhichOneof("kind") == "opened"
    results = [r.result for r in responses[1:]]
    assert [r.id for r in results] == [1, 2, 3, 4, 5]
    idle, in_tx = common_pb2.TRANSACTION_STATUS_IDLE, common_pb2.TRANSACTION_STATUS_IN_TRANSACTION
    assert [r.status for r in results] == [idle, in_tx, in_tx, idle, idle]
    assert results[2].results[0].ok.rows[0].values[0].integer == 1
    assert results[4].results[0].ok.rows[0].values[0].integer == 0


def test_health_and_reflection_on_every_service(stack):
    expected = {"scheduler": "sqld.v1.QueryService", "storage": "sqld.v1.Storage", "edge": None,
                "replication": "sqld.v1.Replication", "replica1": "sqld.v1.Storage", "replica2": "sqld.v1.Storage",
                "replica-scheduler": "sqld.v1.QueryService", "replica-edge": None,
                "fdbdouble": "sqld.testing.v1.FdbDouble"}  # the FoundationDB test double, with SQLD_TEST_BACKEND=mvsqlite
    for name, svc in stack.services.items():
        # every service but the plaintext test double is TLS; the admin certificate may check health
        with (stack.channel(name) if svc.role else grpc.insecure_channel(svc.health)) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING
            services = set(ProtoReflectionDescriptorDatabase(ch).get_services())
            assert "grpc.health.v1.Health" in services
            if expected[name]:
                assert expected[name] in services
                assert health.Check(health_pb2.HealthCheckRequest(service=expected[name]), timeout=5).status == \
                    health_pb2.HealthCheckResponse.SERVING
                # reflection serves the full schema, so grpcurl can build requests
                desc = ProtoReflectionDescriptorDatabase(ch).FindFileContainingSymbol(expected[name])
                assert desc.package == expected[name].rpartition(".")[0]  # sqld.v1; sqld.testing.v1: the double


def test_a_session_ends_when_its_token_expires(stack):
    """A stream opened with a token that expires ends with UNAUTHENTICATED when it does, even
    idle inside a transaction, which is rolled back (its write lock freed)."""
    import queue
    import time
    requests: queue.Queue = queue.Queue()

    def feed():
        while (req := requests.get()) is not None:
            yield req

    with stack.query_channel(token=stack.token(ttl=3)) as ch:
        call = query_pb2_grpc.QueryServiceStub(ch).Session(feed(), timeout=60)
        requests.put(query_pb2.SessionRequest(open=query_pb2.OpenSession(database="main", user="grpc")))
        assert next(call).WhichOneof("kind") == "opened"
        requests.put(query_pb2.SessionRequest(batch=query_pb2.Batch(id=1, statements=[
            st("CREATE TABLE IF NOT EXISTS expiring (a)"), st("BEGIN"), st("INSERT INTO expiring VALUES (1)")])))
        assert next(call).result.status == common_pb2.TRANSACTION_STATUS_IN_TRANSACTION
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            next(call)  # idle: nothing more is sent
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and "expired" in err.value.details()
        assert time.monotonic() - started < 10
        requests.put(None)
    with stack.query_channel() as ch:  # the transaction was rolled back and the writer freed
        r = query_pb2_grpc.QueryServiceStub(ch).Execute(query_pb2.ExecuteRequest(database="main", statements=[
            st("INSERT INTO expiring VALUES (2)"), st("SELECT a FROM expiring")]), timeout=10)
        assert [row.values[0].integer for row in r.results[1].ok.rows] == [2]
