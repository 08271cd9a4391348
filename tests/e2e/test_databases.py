"""Databases as objects (issue #15), with the real processes: CREATE / DROP DATABASE over
pg-wire (psql, psycopg), the DatabaseAdmin gRPC API, the `postgres` maintenance database,
replication of a database created at runtime, forks (CREATE DATABASE ... TEMPLATE), names."""
from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import psycopg
import pytest

from sqld.v1 import admin_pb2, admin_pb2_grpc, common_pb2, query_pb2, query_pb2_grpc
from tests.e2e.test_replication import dbhash, integrity
from tests.fixtures.stack import ROOT

PSQL = shutil.which("psql")
MVSQLITE = os.environ.get("SQLD_TEST_BACKEND") == "mvsqlite"
sqlite_only = pytest.mark.skipif(MVSQLITE, reason="checks the sqlite backend's files")


def check_integrity(stack, name: str) -> str:
    """integrity_check of a database: its file (sqlite), or through a session (mvsqlite)."""
    if not MVSQLITE:
        return integrity(stack.data_dir / f"{name}.db")
    with psycopg.connect(dsn(stack, name), autocommit=True) as c:
        return c.execute("PRAGMA integrity_check").fetchone()[0]


def backup_file(stack, name: str, path) -> str:
    """`name` as a SQLite file at `path` (the DatabaseAdmin's Backup), for sqlite3_dbhash."""
    with stack.query_channel() as ch:
        chunks = list(admin_pb2_grpc.DatabaseAdminStub(ch).Backup(admin_pb2.BackupRequest(name=name), timeout=120))
    assert not any(c.HasField("error") for c in chunks), chunks[0]
    path.write_bytes(b"".join(c.data for c in chunks))
    return str(path)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def dsn(stack, dbname: str | None, replica: bool = False) -> str:
    port = stack.ports.pg_replica if replica else stack.ports.pg
    return f"host=127.0.0.1 port={port} user=postgres connect_timeout=10" + (f" dbname={dbname}" if dbname else "")


