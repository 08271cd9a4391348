"""Metrics, logs and settings of real processes: every service's /metrics parses and its
counters move when queries run; log lines are key=value with each process named; the edge's
log_connections, log_disconnections and log_min_duration_statement; a bad setting stops a service."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sqld.v1 import common_pb2, query_pb2, query_pb2_grpc
from tests.fixtures.logcheck import parse_logfmt

ROOT = Path(__file__).resolve().parents[2]


def scrape(addr: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `addr`'s /metrics, parsed by prometheus-client's own parser."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items()
               if n == name and all(dict(lab).get(k) == want for k, want in labels.items()))


def wait_for(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_metrics_of_every_service_move_and_logs_name_each_process(own_stack):
    edge_logs = ["--log-connections", "--log-disconnections", "--log-min-duration-statement", "0"]
    s = own_stack(replicas=2, extra_args={"edge": edge_logs})
    metrics = {name: svc.metrics for name, svc in s.services.items() if svc.metrics}
    assert set(metrics) == {"replication", "storage", "replica1", "replica2", "scheduler", "edge",
                            "replica-scheduler", "replica-edge"}
    before = {name: scrape(addr) for name, addr in metrics.items()}
    for name, samples in before.items():  # the default process collector in every process
        assert total(samples, "process_cpu_seconds_total") > 0, name
        assert total(samples, "process_resident_memory_bytes") > 0, name

    with psycopg.connect(s.dsn, autocommit=True, application_name="obs") as conn:
        conn.execute("CREATE TABLE obs (a integer)")
        for i in range(5):
            conn.execute("INSERT INTO obs VALUES (%s)", (i,))
        assert conn.execute("SELECT count(*) FROM obs").fetchone() == (5,)
        conn.execute("UPDATE obs SET a = a + 1 WHERE a = 0")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
        conn.execute("SELECT 'two\nlines', 'quote \"q\"'")
    # a unary gRPC call, and one refused for want of a token
    with s.query_channel() as channel:
        query_pb2_grpc.QueryServiceStub(channel).Execute(query_pb2.ExecuteRequest(
            database="main", statements=[common_pb2.Statement(sql="SELECT 1")]), timeout=10)
    with s.channel("scheduler", "") as channel, pytest.raises(grpc.RpcError):
        query_pb2_grpc.QueryServiceStub(channel).Execute(query_pb2.ExecuteRequest(
            database="main", statements=[common_pb2.Statement(sql="SELECT 1")]), timeout=10)

    def moved(name: str, sample: str, by: float = 1, **labels: str) -> bool:
        return total(scrape(metrics[name]), sample, **labels) - total(before[name], sample, **labels) >= by

    count = "sqld_edge_statement_duration_seconds_count"
    assert moved("edge", count, 5, kind="insert")
    assert moved("edge", count, 2, kind="select") and moved("edge", count, 1, kind="update")
    assert moved("edge", count, 1, kind="ddl")
    assert moved("edge", "sqld_edge_errors_total", 1, sqlstate_class="42")
    assert moved("edge", "sqld_edge_connections_total") and moved("edge", "sqld_edge_bytes_sent_total", 100)
    assert moved("scheduler", "sqld_scheduler_commits_total", 7)
    execute = "/sqld.v1.QueryService/Execute"
    assert moved("scheduler", "sqld_grpc_server_requests_total", 2, rpc=execute)
    assert moved("scheduler", "sqld_grpc_server_errors_total", 1, rpc=execute, code="UNAUTHENTICATED")
    assert moved("scheduler", "sqld_grpc_server_handling_seconds_count", 1, rpc=execute)
    assert moved("storage", "sqld_storage_commits_logged_total", 7)
    assert moved("storage", "sqld_storage_frames_logged_total", 7)
    assert moved("replication", "sqld_replication_frames_appended_total", 7, db="main")
    assert moved("replication", "sqld_replication_bytes_appended_total", 7 * 4096, db="main")
    for replica in ("replica1", "replica2"):
        assert wait_for(lambda r=replica: moved(r, "sqld_storage_frames_received_total", 7)), replica
    assert wait_for(lambda: moved("replication", "sqld_replication_frames_sent_total", 14, db="main"))
    families = {f.name: f.type for f in text_string_to_metric_families(
        urllib.request.urlopen(f"http://{metrics['scheduler']}/metrics", timeout=10).read().decode())}
    assert families["sqld_scheduler_commits"] == "counter" and families["sqld_scheduler_sessions"] == "gauge"
    assert families["sqld_scheduler_write_token_wait_seconds"] == "histogram"

    # logs: every line key=value, each process named
    def lines(name: str) -> list[dict[str, str]]:
        text = (s.log_dir / f"{name}.log").read_text()
        return [parse_logfmt(line) for line in text.splitlines() if line.startswith("ts=")]

    for name, key, role in [("storage", "role", "primary"), ("replica1", "role", "replica1"),
                            ("replica2", "role", "replica2"), ("edge", "site", "primary"),
                            ("replica-edge", "site", "replica"), ("scheduler", "site", "primary"),
                            ("replica-scheduler", "site", "replica")]:
        got = lines(name)
        assert got and all(f[key] == role for f in got), name
    assert any(f["msg"] == "database open" and f["db"] == "main" for f in lines("storage"))

    def edge_lines(msg: str) -> list[dict[str, str]]:
        return [f for f in lines("edge") if f["msg"] == msg]

    assert any(f["user"] == "postgres" and f["application_name"] == "obs"
               for f in edge_lines("connection authorized"))
    assert edge_lines("connection received")
    assert wait_for(lambda: edge_lines("disconnection"))
    assert float(edge_lines("disconnection")[-1]["session_time"]) > 0
    durations = edge_lines("duration")
    assert any(f["statement"] == "SELECT 'two\nlines', 'quote \"q\"'" for f in durations)
    assert all(float(f["duration_ms"]) >= 0 for f in durations)
    # the replica site's edge was not asked to log connections or durations
    assert not [f for f in lines("replica-edge") if f["msg"] in ("connection received", "duration")]
    # log_min_duration_statement per session: a superuser may SET it, another user may not (42501)
    with psycopg.connect(s.replica_dsn, autocommit=True) as c:
        c.execute("SET log_min_duration_statement = 0")
        c.execute("SELECT 'logged for this session'")
    with psycopg.connect(s.replica_dsn.replace("user=postgres", "user=bob"), autocommit=True) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SET log_min_duration_statement = 0")
    assert wait_for(lambda: any("logged for this session" in f.get("statement", "") for f in lines("replica-edge")
                                if f["msg"] == "duration"))


@pytest.mark.parametrize("module, args, env, named", [
    ("edge", [], {"SQLD_EDGE_TLS_REQUIRED": "ture"}, "SQLD_EDGE_TLS_REQUIRED"),
    ("edge", ["--startup-timeout", "abc"], {}, "--startup-timeout"),
    ("scheduler", ["--idle-in-transaction-timeout", "abc"], {}, "--idle-in-transaction-timeout"),
    ("storage", [], {"SQLD_STORAGE_THREADS": "many"}, "SQLD_STORAGE_THREADS"),
    ("replication", ["--log-format", "yaml"], {}, "--log-format"),
    ("launcher", [], {"SQLD_LAUNCHER_REPLICAS": "7"}, "SQLD_LAUNCHER_REPLICAS"),
])
def test_a_bad_setting_stops_the_service_naming_it(module, args, env, named):
    out = subprocess.run([sys.executable, "-m", f"sqld.{module}", *args], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT / "services"), **env})
    assert out.returncode == 2, out.stderr
    assert named in out.stderr and "Traceback" not in out.stderr, out.stderr
