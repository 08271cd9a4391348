"""Trust nothing: every gRPC port refuses callers without the right credentials.

Internal ports (storage, replication, replicas, the edges' health ports) need a client
certificate of the deployment CA: without one the TLS handshake fails (the client sees
UNAVAILABLE). A certificate whose role is not in the method's row gets PERMISSION_DENIED.
The schedulers' public QueryService needs a bearer token (UNAUTHENTICATED without one);
a read-only token cannot write (25006, as data); a token for database X cannot open Y.
"""
from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sqld.common import pki, tokens
from sqld.v1 import (
    admin_pb2,
    common_pb2,
    query_pb2,
    query_pb2_grpc,
    replication_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)
from sqld.v1 import replication_pb2 as rpb
from tests.fixtures.stack import ROOT

INTERNAL = ("storage", "replication", "replica1", "replica2", "edge", "replica-edge")


def st(sql: str) -> common_pb2.Statement:
    return common_pb2.Statement(sql=sql)


def check_health(ch: grpc.Channel) -> int:
    return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def refused(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_internal_ports_refuse_callers_without_a_deployment_certificate(stack, tmp_path):
    other = pki.ensure(tmp_path / "other-ca", {"scheduler": "scheduler", "admin": "admin"})
    for name in INTERNAL:
        addr = stack.addr(name)
        with grpc.insecure_channel(addr) as ch:  # plaintext
            assert refused(lambda: check_health(ch)) == grpc.StatusCode.UNAVAILABLE, name
        with grpc.secure_channel(addr, stack.credentials("")) as ch:  # TLS, but no client certificate
            assert refused(lambda: check_health(ch)) == grpc.StatusCode.UNAVAILABLE, name
        # a certificate of another CA, even with the right role and name
        creds = grpc.ssl_channel_credentials((stack.pki_dir / "ca.crt").read_bytes(),
                                             (other / "scheduler.key").read_bytes(),
                                             (other / "scheduler.crt").read_bytes())
        with grpc.secure_channel(addr, creds) as ch:
            assert refused(lambda: check_health(ch)) == grpc.StatusCode.UNAVAILABLE, name
        with stack.channel(name, "admin") as ch:  # the admin certificate may check health
            assert check_health(ch) == health_pb2.HealthCheckResponse.SERVING, name
    # the storage's data and the log's writes are out of reach without a certificate
    with grpc.insecure_channel(stack.addr("storage")) as ch:
        call = storage_pb2_grpc.StorageStub(ch).Connect(
            iter([storage_pb2.ConnectRequest(open=storage_pb2.Open(database="main"))]), timeout=5)
        assert refused(lambda: list(call)) == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(stack.addr("replication")) as ch:
        stub = replication_pb2_grpc.ReplicationStub(ch)
        assert refused(lambda: stub.ResetLog(rpb.ResetLogRequest(database="main"), timeout=5)) == \
            grpc.StatusCode.UNAVAILABLE


def test_roles_decide_what_a_certificate_may_call(own_stack):
    stack = own_stack(replicas=1)  # its own: a probe stream shows up in the log's replica list
    with stack.query_channel() as ch:
        query_pb2_grpc.QueryServiceStub(ch).Execute(query_pb2.ExecuteRequest(
            database="main", statements=[st("CREATE TABLE roles_t (a)"), st("INSERT INTO roles_t VALUES (1)")]))
    def connect(instance: str) -> grpc.StatusCode | None:
        with stack.channel("storage", instance) as ch:
            call = storage_pb2_grpc.StorageStub(ch).Connect(
                iter([storage_pb2.ConnectRequest(open=storage_pb2.Open(database="main"))]), timeout=5)
            try:
                first = next(call)
                call.cancel()
                assert first.WhichOneof("kind") == "opened"
                return None
            except grpc.RpcError as exc:
                return exc.code()

    assert connect("scheduler") is None  # the scheduler is the one caller of storage
    for instance in ("admin", "edge", "replica1", "storage", "replication", "gateway"):
        assert connect(instance) == grpc.StatusCode.PERMISSION_DENIED, instance

    def repl(instance: str, fn) -> grpc.RpcError | None:
        with stack.channel("replication", instance) as ch:
            try:
                fn(replication_pb2_grpc.ReplicationStub(ch))
                return None
            except grpc.RpcError as exc:
                return exc

    append = lambda stub: stub.Append(rpb.AppendRequest(database="main", log_id="forged", page_size=4096),  # noqa: E731
                                      timeout=5)
    reset = lambda stub: stub.ResetLog(rpb.ResetLogRequest(database="main", if_log_id="forged"), timeout=5)  # noqa: E731
    for instance in ("replica1", "scheduler", "edge", "admin", "replica-scheduler"):
        for fn in (append,) if instance == "admin" else (append, reset):  # admin: the way out of a fork
            err = repl(instance, fn)
            assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED, instance
            role = pki.role_of((stack.pki_dir / f"{instance}.crt").read_bytes())
            assert role in err.details() and "sqld.v1.Replication/" in err.details()
    # a replica certificate may follow the log (Hello, then Frames) but not write it
    with stack.channel("replication", "replica1") as ch:
        stub = replication_pb2_grpc.ReplicationStub(ch)
        hello = stub.Hello(rpb.HelloRequest(database="main"), timeout=5)
        frames = stub.Frames(rpb.FramesRequest(database="main", log_id=hello.log_id, from_frame_no=1,
                                               replica_id="role-probe"), timeout=10)
        batch = next(frames)
        assert batch.transactions and batch.transactions[0].frames[0].frame_no == 1
        frames.cancel()
    # Status: the schedulers (pg_stat_replication), admin tools, and replicas (which databases exist)
    for instance, allowed in (("scheduler", True), ("admin", True), ("replica1", True), ("edge", False)):
        err = repl(instance, lambda stub: stub.Status(rpb.StatusRequest(), timeout=5))
        assert (err is None) == allowed, (instance, err)
    # DropLog: the primary (DROP DATABASE) and admin tools only
    for instance in ("replica1", "scheduler", "edge"):
        err = repl(instance, lambda stub: stub.DropLog(rpb.DropLogRequest(database="main"), timeout=5))
        assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED, instance
    # the registry's calls on storage: the scheduler only
    for instance in ("admin", "edge", "replica1"):
        with stack.channel("storage", instance) as ch:
            with pytest.raises(grpc.RpcError) as info:
                storage_pb2_grpc.StorageStub(ch).ListDatabases(admin_pb2.ListDatabasesRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, instance
    # a storage primary certificate cannot stream the log (a replica's job)
    err = repl("storage", lambda stub: next(stub.Frames(rpb.FramesRequest(database="main"), timeout=5)))
    assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_query_service_needs_a_valid_token(stack, tmp_path):
    req = query_pb2.ExecuteRequest(database="main", statements=[st("SELECT 1")])
    with stack.channel("scheduler", "") as ch:  # TLS, no token
        stub = query_pb2_grpc.QueryServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.Execute(req, timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "Bearer" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Session(iter([query_pb2.SessionRequest(open=query_pb2.OpenSession(database="main"))]),
                              timeout=5))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # health and reflection stay open for health checks and `grpcurl list`
        assert check_health(ch) == health_pb2.HealthCheckResponse.SERVING
    foreign = tokens.keygen(tmp_path / "other-keys")
    for bad in (tokens.mint((foreign / "auth.key").read_bytes(), "intruder"),  # another key
                stack.token(ttl=-10),                                          # expired
                stack.token() + "x",                                           # tampered
                "not-a-jwt"):
        with stack.query_channel(token=bad) as ch:
            with pytest.raises(grpc.RpcError) as info:
                query_pb2_grpc.QueryServiceStub(ch).Execute(req, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, bad
    with grpc.insecure_channel(stack.scheduler_addr) as ch:  # plaintext to a TLS port
        assert refused(lambda: query_pb2_grpc.QueryServiceStub(ch).Execute(req, timeout=5)) == \
            grpc.StatusCode.UNAVAILABLE
    with stack.query_channel() as ch:
        assert query_pb2_grpc.QueryServiceStub(ch).Execute(req, timeout=5).results[0].ok.rows[0].values[0].integer == 1


def test_a_read_only_token_reads_and_cannot_write(stack):
    with stack.query_channel() as ch:
        setup = query_pb2_grpc.QueryServiceStub(ch).Execute(query_pb2.ExecuteRequest(database="main", statements=[
            st("DROP TABLE IF EXISTS ro_t"), st("CREATE TABLE ro_t (a INTEGER)"), st("INSERT INTO ro_t VALUES (1)")]))
        assert all(r.HasField("ok") for r in setup.results)
    with stack.query_channel(stack.token(read_only=True)) as ch:
        stub = query_pb2_grpc.QueryServiceStub(ch)
        read = stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[st("SELECT a FROM ro_t")]))
        assert read.results[0].ok.rows[0].values[0].integer == 1
        for sql in ("INSERT INTO ro_t VALUES (2)", "UPDATE ro_t SET a = 5", "DROP TABLE ro_t",
                    "WITH x AS (SELECT 3) INSERT INTO ro_t SELECT * FROM x", "CREATE TABLE ro_new (b)"):
            resp = stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[st(sql)]))
            assert resp.results[0].error.sqlstate == "25006", (sql, resp.results[0])
        # inside a transaction too, and the session stays usable for reads
        responses = list(stub.Session(iter([
            query_pb2.SessionRequest(open=query_pb2.OpenSession(database="main")),
            query_pb2.SessionRequest(batch=query_pb2.Batch(id=1, statements=[st("BEGIN"), st("SELECT count(*) FROM ro_t")])),
            query_pb2.SessionRequest(batch=query_pb2.Batch(id=2, statements=[st("DELETE FROM ro_t")])),
            query_pb2.SessionRequest(batch=query_pb2.Batch(id=3, statements=[st("ROLLBACK")])),
            query_pb2.SessionRequest(batch=query_pb2.Batch(id=4, statements=[st("SELECT count(*) FROM ro_t")])),
        ])))
        results = [r.result for r in responses[1:]]
        assert results[0].results[1].ok.rows[0].values[0].integer == 1
        assert results[1].results[0].error.sqlstate == "25006"
        assert results[3].results[0].ok.rows[0].values[0].integer == 1
    with stack.query_channel() as ch:
        after = query_pb2_grpc.QueryServiceStub(ch).Execute(query_pb2.ExecuteRequest(
            database="main", statements=[st("SELECT count(*), max(a) FROM ro_t")]))
        assert [v.integer for v in after.results[0].ok.rows[0].values] == [1, 1]