def psql(stack, *args: str, database: str | None = "main", input_text: str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    assert PSQL, "psql is not installed: apt-get install postgresql-client"
    return subprocess.run(
        [PSQL, "-h", "127.0.0.1", "-p", str(stack.ports.pg), "-U", "postgres", "-X", "-v", "VERBOSITY=verbose",
         *args, *([database] if database else [])],
        input=input_text, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10", **(env or {})})


def error_of(conn: psycopg.Connection, sql: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql)
    return info.value


def until(check, timeout: float = 20.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
            if got:
                return got
        except psycopg.Error:
            pass
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.1)


def test_postgres_database_and_no_database_name(stack):
    """`psql -h 127.0.0.1 -U postgres` (no database: it asks for `postgres`) and `psql -l` connect."""
    out = psql(stack, "-c", "SELECT current_database()", database=None)
    assert out.returncode == 0, out.stderr
    assert "postgres" in out.stdout
    out = psql(stack, "-l", "-A", database=None)
    assert out.returncode == 0, out.stderr
    names = {line.split("|")[0] for line in out.stdout.splitlines()}
    assert {"main", "postgres"} <= names, out.stdout
    with psycopg.connect(dsn(stack, None), autocommit=True) as c:  # libpq: dbname defaults to the user
        assert c.execute("SELECT current_database()").fetchone() == ("postgres",)
        assert c.execute("SELECT 1 + 1").fetchone() == (2,)
    with psycopg.connect(stack.dsn, autocommit=True) as c:  # main stays the documented default
        assert c.execute("SELECT current_database()").fetchone() == ("main",)


def test_psql_create_connect_list_and_drop(stack):
    name = unique("psqldb")
    script = f"""
CREATE DATABASE {name};
\\c {name}
CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO t VALUES (1, 'one'), (2, 'two');
SELECT count(*) AS n FROM t;
\\l
"""
    out = psql(stack, "-A", input_text=script)
    assert out.returncode == 0, out.stderr
    assert "CREATE DATABASE" in out.stdout
    assert f'You are now connected to database "{name}"' in out.stdout
    assert "n\n2\n(1 row)" in out.stdout
    listed = {line.split("|")[0] for line in out.stdout.splitlines()}
    assert {name, "main", "postgres"} <= listed, out.stdout
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        rows = {r[0] for r in c.execute("SELECT datname FROM pg_database")}
        assert {name, "main", "postgres"} <= rows
        err = error_of(c, f"CREATE DATABASE {name}")
        assert err.sqlstate == "42P04", err
    # a session on it: DROP is refused with 55006, WITH (FORCE) ends that session
    holder = psycopg.connect(dsn(stack, name), autocommit=True)
    try:
        assert holder.execute("SELECT v FROM t WHERE id = 2").fetchone() == ("two",)
        out = psql(stack, "-c", f"DROP DATABASE {name}")
        assert out.returncode != 0 and "ERROR:  55006:" in out.stderr, out.stderr
        assert holder.execute("SELECT count(*) FROM t").fetchone() == (2,)  # still there, still served
        out = psql(stack, "-c", f"DROP DATABASE {name} WITH (FORCE)")
        assert out.returncode == 0 and "DROP DATABASE" in out.stdout, out.stderr
        with pytest.raises(psycopg.OperationalError) as ended:
            holder.execute("SELECT 1")
        assert ended.value.sqlstate in ("57P01", None), ended.value  # None: the server hung up after the FATAL
    finally:
        holder.close()
    assert not (stack.data_dir / f"{name}.db").exists()
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        assert name not in {r[0] for r in c.execute("SELECT datname FROM pg_database")}
        assert error_of(c, f"DROP DATABASE {name}").sqlstate == "3D000"
        c.execute(f"DROP DATABASE IF EXISTS {name}")  # a notice, no error
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(dsn(stack, name))
    assert "does not exist" in str(refused.value)


def test_create_and_drop_over_the_extended_protocol(stack):
    """Parse/Bind/Execute of CREATE / DROP DATABASE: psycopg with prepare=True, and asyncpg
    (always extended); inside a transaction it is 25001 there too."""
    import asyncio

    import asyncpg
    name = unique("ext")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}", prepare=True)
        assert name in {r[0] for r in c.execute("SELECT datname FROM pg_database")}
        assert error_of(c, f"CREATE DATABASE {name}").sqlstate == "42P04"
        with psycopg.connect(dsn(stack, name), autocommit=True) as d:
            d.execute("CREATE TABLE e (x)")
            d.execute("INSERT INTO e VALUES (%s)", (7,), prepare=True)
        c.execute(f"DROP DATABASE {name}", prepare=True)
        with pytest.raises(psycopg.Error) as gone:
            c.execute(f"DROP DATABASE {name}", prepare=True)
        assert gone.value.sqlstate == "3D000"
        c.execute(f"DROP DATABASE IF EXISTS {name}", prepare=True)
    with psycopg.connect(stack.dsn) as c:  # not autocommit: psycopg sends BEGIN first
        with pytest.raises(psycopg.Error) as inside:
            c.execute(f"CREATE DATABASE {name}", prepare=True)
        assert inside.value.sqlstate == "25001"

    async def with_asyncpg() -> list[str]:
        conn = await asyncpg.connect(host="127.0.0.1", port=stack.ports.pg, user="postgres", database="main")
        try:
            await conn.fetch(f"CREATE DATABASE {name}_a")  # fetch: Parse, Describe, Flush, Bind, Execute
            with pytest.raises(asyncpg.PostgresError) as dup:
                await conn.fetch(f"CREATE DATABASE {name}_a")
            assert dup.value.sqlstate == "42P04"
            stmt = await conn.prepare(f"DROP DATABASE {name}_a")
            await stmt.fetch()
            return [r[0] for r in await conn.fetch("SELECT datname FROM pg_database")]
        finally:
            await conn.close()
    names = asyncio.run(with_asyncpg())
    assert "main" in names and f"{name}_a" not in names


def test_drop_and_create_rules(stack):
    name = unique("rules")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
        with c.transaction():
            assert error_of(c, f"DROP DATABASE {name}").sqlstate == "25001"
        assert error_of(c, "DROP DATABASE main").sqlstate == "55006"  # the session's own database
        assert error_of(c, "CREATE DATABASE x_enc ENCODING 'LATIN1'").sqlstate == "0A000"
        c.execute(f'CREATE DATABASE "{name}_Q" TEMPLATE template0')  # quoted: the case stays
        with psycopg.connect(dsn(stack, f"{name}_Q"), autocommit=True) as q:
            assert q.execute("SELECT count(*) FROM sqlite_schema").fetchone() == (0,)
        c.execute(f'DROP DATABASE "{name}_Q"')
        c.execute(f"DROP DATABASE {name}")


BAD_NAMES = ['"a/b"', '"../x"', '".."', '"a..b"', '".hidden"', '"-x"', '"a\\b"', '"' + "n" * 64 + '"',
             '"a b"', '"é"', '""']


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_names_are_refused_and_nothing_is_created(stack, bad):
    before = sorted(p.name for p in stack.data_dir.rglob("*"))
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        err = error_of(c, f"CREATE DATABASE {bad}")
        assert err.sqlstate in ("42602", "42622", "42601"), err
        assert "database name" in str(err) or "syntax" in str(err) or "zero-length" in str(err), err
        err = error_of(c, f"CREATE DATABASE ok_{uuid.uuid4().hex[:6]} TEMPLATE {bad}")
        assert err.sqlstate in ("42602", "42622", "42601"), err
    after = sorted(p.name for p in stack.data_dir.rglob("*"))
    # other tests' databases (unique(): prefix_8hex) come and go on the replica site meanwhile:
    # a replica learns of a DROP within DISCOVER_EVERY, so its files of them are not this test's
    others = re.compile(r"^\.?[a-z_]+_[0-9a-f]{8}(_[A-Za-z0-9_]+)?\.db")
    assert [n for n in after if n not in before and not n.endswith((".log", "-wal", "-shm"))
            and not others.match(n)] == []


def test_nul_in_a_name_is_refused_by_the_admin_api(stack):
    with stack.query_channel() as ch:
        admin = admin_pb2_grpc.DatabaseAdminStub(ch)
        for bad in ("a\x00b", "a/b", "..", "x" * 64):
            r = admin.CreateDatabase(admin_pb2.CreateDatabaseRequest(name=bad), timeout=30)
            assert r.error.sqlstate in ("42602", "42622"), (bad, r)


def test_admin_grpc_create_list_drop(stack):
    name = unique("grpcdb")
    with stack.query_channel() as ch:
        admin = admin_pb2_grpc.DatabaseAdminStub(ch)
        assert not admin.CreateDatabase(admin_pb2.CreateDatabaseRequest(name=name), timeout=30).HasField("error")
        again = admin.CreateDatabase(admin_pb2.CreateDatabaseRequest(name=name), timeout=30)
        assert again.error.sqlstate == "42P04"
        listed = [d.name for d in admin.ListDatabases(admin_pb2.ListDatabasesRequest(), timeout=30).databases]
        assert {name, "main", "postgres"} <= set(listed) and listed == sorted(listed)
        with psycopg.connect(dsn(stack, name), autocommit=True) as c:
            c.execute("CREATE TABLE g (x)")
            r = admin.DropDatabase(admin_pb2.DropDatabaseRequest(name=name), timeout=30)
            assert r.error.sqlstate == "55006", r
            r = admin.DropDatabase(admin_pb2.DropDatabaseRequest(name=name, force=True), timeout=30)
            assert not r.HasField("error") and r.sessions_ended == 1, r
        missing = admin.DropDatabase(admin_pb2.DropDatabaseRequest(name=name), timeout=30)
        assert missing.error.sqlstate == "3D000"
        skipped = admin.DropDatabase(admin_pb2.DropDatabaseRequest(name=name, if_exists=True), timeout=30)
        assert not skipped.HasField("error") and "skipping" in skipped.notices[0].message
    # a token limited to some databases, or read-only, may not manage databases
    for token in (stack.token(databases=["main"]), stack.token(read_only=True)):
        with stack.query_channel(token=token) as ch:
            with pytest.raises(grpc.RpcError) as denied:
                admin_pb2_grpc.DatabaseAdminStub(ch).ListDatabases(admin_pb2.ListDatabasesRequest(), timeout=30)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_database_created_at_runtime_is_replicated(stack, tmp_path):
    name = unique("repl")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(dsn(stack, name), autocommit=True) as w:
        w.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, v TEXT)")
        w.execute("INSERT INTO r VALUES (1, 'primary write')")
    for replica in ("replica1", "replica2"):  # both replica storages follow it
        until(lambda replica=replica: (stack.data_dir / replica / f"{name}.db").exists(), what=f"{replica} opens {name}")
    # the replica site, reading on replica1: the write is there within the usual lag
    with psycopg.connect(dsn(stack, name, replica=True), autocommit=True) as r:
        r.execute("SET sqld.consistency = 'bounded_staleness'")
        assert until(lambda: r.execute("SELECT v FROM r WHERE id = 1").fetchone(),
                     what="the write on the replica site") == ("primary write",)
        assert name in {row[0] for row in r.execute("SELECT datname FROM pg_database")}
    primary = stack.data_dir / f"{name}.db" if not MVSQLITE else backup_file(stack, name, tmp_path / "primary.db")
    until(lambda: dbhash(stack.data_dir / "replica1" / f"{name}.db") == dbhash(primary),
          what="replica1 equals the primary")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE {name}")
    for replica in ("replica1", "replica2"):
        until(lambda replica=replica: not (stack.data_dir / replica / f"{name}.db").exists(),
              what=f"{replica} drops {name}")


