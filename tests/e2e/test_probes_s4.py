"""Attack and robustness probes against what landed with the pg_dump round trip, session
functions, pg_stat_activity and signals, startup options and COPY FROM streaming: each test is a
hostile or careless client that once got a wrong answer, a silent data change, an internal error
or unbounded memory, and now gets PostgreSQL's error while the server keeps serving."""
from __future__ import annotations

import socket
import struct
import time

import grpc
import psycopg
import pytest
from psycopg import errors as pgerr

from sqld.replication.servicer import PUBLIC_SNAPSHOTS
from sqld.v1 import replication_pb2, replication_pb2_grpc
from tests.fixtures.rawpg import Raw, error_fields, frame, query, startup_packet
from tests.fixtures.stack import make_stack


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = make_stack("probes-s4", tmp_path_factory.mktemp("probes-s4"), replicas=1)
    yield s
    s.stop()
    errors = s.log_errors()
    assert not errors, "unexpected ERROR log lines:\n" + "\n".join(errors)


def connect(site, **kw) -> psycopg.Connection:
    return psycopg.connect(site.dsn, autocommit=True, **kw)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --- pg_dump's carried SQLite SQL (DO LANGUAGE sqlite, WITH (sqlite_ddl=...)) ---------------------

def test_carried_sql_is_one_statement(site):
    """A DO block or sqlite_ddl once ran every statement it carried, and the command reported the
    first one's result: a failing second statement was silently lost (its first half committed),
    and in a multi-statement query the later statements got the wrong results. Now one statement
    only (42601), and a query with such a statement runs nothing."""
    with connect(site) as c:
        c.execute("CREATE TABLE carried (n INTEGER)")
        for sql in ["DO LANGUAGE sqlite $$INSERT INTO carried VALUES (1); INSERT INTO nowhere VALUES (1)$$",
                    "CREATE TABLE zz (a) WITH (sqlite_ddl='CREATE TABLE zz (a); INSERT INTO carried VALUES (2)')",
                    "CREATE TABLE zz (a) WITH (sqlite_ddl='INSERT INTO carried VALUES (3)')",
                    "DO LANGUAGE sqlite $$$$"]:
            with pytest.raises(pgerr.SyntaxError):
                c.execute(sql)
        with pytest.raises(pgerr.SyntaxError):  # PostgreSQL parses the whole query first: the INSERT never ran
            c.execute("INSERT INTO carried VALUES (4); DO LANGUAGE sqlite $$SELECT 5; SELECT 6$$; SELECT 7")
        assert c.execute("SELECT count(*) FROM carried").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'zz'").fetchone() == (0,)
        # what pg_dump writes still runs: one table, one trigger (with semicolons in its body)
        c.execute("CREATE TABLE dumped (n) WITH (sqlite_ddl='CREATE TABLE dumped (n INTEGER, m TEXT)')")
        c.execute("DO LANGUAGE sqlite $sqlite$CREATE TRIGGER dumped_t AFTER INSERT ON dumped BEGIN "
                  "UPDATE dumped SET m = 'x' WHERE rowid = new.rowid; INSERT INTO carried VALUES (new.n); END$sqlite$")
        c.execute("INSERT INTO dumped (n) VALUES (9)")
        assert c.execute("SELECT n, m FROM dumped").fetchall() == [(9, "x")]
        assert c.execute("SELECT n FROM carried").fetchall() == [(9,)]