def test_a_token_for_one_database_cannot_open_another(stack):
    req = query_pb2.ExecuteRequest(database="main", statements=[st("SELECT 1")])
    with stack.query_channel(stack.token(databases=["other"])) as ch:
        stub = query_pb2_grpc.QueryServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.Execute(req, timeout=5)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "'main'" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:  # the default database is checked as well
            stub.Execute(query_pb2.ExecuteRequest(statements=[st("SELECT 1")]), timeout=5)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with stack.query_channel(stack.token(databases=["main"])) as ch:
        assert query_pb2_grpc.QueryServiceStub(ch).Execute(req, timeout=5).results[0].HasField("ok")
    # the replica site's scheduler checks tokens the same way
    with stack.query_channel(stack.token(databases=["other"]), service="replica-scheduler") as ch:
        with pytest.raises(grpc.RpcError) as info:
            query_pb2_grpc.QueryServiceStub(ch).Execute(req, timeout=5)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with stack.channel("replica-scheduler", "") as ch:
        assert refused(lambda: query_pb2_grpc.QueryServiceStub(ch).Execute(req, timeout=5)) == \
            grpc.StatusCode.UNAUTHENTICATED


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "services")}
    return subprocess.run([sys.executable, "-m", f"sqld.{module}", *args], capture_output=True, text=True, timeout=60, env=env)