def test_fork_is_a_consistent_snapshot_while_the_source_takes_writes(stack):
    source, forks = unique("src"), []
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {source}")
    with psycopg.connect(dsn(stack, source), autocommit=True) as w:
        w.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, pad TEXT)")
        w.execute("CREATE TABLE b (id INTEGER PRIMARY KEY)")
        series = "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 3000) "
        w.execute(series + "INSERT INTO a SELECT n, randomblob(200) FROM s")
        w.execute(series + "INSERT INTO b SELECT n FROM s")
    stop = threading.Event()
    written = [3000]

    def writer() -> None:  # each transaction adds one row to a and to b: a fork must see equal counts
        with psycopg.connect(dsn(stack, source), autocommit=True) as w:
            while not stop.is_set():
                n = written[0] + 1
                with w.transaction():
                    w.execute("INSERT INTO a VALUES (%s, randomblob(200))", (n,))
                    w.execute("INSERT INTO b VALUES (%s)", (n,))
                written[0] = n

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with psycopg.connect(stack.dsn, autocommit=True) as c:
            for i in range(3):
                fork = f"{source}_f{i}"
                c.execute(f"CREATE DATABASE {fork} TEMPLATE {source}")
                forks.append(fork)
                time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    seen = []
    for fork in forks:
        with psycopg.connect(dsn(stack, fork), autocommit=True) as f:
            a, b = f.execute("SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)").fetchone()
            assert a == b and a >= 3000, (fork, a, b)
            assert f.execute("SELECT max(id) FROM a").fetchone() == (a,)
            seen.append(a)
            f.execute("INSERT INTO a VALUES (-1, 'fork only')")  # a fork is a database of its own
        assert check_integrity(stack, fork) == "ok"
    assert seen == sorted(seen) and seen[-1] <= written[0]
    with psycopg.connect(dsn(stack, source), autocommit=True) as w:
        assert w.execute("SELECT count(*) FROM a WHERE id = -1").fetchone() == (0,)
        assert w.execute("SELECT count(*) FROM a").fetchone() == (written[0],)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        assert error_of(c, f"CREATE DATABASE {source}_x TEMPLATE nowhere_{source}").sqlstate == "3D000"
        for fork in [*forks, source]:
            c.execute(f"DROP DATABASE {fork}")