def test_carried_sql_cannot_end_or_open_a_transaction(site):
    """`DO LANGUAGE sqlite $$COMMIT$$` reached SQLite as a write the scheduler did not see as
    transaction control: it committed half of the client's transaction behind the scheduler's
    back (and out of a READ ONLY one). Refused: transaction control is sent as itself."""
    with connect(site) as c:
        c.execute("CREATE TABLE txn_probe (n INTEGER)")
        c.execute("BEGIN")
        c.execute("INSERT INTO txn_probe VALUES (1)")
        for body in ["COMMIT", "END", "ROLLBACK", "BEGIN", "SAVEPOINT s", "RELEASE s"]:
            with pytest.raises(pgerr.SyntaxError, match="transaction control"):
                c.execute(f"DO LANGUAGE sqlite $${body}$$")
            c.execute("ROLLBACK")
            c.execute("BEGIN")
        c.execute("ROLLBACK")
        assert c.execute("SELECT count(*) FROM txn_probe").fetchone() == (0,)
        c.execute("BEGIN READ ONLY")
        with pytest.raises(pgerr.ReadOnlySqlTransaction):
            c.execute("DO LANGUAGE sqlite $$INSERT INTO txn_probe VALUES (2)$$")
        c.execute("ROLLBACK")
        assert c.execute("SELECT count(*) FROM txn_probe").fetchone() == (0,)


# --- session values and pg_backend_pid() ------------------------------------------------------------

def test_session_marker_spelled_in_a_string_is_data(site):
    """The edge binds session values (current_user, pg_backend_pid(), ...) by replacing markers
    in the SQL just before it leaves; a string or comment that spelled a marker was replaced too
    (data changed, or a syntax error). So was `pg_backend_pid()` inside a string in a batch that
    reads pg_stat_activity."""
    texts = ["sqld_session_pid()", "sqld_session_user()", "a sqld_session_database() b", "pg_backend_pid()",
             "sqld_server_version()"]
    with connect(site, user="o'brien") as c:
        c.execute("CREATE TABLE IF NOT EXISTS marker_text (t TEXT)")
        for t in texts:
            c.execute(f"INSERT INTO marker_text VALUES ('{t}')")
        c.execute("INSERT INTO marker_text VALUES ('pg_backend_pid() ' || (SELECT count(*) FROM pg_stat_activity))")
        got = [r[0] for r in c.execute("SELECT t FROM marker_text").fetchall()]
        assert got[:len(texts)] == texts
        assert got[-1].startswith("pg_backend_pid() ")
        row = c.execute("SELECT 'sqld_session_user()', current_user /* sqld_session_pid() */, "
                        "\"x\" FROM (SELECT 1 AS \"x\")").fetchone()
        assert row == ("sqld_session_user()", "o'brien", 1)


# --- signals ---------------------------------------------------------------------------------------

def test_signal_with_a_pid_out_of_range(site):
    """pg_cancel_backend(99999999999) closed the connection with an internal error (the pid did
    not fit the request's int32). No session has such a pid: false with a WARNING."""
    with connect(site) as c:
        notices: list[str] = []
        c.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        row = c.execute("SELECT pg_cancel_backend(99999999999), pg_terminate_backend(-99999999999), "
                        "pg_cancel_backend(NULL), pg_cancel_backend(0)").fetchone()
        assert row == (False, False, None, False)
        assert any("99999999999" in n for n in notices)
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_cancel_request_with_a_wrong_key_or_zero_cancels_nothing(site):
    """A CancelRequest for another session's pid with a wrong key (or 0, which the edge does not
    pass on to the scheduler) must not cancel it."""
    with connect(site) as busy:
        pid = busy.execute("SELECT pg_backend_pid()").fetchone()[0]
        busy.execute("CREATE TABLE IF NOT EXISTS cancel_probe (n INTEGER)")
        for key in (0, 1, -1, 12345):
            s = socket.create_connection(("127.0.0.1", site.ports.pg))
            s.sendall(struct.pack("!iiii", 16, 80877102, pid, key))
            s.close()
        time.sleep(0.5)
        busy.execute("INSERT INTO cancel_probe VALUES (1)")
        assert busy.execute("SELECT count(*) FROM cancel_probe").fetchone() == (1,)


# --- startup options and settings -------------------------------------------------------------------

@pytest.mark.parametrize("options", ["-c statement_timeout=5\\", "-c 'statement_timeout=5", '-c "x', "\\",
                                     "-c sqld.read_at='1", "-c sqld.sqlite_wire=on\\"])