def test_services_refuse_to_start_without_tls_or_token_key(stack, tmp_path):
    for module in ("storage", "replication", "scheduler", "edge"):
        out = _run(module, "--listen", "127.0.0.1:1", "--data-dir", str(tmp_path)) if module in ("storage", "replication") \
            else _run(module, "--listen", "127.0.0.1:1")
        assert out.returncode != 0, module
        assert "--grpc-ca" in out.stderr and "--grpc-insecure" in out.stderr, (module, out.stderr)
    p = stack.pki_dir
    tls = ["--grpc-ca", str(p / "ca.crt"), "--grpc-cert", str(p / "scheduler.crt"), "--grpc-key", str(p / "scheduler.key")]
    out = _run("scheduler", "--listen", "127.0.0.1:1", *tls)
    assert out.returncode != 0 and "--auth-public-key" in out.stderr, out.stderr
    out = _run("edge", "--listen", "127.0.0.1:1", *tls)
    assert out.returncode != 0 and "--scheduler-token-file" in out.stderr, out.stderr
    # a certificate without a role (e.g. from another tool) is refused at start
    from tests.fixtures.certs import self_signed
    cert, key = self_signed(tmp_path / "plain")
    out = _run("storage", "--listen", "127.0.0.1:1", "--data-dir", str(tmp_path),
               "--grpc-ca", str(cert), "--grpc-cert", str(cert), "--grpc-key", str(key))
    assert out.returncode != 0 and "role" in out.stderr, out.stderr