def test_a_hundred_databases_by_a_hundred_concurrent_clients(stack):
    prefix = unique("many")

    def client(i: int) -> int:
        name = f"{prefix}_{i}"
        with psycopg.connect(stack.dsn, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        with psycopg.connect(dsn(stack, name), autocommit=True) as c:
            c.execute("CREATE TABLE t (i INTEGER)")
            for k in range(5):
                c.execute("INSERT INTO t VALUES (%s)", (i * 100 + k,))
            return c.execute("SELECT sum(i) FROM t").fetchone()[0]

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        sums = list(pool.map(client, range(100)))
    assert sums == [sum(i * 100 + k for k in range(5)) for i in range(100)]
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        names = {r[0] for r in c.execute("SELECT datname FROM pg_database")}
        assert {f"{prefix}_{i}" for i in range(100)} <= names
        for i in range(100):
            c.execute(f"DROP DATABASE {prefix}_{i}")


@pytest.mark.skipif(not MVSQLITE, reason="the mvsqlite backend's Backup")
def test_mvsqlite_backs_up(stack, tmp_path):
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS mv_backup (a)")
        c.execute("INSERT INTO mv_backup VALUES (42)")
    copy = backup_file(stack, "main", tmp_path / "main.db")
    assert integrity(copy) == "ok"
    import apsw
    conn = apsw.Connection(str(copy))
    try:
        assert (42,) in conn.execute("SELECT a FROM mv_backup").fetchall()
    finally:
        conn.close()


def _execute(stack, database: str, sql: str) -> int:
    """One autocommit statement over the query API; the frame number of its commit."""
    with stack.query_channel() as ch:
        r = query_pb2_grpc.QueryServiceStub(ch).Execute(query_pb2.ExecuteRequest(
            database=database, statements=[common_pb2.Statement(sql=sql)]), timeout=30)
    assert not r.results[0].HasField("error"), r
    return r.frame_no


def fourteen_commits(stack, prefix: str) -> tuple[str, list[int], datetime.datetime]:
    """A new database with 14 single-row commits (after its CREATE TABLE), a copy `<name>_at12`
    taken after the 12th and the moment between the 12th and 13th; (name, frames, moment)."""
    src = unique(prefix)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {src}")
    _execute(stack, src, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    frames = [_execute(stack, src, f"INSERT INTO t VALUES ({i}, 'row {i}')") for i in range(1, 13)]
    with psycopg.connect(stack.dsn, autocommit=True) as c:  # a copy taken at that moment
        c.execute(f"CREATE DATABASE {src}_at12 TEMPLATE {src}")
    moment = datetime.datetime.now(datetime.UTC)
    time.sleep(0.05)
    frames += [_execute(stack, src, f"INSERT INTO t VALUES ({i}, 'row {i}')") for i in (13, 14)]
    return src, frames, moment


@contextlib.contextmanager
def writes_going_on(stack, src: str) -> Iterator[None]:
    """A thread inserting rows into `src`.t (ids from 100) for as long as the block runs."""
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(dsn(stack, src), autocommit=True) as w:
            n = 100
            while not stop.is_set():
                w.execute("INSERT INTO t VALUES (%s, 'later')", (n,))
                n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@sqlite_only
def test_point_in_time_restore_between_two_commits_while_the_source_takes_writes(stack):
    src, frames, moment = fourteen_commits(stack, "pitr")
    assert frames[-1] >= 10  # AS_OF_FRAME below takes a number of several digits
    with writes_going_on(stack, src), psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {src}_by_time TEMPLATE {src} AS_OF_TIME '{moment.isoformat()}'")
        c.execute(f"CREATE DATABASE {src}_by_frame TEMPLATE {src} AS_OF_FRAME {frames[11]}")
        c.execute(f"CREATE DATABASE {src}_at1 TEMPLATE {src} AS_OF_FRAME {frames[0]}")
        assert error_of(c, f"CREATE DATABASE {src}_x AS_OF_FRAME 3").sqlstate == "22023"  # no template
    expected = dbhash(stack.data_dir / f"{src}_at12.db")
    for restored in (f"{src}_by_time", f"{src}_by_frame"):
        with psycopg.connect(dsn(stack, restored), autocommit=True) as r:
            assert r.execute("SELECT id FROM t ORDER BY id").fetchall() == [(i,) for i in range(1, 13)]
        assert dbhash(stack.data_dir / f"{restored}.db") == expected
    with psycopg.connect(dsn(stack, f"{src}_at1"), autocommit=True) as r:
        assert r.execute("SELECT id FROM t").fetchall() == [(1,)]
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        for name in (src, f"{src}_at12", f"{src}_by_time", f"{src}_by_frame", f"{src}_at1"):
            c.execute(f"DROP DATABASE {name}")


def test_other_databases_answer_while_a_big_restore_runs(stack):
    """A point-in-time restore writes its pages on a worker thread: point selects on another
    database complete while it runs (by order of completion, no timing threshold)."""
    src = unique("bigpitr")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {src}")
    with psycopg.connect(dsn(stack, src), autocommit=True) as w:
        w.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, pad BLOB)")
        for k in range(6):
            w.execute(f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 5000) "
                      f"INSERT INTO big SELECT {k} * 5000 + n, randomblob(1000) FROM s")
    frame = _execute(stack, src, "INSERT INTO big VALUES (-1, x'00')")
    time.sleep(0.05)
    as_of = f"AS_OF_TIME '{datetime.datetime.now(datetime.UTC).isoformat()}'" if MVSQLITE else f"AS_OF_FRAME {frame}"
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, v TEXT)")
        c.execute("INSERT OR REPLACE INTO probe VALUES (1, 'here')")
    done = threading.Event()
    answered_during: list[int] = []

    def restore() -> None:
        try:
            with psycopg.connect(stack.dsn, autocommit=True) as c:
                c.execute(f"CREATE DATABASE {src}_r TEMPLATE {src} {as_of}")
        finally:
            done.set()

    thread = threading.Thread(target=restore)
    with psycopg.connect(stack.dsn, autocommit=True) as r:
        r.execute("SELECT 1")
        thread.start()
        while not done.is_set():
            assert r.execute("SELECT v FROM probe WHERE id = 1").fetchone() == ("here",)
            if not done.is_set():
                answered_during.append(1)
    thread.join()
    assert answered_during, "no point select on main completed while the restore ran"
    with psycopg.connect(dsn(stack, f"{src}_r"), autocommit=True) as r:
        assert r.execute("SELECT count(*), min(id) FROM big").fetchone() == (30_001, -1)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE {src}_r")
        c.execute(f"DROP DATABASE {src}")