def test_hostile_startup_options_get_fatal_not_internal_error(site, options):
    """The options parser of time travel and SQLite wire used shlex, which raises on a trailing
    backslash or an unbalanced quote: the connection failed with XX000. They now read `options`
    as PostgreSQL does (guc.split_options): the answer is PostgreSQL's FATAL, or a session."""
    raw = Raw(site.ports.pg)
    raw.send(startup_packet(user="postgres", database="main", options=options))
    msgs = []
    while (msg := raw.message()) is not None:
        msgs.append(msg)
        if msg[0] in (b"Z", b"E"):
            break
    raw.close()
    assert msgs and msgs[-1][0] in (b"Z", b"E"), msgs
    if msgs[-1][0] == b"E":
        err = error_fields(msgs[-1][1])
        assert err["S"] == "FATAL" and err["C"] != "XX000", err
    with connect(site) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_scheduler_settings_are_checked_at_the_edge(site):
    """SET of a setting the scheduler owns went to it unchecked against pg_settings' bounds
    (idle_in_transaction_session_timeout = 999999999999 was accepted); 22023 now, as for every
    other setting. PostgreSQL's boolean spellings of synchronous_commit still work."""
    with connect(site) as c:
        with pytest.raises(pgerr.InvalidParameterValue):
            c.execute("SET idle_in_transaction_session_timeout = '999999999999'")
        with pytest.raises(pgerr.InvalidParameterValue):
            c.execute("SET sqld.max_staleness_ms = '-1'")
        c.execute("SET synchronous_commit = true")
        assert c.execute("SHOW synchronous_commit").fetchone() == ("on",)
        c.execute("SET idle_in_transaction_session_timeout = '5s'")
        assert c.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("5s",)


# --- COPY FROM ---------------------------------------------------------------------------------------

def _copy_raw(site, sql: str, first: bytes, rest: bytes, count: int) -> list[tuple[bytes, bytes]]:
    raw = Raw(site.ports.pg, timeout=60)
    raw.login()
    raw.send(query(sql))
    assert raw.message()[0] == b"G"
    raw.send(frame(b"d", first))
    for _ in range(count):
        raw.send(frame(b"d", rest))
    raw.send(frame(b"c", b""))
    msgs = raw.until_ready()
    raw.close()
    return msgs


@pytest.mark.parametrize("sql,first", [
    ("COPY big_line FROM STDIN", b"x"),                                 # one line of 100 MiB, no newline
    ("COPY big_line FROM STDIN (FORMAT csv)", b'1,"never closed\n'),   # an odd quote count
    ("COPY big_line FROM STDIN (FORMAT csv, ESCAPE '\\')", b'1,"a\\"\n'),  # the quote escaped: still open
])
def test_copy_row_without_end_is_refused_not_buffered(site, sql, first):
    """COPY FROM cuts its batches at a row's end; input with none (a line of 100 MB, a CSV quote
    never closed) was held in memory without bound, and each new message rescanned all of it.
    Past MAX_ROW_BYTES (64 MiB) it fails with 54000; the rest of the input is read and dropped."""
    with connect(site) as c:
        c.execute("CREATE TABLE IF NOT EXISTS big_line (a TEXT, b TEXT)")
    edge = site.procs["edge"].pid
    before = rss_kib(edge)
    rest = b"x" * (1 << 20) if first == b"x" else b"y\n" * (1 << 19)
    msgs = _copy_raw(site, sql, first, rest, 100)
    errors = [error_fields(body) for kind, body in msgs if kind == b"E"]
    assert errors and errors[0]["C"] == "54000", errors
    assert rss_kib(edge) - before < 200 * 1024, "the edge kept the input"
    with connect(site) as c:
        assert c.execute("SELECT count(*) FROM big_line").fetchone() == (0,)


