"""Operating the site like PostgreSQL (issue #16 item 2), with the real processes and clients:
pg_stat_activity across the site, pg_cancel_backend / pg_terminate_backend and who may use them,
pg_settings and SHOW ALL, startup options (PGOPTIONS), and DROP DATABASE while another edge's
session uses the database (issue #15)."""
from __future__ import annotations

import dataclasses
import os
import shutil
import struct
import subprocess
import threading
import time
import uuid

import grpc
import psycopg
import pytest

from sqld.v1 import activity_pb2, activity_pb2_grpc, query_pb2, query_pb2_grpc
from tests.fixtures import rawpg
from tests.fixtures.ports import free_port
from tests.fixtures.stack import Stack

PSQL = shutil.which("psql")
ENDLESS = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"


def until(check, timeout: float = 15.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def activity(conn: psycopg.Connection, where: str = "true", *params) -> list[dict]:
    cur = conn.execute(f"SELECT pid, usename, datname, application_name, client_addr, client_port, state, query, "
                       f"query_start, backend_start, xact_start, state_change, wait_event_type, wait_event, "
                       f"backend_type FROM pg_stat_activity WHERE {where} ORDER BY pid", params)
    names = [d.name for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def background(fn):
    """Run fn in a thread; its outcome (result or exception) in box[0] once done."""
    box: list = []

    def run():
        try:
            box.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box.append(exc)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_a_session_waiting_for_the_write_token_is_listed_and_cancelled(own_stack):
    stack = own_stack()
    with psycopg.connect(stack.dsn, autocommit=True, application_name="watcher") as watcher:
        watcher.execute("CREATE TABLE t (a INTEGER)")
        holder = psycopg.connect(stack.dsn, application_name="holder")
        holder.execute("INSERT INTO t VALUES (1)")  # an open write transaction: holds the token
        waiter = psycopg.connect(stack.dsn, autocommit=True, application_name="waiter")
        waiter_pid = waiter.info.backend_pid
        thread, box = background(lambda: waiter.execute("INSERT INTO t VALUES (2)"))

        row = until(lambda: [r for r in activity(watcher, "application_name = %s", "waiter")
                             if r["wait_event"] == "WriteToken"], what="the waiter to wait for the write token")[0]
        assert row["pid"] == waiter_pid  # the pid the client got in BackendKeyData
        assert row["state"] == "active" and row["wait_event_type"] == "Lock"
        assert row["query"] == "INSERT INTO t VALUES (2)"
        assert row["usename"] == "postgres" and row["datname"] == "main"
        assert row["client_addr"] == "127.0.0.1" and row["client_port"] > 0
        assert row["backend_type"] == "client backend"
        assert row["query_start"] is not None and row["backend_start"] <= row["query_start"]

        hold = activity(watcher, "application_name = 'holder'")[0]
        assert hold["state"] == "idle in transaction" and hold["xact_start"] is not None
        me = activity(watcher, "pid = pg_backend_pid()")[0]
        assert me["state"] == "active" and "pg_stat_activity" in me["query"] and me["wait_event"] is None
        assert me["pid"] == watcher.info.backend_pid
        assert watcher.execute("SELECT a.datid = d.oid FROM pg_stat_activity a JOIN pg_database d "
                               "ON d.datname = a.datname WHERE a.pid = pg_backend_pid()").fetchone() == (True,)

        assert watcher.execute("SELECT pg_cancel_backend(%s)", (waiter_pid,)).fetchone() == (True,)
        thread.join(10)
        assert isinstance(box[0], psycopg.errors.QueryCanceled), box
        assert box[0].sqlstate == "57014"
        holder.commit()
        waiter.execute("INSERT INTO t VALUES (3)")  # the session goes on
        assert watcher.execute("SELECT a FROM t ORDER BY a").fetchall() == [(1,), (3,)]
        idle = activity(watcher, "pid = %s", waiter_pid)[0]
        assert idle["state"] == "idle" and idle["wait_event"] == "ClientRead"

        # a pid that is no session: false and a warning, as in PostgreSQL
        assert watcher.execute("SELECT pg_cancel_backend(99999999)").fetchone() == (False,)
        holder.close()
        waiter.close()


def test_terminate_ends_a_session_even_mid_statement(own_stack):
    stack = own_stack()
    with psycopg.connect(stack.dsn, autocommit=True) as admin:
        victim = psycopg.connect(stack.dsn, autocommit=True, application_name="victim")
        thread, box = background(lambda: victim.execute(ENDLESS))
        until(lambda: activity(admin, "application_name = 'victim' AND state = 'active'"), what="the victim to run")
        started = time.monotonic()
        rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = 'victim'").fetchall()
        assert rows == [(True,)]
        thread.join(10)
        assert time.monotonic() - started < 5
        assert isinstance(box[0], psycopg.errors.AdminShutdown), box
        assert "terminating connection due to administrator command" in str(box[0])
        assert victim.closed or victim.broken
        until(lambda: not activity(admin, "application_name = 'victim'"), what="the session to leave the view")


def test_only_superusers_signal_other_users_sessions(own_stack):
    stack = own_stack()
    dsn_as = stack.dsn.replace("user=postgres", "user=alice")
    with psycopg.connect(stack.dsn, autocommit=True, application_name="su") as su, \
            psycopg.connect(dsn_as, autocommit=True, application_name="alice1") as alice, \
            psycopg.connect(dsn_as, autocommit=True, application_name="alice2") as alice2:
        assert alice.execute("SHOW is_superuser").fetchone() == ("off",)
        assert su.execute("SHOW is_superuser").fetchone() == ("on",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            alice.execute("SELECT pg_terminate_backend(%s)", (su.info.backend_pid,))
        assert info.value.sqlstate == "42501"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            alice.execute("SELECT pg_cancel_backend(%s)", (su.info.backend_pid,))
        # a user sees other users' sessions, not their queries
        seen = {r["application_name"]: r["query"] for r in activity(alice)}
        assert seen["su"] == "<insufficient privilege>"
        assert "pg_stat_activity" in seen["alice1"]
        # her own sessions she may signal; a superuser any
        assert alice.execute("SELECT pg_cancel_backend(%s)", (alice2.info.backend_pid,)).fetchone() == (True,)
        assert su.execute("SELECT pg_terminate_backend(%s)", (alice2.info.backend_pid,)).fetchone() == (True,)
        with pytest.raises(psycopg.OperationalError):
            alice2.execute("SELECT 1")


def test_pgoptions_apply_and_bad_ones_are_refused(own_stack):
    stack = own_stack()
    with psycopg.connect(stack.dsn, options="-c statement_timeout=1234 --work-mem=8MB -c DateStyle=ISO,DMY "
                                            r"-c application_name=with\ space") as c:
        assert c.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
        assert c.execute("SHOW work_mem").fetchone() == ("8MB",)
        assert c.execute("SHOW DateStyle").fetchone() == ("ISO, DMY",)
        assert c.execute("SHOW application_name").fetchone() == ("with space",)
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            c.execute(ENDLESS)
        assert 1.0 < time.monotonic() - started < 6
        c.rollback()
        c.execute("SET statement_timeout = 0")
        c.execute("RESET statement_timeout")  # back to the value the connection asked for
        assert c.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
        assert c.execute("SELECT setting, unit, source FROM pg_settings WHERE name = 'statement_timeout'"
                         ).fetchone() == ("1234", "ms", "client")
    env = {**os.environ, "PGOPTIONS": "-c statement_timeout=1234", "PGCONNECT_TIMEOUT": "10"}
    if PSQL:
        out = subprocess.run([PSQL, "-h", "127.0.0.1", "-p", str(stack.ports.pg), "-U", "postgres", "-X", "-At",
                              "-c", "SHOW statement_timeout", "main"], capture_output=True, text=True, env=env,
                             timeout=30)
        assert out.stdout.strip() == "1234ms", out.stderr
    for options, sqlstate, text in [
        ("-c no_such_setting=1", "42704", 'unrecognized configuration parameter "no_such_setting"'),
        ("-c statement_timeout=soon", "22023", 'invalid value for parameter "statement_timeout"'),
        ("-c work_mem=1", "22023", "outside the valid range"),
        ("-c server_version=9", "55P02", 'parameter "server_version" cannot be changed'),
        ("-x", "42601", "invalid command-line argument for server process: -x"),
    ]:
        raw = rawpg.Raw(stack.ports.pg)
        raw.send(rawpg.startup_packet(user="postgres", database="main", options=options))
        errors = [rawpg.error_fields(body) for kind, body in raw.until_closed() if kind == b"E"]
        raw.close()
        assert len(errors) == 1, (options, errors)
        assert errors[0]["S"] == "FATAL" and errors[0]["C"] == sqlstate, (options, errors)
        assert text in errors[0]["M"], (options, errors)
    with psycopg.connect(stack.dsn, autocommit=True) as c:  # the edge goes on serving
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_show_all_and_pg_settings_match_show(own_stack):
    stack = own_stack()
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("SET work_mem = '64MB'")
        c.execute("SET TimeZone = 'Europe/Paris'")
        c.execute("SET statement_timeout = '2min'")
        c.execute("SET application_name = 'settings-test'")
        show_all = {name: setting for name, setting, _ in c.execute("SHOW ALL").fetchall()}
        for name in ["statement_timeout", "idle_in_transaction_session_timeout", "application_name", "DateStyle",
                     "TimeZone", "client_encoding", "search_path", "work_mem", "transaction_read_only",
                     "default_transaction_read_only", "server_version", "standard_conforming_strings"]:
            shown = c.execute(f"SHOW {name}").fetchone()[0]
            assert show_all[name] == shown, name
            assert c.execute("SELECT current_setting(%s)", (name,)).fetchone() == (shown,)
            setting, unit = c.execute("SELECT setting, unit FROM pg_settings WHERE name = %s", (name,)).fetchone()
            if unit == "ms":  # pg_settings gives the base unit, SHOW the largest whole unit
                assert int(setting) == {"0": 0, "2min": 120000}[shown], name
            elif unit == "kB":
                assert int(setting) == {"64MB": 65536}[shown], name
            else:
                assert setting == shown, name
        assert show_all["work_mem"] == "64MB" and show_all["statement_timeout"] == "2min"
        assert show_all["TimeZone"] == "Europe/Paris"
        assert c.execute("SHOW transaction_read_only").fetchone() == ("off",)
        c.execute("BEGIN READ ONLY")
        assert c.execute("SHOW transaction_read_only").fetchone() == ("on",)
        assert c.execute("SELECT setting FROM pg_settings WHERE name = 'transaction_read_only'").fetchone() == ("on",)
        c.execute("COMMIT")
        assert c.execute("SHOW transaction_read_only").fetchone() == ("off",)
        assert c.execute("SELECT set_config('work_mem', '1GB', false)").fetchone() == ("1GB",)
        assert c.execute("SHOW work_mem").fetchone() == ("1GB",)
        with pytest.raises(psycopg.errors.UndefinedObject):
            c.execute("SET no_such_setting = 1")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            c.execute("SET work_mem = 'lots'")
        # the scheduler knows the new application_name
        assert activity(c, "pid = %s", c.info.backend_pid)[0]["application_name"] == "settings-test"


def _second_edge(stack: Stack) -> Stack:
    """Another edge of the same scheduler (a site may have several)."""
    edge = stack.services["edge"]
    pg2, health2 = free_port(), free_port()
    argv = list(edge.argv)
    argv[argv.index("--listen") + 1] = f"127.0.0.1:{pg2}"
    argv[argv.index("--health-listen") + 1] = f"127.0.0.1:{health2}"
    if "--metrics-listen" in argv:
        argv[argv.index("--metrics-listen") + 1] = f"127.0.0.1:{free_port()}"
    stack.services["edge2"] = dataclasses.replace(edge, name="edge2", argv=argv, health=f"127.0.0.1:{health2}")
    stack.start("edge2")
    stack.ports = dataclasses.replace(stack.ports, pg_replica=pg2)  # the second edge's pg port
    return stack


def test_drop_database_sees_every_edge_of_the_site(own_stack):
    stack = _second_edge(own_stack())
    name = f"busy_{uuid.uuid4().hex[:8]}"
    other_edge = stack.replica_dsn.replace("dbname=main", f"dbname={name}")
    with psycopg.connect(stack.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        user = psycopg.connect(other_edge, autocommit=True, application_name="elsewhere")
        user.execute("CREATE TABLE x (a INTEGER)")
        rows = activity(admin, "datname = %s", name)
        assert [r["application_name"] for r in rows] == ["elsewhere"]  # listed from the other edge
        with pytest.raises(psycopg.errors.ObjectInUse) as info:
            admin.execute(f"DROP DATABASE {name}")
        assert info.value.sqlstate == "55006" and "1 other session" in str(info.value)
        # a QueryService session directly on the scheduler counts too
        creds = stack.credentials("", stack.token())
        with grpc.secure_channel(stack.addr("scheduler"), creds) as ch:
            stub = activity_pb2_grpc.SessionAdminStub(ch)
            listed = stub.ListSessions(activity_pb2.ListSessionsRequest(), timeout=10)
            assert any(s.application_name == "elsewhere" and s.database == name for s in listed.sessions)
            query = query_pb2_grpc.QueryServiceStub(ch)
            done = threading.Event()

            def requests():
                yield query_pb2.SessionRequest(open=query_pb2.OpenSession(database="main", application_name="grpc"))
                done.wait(10)  # the stream stays open: the session lives
            call = query.Session(requests(), timeout=10)
            opened = next(call)
            assert opened.opened.pid > 0
            rows = activity(admin, "application_name = 'grpc'")
            assert rows and rows[0]["backend_type"] == "grpc session" and rows[0]["usename"] == "test"
            done.set()
            call.cancel()
        # a CancelRequest that reaches the other edge still cancels (clients behind a load balancer)
        raw = rawpg.Raw(stack.ports.pg)
        raw.send(rawpg.startup_packet(user="postgres", database="main"))
        key_data = [body for kind, body in raw.until_ready() if kind == b"K"][0]
        pid, secret = struct.unpack("!ii", key_data)
        raw.send(rawpg.query(ENDLESS))
        until(lambda: activity(admin, "pid = %s AND state = 'active'", pid), what="the raw session to run")
        for key in (secret + 1, secret):  # a wrong key is ignored, as PostgreSQL does
            cancel = rawpg.Raw(stack.ports.pg_replica)
            cancel.send(struct.pack("!iiii", 16, 80877102, pid, key))
            assert cancel.until_closed() == []
            cancel.close()
            if key != secret:
                time.sleep(0.5)
                assert activity(admin, "pid = %s AND state = 'active'", pid)
        answer = raw.until_ready()
        errors = [rawpg.error_fields(body) for kind, body in answer if kind == b"E"]
        assert errors and errors[0]["C"] == "57014", answer
        raw.close()

        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        with pytest.raises(psycopg.OperationalError) as ended:
            user.execute("SELECT 1")
        assert "terminating connection due to administrator command" in str(ended.value)
        assert not activity(admin, "datname = %s", name)
        user.close()


def test_idle_in_transaction_session_timeout_is_the_sessions_own(own_stack):
    """A session's idle_in_transaction_session_timeout (here from PGOPTIONS) ends its idle
    transaction before the scheduler's own limit would, as PostgreSQL's setting does."""
    stack = own_stack()
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE idle (a INTEGER)")
    idler = psycopg.connect(stack.dsn, options="-c idle_in_transaction_session_timeout=500")
    assert idler.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("500ms",)
    idler.execute("INSERT INTO idle VALUES (1)")
    time.sleep(1.5)
    with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
        idler.execute("SELECT 1")
    idler.close()
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("SET idle_in_transaction_session_timeout = '1s'")
        assert c.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1s",)
        assert c.execute("SELECT count(*) FROM idle").fetchone() == (0,)


def test_reset_reaches_the_schedulers_settings(own_stack):
    stack = own_stack()
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE r (a INTEGER)")
    with psycopg.connect(stack.dsn) as c:
        c.execute("SET idle_in_transaction_session_timeout = 300")
        c.execute("RESET ALL")  # back to the scheduler's limit (60 s)
        c.commit()
        c.execute("INSERT INTO r VALUES (1)")
        time.sleep(1.0)
        c.execute("INSERT INTO r VALUES (2)")  # still in the transaction: no 300 ms limit any more
        c.commit()
        assert c.execute("SELECT count(*) FROM r").fetchone() == (2,)


def test_asyncpg_reads_the_views_and_signals_with_parameters(own_stack):
    """asyncpg: extended protocol, binary results, parameters typed by the server."""
    import asyncio

    import asyncpg
    stack = own_stack()

    async def main():
        conn = await asyncpg.connect(host="127.0.0.1", port=stack.ports.pg, user="postgres", database="main",
                                     server_settings={"application_name": "apg"})
        other = await asyncpg.connect(host="127.0.0.1", port=stack.ports.pg, user="postgres", database="main")
        try:
            # (a catalog column gives no type to a parameter compared with it: cast it, as here)
            rows = await conn.fetch("SELECT pid, application_name, state FROM pg_stat_activity "
                                    "WHERE pid = $1::int4", conn.get_server_pid())
            assert [tuple(r) for r in rows] == [(conn.get_server_pid(), "apg", "active")]
            assert await conn.fetchval("SELECT pg_cancel_backend($1)", 99999) is False
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", other.get_server_pid()) is True
            assert await conn.fetchval("SELECT setting FROM pg_settings WHERE name = $1", "work_mem") == "4096"
        finally:
            await conn.close()
            other.terminate()
    asyncio.run(main())