@pytest.mark.skipif(not MVSQLITE, reason="the page store's versions (the sqlite backend restores from the log)")
def test_mvsqlite_restore_to_a_time_or_frame_between_two_commits_while_the_source_takes_writes(stack, tmp_path):
    """By time and by frame number (the capturer notes each version's last frame): exactly
    the rows up to the 12th commit, the dbhash of a copy taken at that moment."""
    src, frames, moment = fourteen_commits(stack, "mvpitr")
    assert frames[12] - frames[11] >= 2, frames  # so frames[12] - 1 falls inside the 13th commit
    with writes_going_on(stack, src), psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {src}_by_time TEMPLATE {src} AS_OF_TIME '{moment.isoformat()}'")
        c.execute(f"CREATE DATABASE {src}_by_frame TEMPLATE {src} AS_OF_FRAME {frames[11]}")
        c.execute(f"CREATE DATABASE {src}_mid13 TEMPLATE {src} AS_OF_FRAME {frames[12] - 1}")
        c.execute(f"CREATE DATABASE {src}_at1 TEMPLATE {src} AS_OF_FRAME {frames[0]}")
        err = error_of(c, f"CREATE DATABASE {src}_x TEMPLATE {src} AS_OF_FRAME 1")  # inside CREATE TABLE's frames
        assert err.sqlstate == "22003" and "retention" in str(err), err
        err = error_of(c, f"CREATE DATABASE {src}_y TEMPLATE {src} AS_OF_TIME '2001-01-01T00:00:00Z'")
        assert err.sqlstate == "22003" and "retention" in str(err), err
    with psycopg.connect(dsn(stack, f"{src}_by_time"), autocommit=True) as r:
        assert r.execute("SELECT id FROM t ORDER BY id").fetchall() == [(i,) for i in range(1, 13)]
        r.execute("INSERT INTO t VALUES (-1, 'restored copy takes writes')")
    with psycopg.connect(dsn(stack, f"{src}_at1"), autocommit=True) as r:
        assert r.execute("SELECT id FROM t").fetchall() == [(1,)]
    expected = dbhash(backup_file(stack, f"{src}_at12", tmp_path / "at12.db"))
    assert expected != ""
    for restored in (f"{src}_by_frame", f"{src}_mid13"):
        with psycopg.connect(dsn(stack, restored), autocommit=True) as r:
            assert r.execute("SELECT id FROM t ORDER BY id").fetchall() == [(i,) for i in range(1, 13)]
        assert dbhash(backup_file(stack, restored, tmp_path / f"{restored}.db")) == expected
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {src}_again TEMPLATE {src} AS_OF_TIME '{moment.isoformat()}'")
    assert dbhash(backup_file(stack, f"{src}_again", tmp_path / "again.db")) == expected
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        for name in (src, f"{src}_at12", f"{src}_by_time", f"{src}_again", f"{src}_by_frame", f"{src}_mid13",
                     f"{src}_at1"):
            c.execute(f"DROP DATABASE {name}")