def test_copy_fail_midway_through_batches_rolls_back(site):
    """CopyFail after batches were already sent (the COPY opened its own transaction): nothing
    stays, and the next writer is not blocked."""
    with connect(site) as c:
        c.execute("CREATE TABLE IF NOT EXISTS copy_fail (a TEXT, b TEXT)")
    wide = (b"r\t" + b"v" * 4000 + b"\n") * 262  # about 1 MiB, 262 rows
    raw = Raw(site.ports.pg, timeout=60)
    raw.login()
    raw.send(query("COPY copy_fail FROM STDIN"))
    assert raw.message()[0] == b"G"
    for _ in range(10):
        raw.send(frame(b"d", wide))
    raw.send(frame(b"f", b"client gave up\x00"))
    msgs = raw.until_ready()
    errors = [error_fields(body) for kind, body in msgs if kind == b"E"]
    assert errors and errors[0]["C"] == "57014", errors
    raw.close()
    with connect(site, options="-c statement_timeout=10000") as c:
        c.execute("INSERT INTO copy_fail VALUES ('after', 'fail')")
        assert c.execute("SELECT count(*) FROM copy_fail").fetchone() == (1,)


def test_copy_disconnect_midway_releases_the_writer(site):
    """A client that vanishes in the middle of a multi-batch COPY: its transaction is rolled back
    and the next writer proceeds at once."""
    with connect(site) as c:
        c.execute("CREATE TABLE IF NOT EXISTS copy_gone (a TEXT, b TEXT)")
    wide = (b"r\t" + b"v" * 4000 + b"\n") * 262
    raw = Raw(site.ports.pg, timeout=60)
    raw.login()
    raw.send(query("COPY copy_gone FROM STDIN"))
    assert raw.message()[0] == b"G"
    for _ in range(6):
        raw.send(frame(b"d", wide))
    time.sleep(1)
    raw.close()
    start = time.monotonic()
    with connect(site, options="-c statement_timeout=20000") as c:
        c.execute("INSERT INTO copy_gone VALUES ('after', 'gone')")
        assert time.monotonic() - start < 10
        assert c.execute("SELECT count(*) FROM copy_gone").fetchone() == (1,)


# --- the replication service's public port (embedded replicas) -------------------------------------