def test_mvsqlite_databases_are_shared_by_every_storage_process(own_stack):
    """Two sites whose storage processes share one page store: a database created through one
    is served at once by the other; a fork and a restore likewise; a drop removes it from both
    and clears its keys; a restore older than the retention window answers 22003."""
    from sqld.storage.mvsqlite import catalog
    from sqld.storage.mvsqlite.kv import strinc
    from sqld.storage.mvsqlite.setup import connect_kv
    retention = ["--fdb-retention-seconds", "4", "--fdb-gc-interval", "0.5"]
    a = own_stack(backend_name="mvsqlite", replicas=1, extra_args={"storage": retention})  # B feeds A's log too
    b = own_stack(share_with=a, extra_args={"storage": retention})
    name = unique("shared")
    with psycopg.connect(a.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(dsn(b, name), autocommit=True) as w:  # at once: B looks the name up on a miss
        w.execute("CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT)")
        w.execute("INSERT INTO s VALUES (1, 'one'), (2, 'two'), (3, 'three')")
    before_four = datetime.datetime.now(datetime.UTC)
    time.sleep(0.05)
    with psycopg.connect(dsn(a, name), autocommit=True) as r:
        assert r.execute("SELECT count(*) FROM s").fetchone() == (3,)
        r.execute("INSERT INTO s VALUES (4, 'four')")
    with psycopg.connect(b.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}_fork TEMPLATE {name}")
        c.execute(f"CREATE DATABASE {name}_was TEMPLATE {name} AS_OF_TIME '{before_four.isoformat()}'")
        assert error_of(c, f"CREATE DATABASE {name}").sqlstate == "42P04"  # made by A, refused by B
    with psycopg.connect(dsn(a, f"{name}_fork"), autocommit=True) as f:
        assert f.execute("SELECT count(*) FROM s").fetchone() == (4,)
    with psycopg.connect(dsn(a, f"{name}_was"), autocommit=True) as f:
        assert f.execute("SELECT max(id) FROM s").fetchone() == (3,)
    with psycopg.connect(a.dsn, autocommit=True) as c:
        assert {name, f"{name}_fork", f"{name}_was"} <= {r[0] for r in c.execute("SELECT datname FROM pg_database")}
    kv = connect_kv("", f"127.0.0.1:{a.ports.fdb_double}") if not os.environ.get("FDB_CLUSTER_FILE") \
        else connect_kv(os.environ["FDB_CLUSTER_FILE"], "")
    try:
        ns = catalog.lookup(kv, a.prefix, name)
        assert ns is not None

        def keys_left() -> int:
            return len(kv.transaction().get_ranges([(ns, strinc(ns), 0, False)], True)[0])
        assert keys_left() > 0
        with psycopg.connect(a.dsn, autocommit=True) as c:
            c.execute(f"DROP DATABASE {name}")
        assert keys_left() == 0 and catalog.lookup(kv, a.prefix, name) is None
    finally:
        kv.close()

    def gone_on_b() -> bool:  # B's scheduler may still have a pool for it: the statement then fails
        try:
            with psycopg.connect(dsn(b, name), autocommit=True) as c:
                c.execute("SELECT count(*) FROM s")
        except psycopg.Error as exc:
            return "does not exist" in str(exc)
        return False
    until(gone_on_b, what="B no longer serves the dropped database")
    with psycopg.connect(b.dsn, autocommit=True) as c:
        assert name not in {r[0] for r in c.execute("SELECT datname FROM pg_database")}
        old_frame = _execute(a, f"{name}_fork", "INSERT INTO s VALUES (10, 'ten')")
        last_frame = _execute(a, f"{name}_fork", "INSERT INTO s VALUES (11, 'eleven')")
        time.sleep(5)  # the retention window (4 s) passes over before_four and the insert of 10
        err = error_of(c, f"CREATE DATABASE {name}_late TEMPLATE {name}_fork AS_OF_TIME '{before_four.isoformat()}'")
        assert err.sqlstate == "22003", err
        err = error_of(c, f"CREATE DATABASE {name}_late TEMPLATE {name}_fork AS_OF_FRAME {old_frame}")
        assert err.sqlstate == "22003" and "retention" in str(err), err
        # the insert of 11 is the last commit: the state as of it is still the window's edge
        c.execute(f"CREATE DATABASE {name}_edge TEMPLATE {name}_fork AS_OF_FRAME {last_frame}")
    with psycopg.connect(dsn(a, f"{name}_edge"), autocommit=True) as f:
        assert f.execute("SELECT max(id), count(*) FROM s").fetchone() == (11, 6)
    with psycopg.connect(b.dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE {name}_edge")
        for db in (f"{name}_fork", f"{name}_was"):
            c.execute(f"DROP DATABASE {db}")


def _backup_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "services")}
    return subprocess.run([sys.executable, "-m", "sqld.backup", *args], capture_output=True, text=True, timeout=120, env=env)


@sqlite_only
def test_backup_wipe_restore_keeps_every_acknowledged_commit(own_stack, tmp_path):
    stack = own_stack(replicas=2)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE DATABASE accounts")
        c.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, v TEXT)")
    acknowledged = []
    with psycopg.connect(dsn(stack, "accounts"), autocommit=True) as w:
        w.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v BLOB)")
        for i in range(200):
            w.execute("INSERT INTO a VALUES (%s, randomblob(300))", (i,))
            acknowledged.append(i)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("INSERT INTO m VALUES (1, 'main row')")
    token = tmp_path / "token"
    token.write_text(stack.token())
    backup = tmp_path / "backup"
    out = _backup_cli("save", "--scheduler", stack.scheduler_addr, "--to", str(backup),
                      "--ca", str(stack.pki_dir / "ca.crt"), "--token-file", str(token))
    assert out.returncode == 0, out.stderr
    assert {"accounts.db", "main.db", "postgres.db", "manifest.json"} <= {p.name for p in backup.iterdir()}
    hashes = {name: dbhash(stack.data_dir / f"{name}.db") for name in ("accounts", "main")}
    stack.stop()
    for entry in stack.data_dir.iterdir():  # every data folder: storage, replication, replicas (not the PKI)
        if entry.name != "pki":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    out = _backup_cli("restore", "--from", str(backup), "--data-dir", str(stack.data_dir))
    assert out.returncode == 0, out.stderr
    again = _backup_cli("restore", "--from", str(backup), "--data-dir", str(stack.data_dir))
    assert again.returncode != 0 and "empty deployment" in again.stderr
    stack.start()
    assert {name: dbhash(stack.data_dir / f"{name}.db") for name in hashes} == hashes
    with psycopg.connect(dsn(stack, "accounts"), autocommit=True) as r:
        assert [row[0] for row in r.execute("SELECT id FROM a ORDER BY id")] == acknowledged
        r.execute("INSERT INTO a VALUES (1000, x'00')")  # it takes writes again
    with psycopg.connect(dsn(stack, "accounts", replica=True), autocommit=True) as r:  # the replicas follow
        r.execute("SET sqld.consistency = 'bounded_staleness'")
        assert until(lambda: r.execute("SELECT count(*) FROM a").fetchone()[0] == 201, what="replica site")


@pytest.mark.skipif(not MVSQLITE or bool(os.environ.get("FDB_CLUSTER_FILE")),
                    reason="restores into the page store of the FoundationDB test double (wiped by a restart)")