def test_public_port_snapshots_are_current_and_bounded(site):
    """A Snapshot copies the database to a file while holding the lock the primary's Append
    waits for; on the public port a token holder could ask for any number at once (disk, and
    stalled commits) and for a past point (rows deleted since). Now: the current database only,
    PUBLIC_SNAPSHOTS at once, RESOURCE_EXHAUSTED beyond."""
    with connect(site) as c:  # bigger than the streams' flow-control windows: a stream not read stays open
        c.execute("CREATE TABLE IF NOT EXISTS bulk (b BLOB)")
        c.execute("INSERT INTO bulk SELECT randomblob(1000000) FROM (WITH RECURSIVE n(i) AS "
                  "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) SELECT i FROM n)")
    addr = f"127.0.0.1:{site.ports.replication_public}"
    request = replication_pb2.SnapshotRequest(database="main")
    with grpc.secure_channel(addr, site.credentials("", site.token(read_only=True, databases=["other"]))) as ch:
        with pytest.raises(grpc.RpcError) as err:
            next(replication_pb2_grpc.ReplicationStub(ch).Snapshot(request, timeout=10))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with grpc.secure_channel(addr, site.credentials("", site.token(read_only=True, databases=["main"])),
                             options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        stub = replication_pb2_grpc.ReplicationStub(ch)
        for past in (replication_pb2.SnapshotRequest(database="main", upto_frame_no=1),
                     replication_pb2.SnapshotRequest(database="main", as_of_unix_ms=int(time.time() * 1000))):
            with pytest.raises(grpc.RpcError) as err:
                next(stub.Snapshot(past, timeout=10))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Streams left unread: one whose whole copy fit in the transport's buffers ends and frees
        # its place (flow-control windows grow on loopback), so ask until the limit answers.
        held: list = []
        refused = None
        for _ in range(PUBLIC_SNAPSHOTS * 4):
            stream = stub.Snapshot(request, timeout=120)
            try:
                assert next(stream).pages
            except grpc.RpcError as exc:
                refused = exc
                break
            held.append(stream)
        assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, len(held)
        assert len(held) >= PUBLIC_SNAPSHOTS
        with connect(site, options="-c statement_timeout=10000") as c:  # the primary commits meanwhile
            c.execute("INSERT INTO bulk VALUES (x'00')")
        for stream in held:
            stream.cancel()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert next(stub.Snapshot(request, timeout=30)).pages
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
                time.sleep(0.2)


# --- CREATE / DROP DATABASE, metrics --------------------------------------------------------------

def test_concurrent_create_database_has_one_winner(site):
    """Four sessions CREATE the same database at once (extended protocol): exactly one wins, the
    others get 42P04."""
    import threading
    outcomes: list[str] = []

    def create() -> None:
        with connect(site) as c:
            try:
                c.execute("CREATE DATABASE racing_db", prepare=True)
                outcomes.append("ok")
            except psycopg.Error as exc:
                outcomes.append(exc.sqlstate or "?")
    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["42P04", "42P04", "42P04", "ok"]


def test_drop_database_while_a_copy_runs(site):
    """DROP DATABASE while a multi-batch COPY into it is open: 55006; WITH (FORCE) ends the COPY's
    session, and a database made again under the name is empty."""
    with connect(site) as c:
        c.execute("CREATE DATABASE copy_drop")
    dsn = site.dsn.replace("dbname=main", "dbname=copy_drop")
    with psycopg.connect(dsn, autocommit=True) as x:
        x.execute("CREATE TABLE t (a TEXT, b TEXT)")
    raw = Raw(site.ports.pg, timeout=60)
    raw.login(database="copy_drop")
    raw.send(query("COPY t FROM STDIN"))
    assert raw.message()[0] == b"G"
    wide = (b"r\t" + b"v" * 4000 + b"\n") * 262
    for _ in range(6):
        raw.send(frame(b"d", wide))
    time.sleep(1)
    with connect(site) as c:
        with pytest.raises(pgerr.ObjectInUse):
            c.execute("DROP DATABASE copy_drop")
        c.execute("DROP DATABASE copy_drop WITH (FORCE)")
        raw.close()
        c.execute("CREATE DATABASE copy_drop")
    with psycopg.connect(dsn, autocommit=True) as y:
        assert y.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_metrics_never_carry_sql_or_data(site):
    """/metrics labels are fixed sets (statement kind, SQLSTATE class, rpc method) and database
    names: never a statement's text, a table's name or a value."""
    import urllib.request
    with connect(site) as c:
        c.execute("CREATE TABLE IF NOT EXISTS secret_table_x9 (v TEXT)")
        c.execute("INSERT INTO secret_table_x9 VALUES ('secret_value_x9') /* secret_comment_x9 */")
        with pytest.raises(psycopg.Error):
            c.execute("SELECT secret_column_x9 FROM secret_table_x9")
    for port in (site.ports.edge_metrics, site.ports.scheduler_metrics, site.ports.storage_metrics,
                 site.ports.replication_metrics):
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert "x9" not in text


def test_session_admin_needs_a_full_access_token(site):
    """SessionAdmin's callers say whom they act for (as_user, superuser): only a token that may
    write to every database may call it, so a read-only or per-database token, an expired one or
    none cannot list others' queries or signal their sessions."""
    from sqld.v1 import activity_pb2, activity_pb2_grpc
    with connect(site) as victim:
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
        for token, code in [(None, grpc.StatusCode.UNAUTHENTICATED),
                            (site.token(ttl=-10), grpc.StatusCode.UNAUTHENTICATED),
                            (site.token(read_only=True), grpc.StatusCode.PERMISSION_DENIED),
                            (site.token(databases=["main"]), grpc.StatusCode.PERMISSION_DENIED)]:
            with grpc.secure_channel(site.addr("scheduler"), site.credentials("", token)) as ch:
                stub = activity_pb2_grpc.SessionAdminStub(ch)
                for method, request in [(stub.ListSessions, activity_pb2.ListSessionsRequest(superuser=True)),
                                        (stub.SignalSession, activity_pb2.SignalSessionRequest(
                                            pid=pid, signal=activity_pb2.SIGNAL_TERMINATE, superuser=True))]:
                    with pytest.raises(grpc.RpcError) as err:
                        method(request, timeout=5)
                    assert err.value.code() == code
        assert victim.execute("SELECT 1").fetchone() == (1,)