def test_mvsqlite_backup_wipe_restore_into_the_page_store(own_stack, tmp_path):
    """`backup save`, every process stopped (the test double's memory with it), `backup restore
    --fdb-double` into the empty page store, start: the same dbhash, and it takes writes."""
    stack = own_stack(backend_name="mvsqlite")
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE DATABASE accounts")
        c.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO m VALUES (1, 'main row')")
    with psycopg.connect(dsn(stack, "accounts"), autocommit=True) as w:
        w.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v BLOB)")
        w.execute("WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 3000) "
                  "INSERT INTO a SELECT n, randomblob(300) FROM s")  # ~300 pages: several transactions
        w.execute("DELETE FROM a WHERE id % 7 = 0")
    token = tmp_path / "token"
    token.write_text(stack.token())
    backup = tmp_path / "backup"
    out = _backup_cli("save", "--scheduler", stack.scheduler_addr, "--to", str(backup),
                      "--ca", str(stack.pki_dir / "ca.crt"), "--token-file", str(token))
    assert out.returncode == 0, out.stderr
    hashes = {name: dbhash(backup / f"{name}.db") for name in ("accounts", "main", "postgres")}
    stack.stop()
    stack.start("fdbdouble")  # empty: the double keeps its data in memory
    restore = ["restore", "--from", str(backup), "--fdb-double", stack.addr("fdbdouble"),
               "--fdb-namespace-prefix", stack.prefix, "--work-dir", str(tmp_path)]
    out = _backup_cli(*restore)
    assert out.returncode == 0, out.stderr
    assert "accounts -> page store" in out.stdout, out.stdout
    again = _backup_cli(*restore)
    assert again.returncode != 0 and "empty deployment" in again.stderr
    for name in stack.services:
        if name != "fdbdouble":
            stack.start(name)
    assert {name: dbhash(backup_file(stack, name, tmp_path / f"{name}.after.db")) for name in hashes} == hashes
    with psycopg.connect(dsn(stack, "accounts"), autocommit=True) as r:
        assert r.execute("SELECT count(*), max(id) FROM a").fetchone() == (3000 - 3000 // 7, 3000)
        assert r.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        r.execute("INSERT INTO a VALUES (7, x'00')")  # it takes writes again
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        assert c.execute("SELECT v FROM m").fetchall() == [("main row",)]


@sqlite_only
def test_continuous_backup_keeps_every_commit_acknowledged_before_a_crash(own_stack, tmp_path):
    """`save --continuous` follows the replication log; kill -9 everything (the backup too),
    wipe every data folder, restore: the quiet database hashes equal, and every commit on the
    busy one acknowledged more than LAG_SECONDS before the crash is there."""
    from sqld.backup.continuous import LAG_SECONDS
    stack = own_stack(replicas=2)
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE DATABASE quiet")
        c.execute("CREATE DATABASE busy")
    with psycopg.connect(dsn(stack, "busy"), autocommit=True) as b:
        b.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, pad BLOB)")
    backup = tmp_path / "backup"
    pki = stack.pki_dir
    out = open(tmp_path / "backup.log", "w")
    follower = subprocess.Popen(
        [sys.executable, "-m", "sqld.backup", "save", "--continuous", "--replication", stack.addr("replication"),
         "--to", str(backup), "--ca", str(pki / "ca.crt"), "--cert", str(pki / "admin.crt"),
         "--key", str(pki / "admin.key")],
        stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT / "services")})
    acked: list[tuple[int, float]] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            with psycopg.connect(dsn(stack, "busy"), autocommit=True) as w:
                i = 0
                while not stop.is_set():
                    i += 1
                    w.execute("INSERT INTO b VALUES (%s, randomblob(300))", (i,))
                    acked.append((i, time.monotonic()))
        except psycopg.Error:
            pass  # the crash

    thread = threading.Thread(target=writer)
    try:
        until(lambda: all((backup / n / "current").exists() for n in ("quiet", "busy", "main")),
              what="the backup follows every database")
        thread.start()
        with psycopg.connect(dsn(stack, "quiet"), autocommit=True) as q:  # shipped as frames after the base
            q.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, v BLOB)")
            for i in range(200):
                q.execute("INSERT INTO q VALUES (%s, randomblob(500))", (i,))
            q.execute("UPDATE q SET v = randomblob(100) WHERE id % 3 = 0")
        until(lambda: len(acked) > 300, what="the writer on busy")
        time.sleep(LAG_SECONDS + 0.5)  # the quiet database's last commit is older than the lag
        crash = time.monotonic()
        for name in list(stack.procs):
            stack.kill(name)
        follower.kill()
        follower.wait()
    finally:
        stop.set()
        if thread.is_alive() or thread.ident:
            thread.join()
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        out.close()
    quiet_hash = dbhash(stack.data_dir / "quiet.db")
    for entry in stack.data_dir.iterdir():  # every data folder: storage, replication, replicas (not the PKI)
        if entry.name != "pki":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    restored = _backup_cli("restore", "--from", str(backup), "--data-dir", str(stack.data_dir))
    assert restored.returncode == 0, restored.stderr
    assert dbhash(stack.data_dir / "quiet.db") == quiet_hash
    stack.start()
    assert dbhash(stack.data_dir / "quiet.db") == quiet_hash
    must = [i for i, at in acked if at < crash - LAG_SECONDS]
    assert len(must) > 100
    with psycopg.connect(dsn(stack, "busy"), autocommit=True) as r:
        ids = [row[0] for row in r.execute("SELECT id FROM b ORDER BY id")]
    assert ids == list(range(1, len(ids) + 1))  # whole transactions, in order
    assert set(must) <= set(ids), (len(must), len(ids))
    print(f"continuous backup: {len(acked)} commits acknowledged, {len(ids)} restored, "
          f"{len(acked) - len(ids)} lost in the last {LAG_SECONDS}s window (allowed)")
    with psycopg.connect(dsn(stack, "quiet"), autocommit=True) as r:
        assert r.execute("SELECT count(*) FROM q").fetchone() == (200,)
