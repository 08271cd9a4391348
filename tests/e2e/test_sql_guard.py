"""The SQL guard with real processes: each attack on SQLite's own controls is refused with
42501 and leaves no trace (settings, files, replicas), and a session's settings and TEMP
objects never reach another session through the pool of storage connections."""
from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pgerr

from tests.e2e.test_replication import dbhash, integrity, wait_converged
from tests.fixtures.stack import Stack, make_stack


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = make_stack("sql-guard", tmp_path_factory.mktemp("sql-guard"), replicas=2)
    yield s
    s.stop()
    errors = s.log_errors()
    assert not errors, "unexpected ERROR log lines:\n" + "\n".join(errors)


def connect(site: Stack) -> psycopg.Connection:
    return psycopg.connect(site.dsn, autocommit=True)


def refused(conn: psycopg.Connection, sql: str) -> str:
    """Run `sql`, which must fail with 42501; its message."""
    with pytest.raises(pgerr.InsufficientPrivilege) as info:
        conn.execute(sql)
    return str(info.value)


def settings_untouched(site: Stack) -> None:
    """Fresh sessions (several, so several pooled connections) see the server's settings."""
    conns = [connect(site) for _ in range(4)]
    try:
        for c in conns * 3:
            assert c.execute("PRAGMA foreign_keys").fetchone() == (1,)
            assert c.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
            assert c.execute("PRAGMA query_only").fetchone() == (0,)
            assert c.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # the capturer's setting
            assert c.execute("SELECT count(*) FROM temp.sqlite_master").fetchone() == (0,)
    finally:
        for c in conns:
            c.close()


def replicas_follow(site: Stack, table: str, commits: int = 10, clients: int = 5) -> None:
    """Later commits from many connections reach both replicas, which equal the primary."""
    with connect(site) as c:
        c.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, who INTEGER, v TEXT)")

    def client(n: int) -> None:
        with connect(site) as c:
            for i in range(commits):
                c.execute(f"INSERT INTO {table} (who, v) VALUES (%s, %s)", (n, f"row {i}"))

    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        list(ex.map(client, range(clients)))
    wait_converged(site)
    primary = dbhash(site.db_path("storage"))
    for name in ("replica1", "replica2"):
        assert integrity(site.db_path(name)) == "ok", name
        assert dbhash(site.db_path(name)) == primary, name
    with psycopg.connect(site.replica_dsn, autocommit=True) as r:
        assert r.execute(f"SELECT count(*) FROM {table}").fetchone()[0] >= commits * clients


def test_wal_autocheckpoint_is_refused_and_every_later_commit_is_replicated(site):
    conns = [connect(site) for _ in range(5)]  # reach several pooled storage connections
    for c in conns:
        for value in ("0", "1", "100"):
            assert "PRAGMA wal_autocheckpoint is managed by the server" in \
                refused(c, f"PRAGMA wal_autocheckpoint={value}")
    for c in conns:
        c.close()
    replicas_follow(site, "after_autocheckpoint", commits=10, clients=5)  # 50 commits
    settings_untouched(site)


def test_wal_checkpoint_is_refused_while_replication_is_down(site):
    with connect(site) as c:
        c.execute("CREATE TABLE ckpt (id INTEGER PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO ckpt (v) VALUES ('before')")
    wal = Path(str(site.db_path("storage")) + "-wal")
    size = wal.stat().st_size
    site.stop_one("replication")
    try:
        with connect(site) as c:
            for mode in ("", "(PASSIVE)", "(FULL)", "(RESTART)", "(TRUNCATE)"):
                assert "checkpoints are managed by the server" in refused(c, f"PRAGMA wal_checkpoint{mode}")
        assert wal.stat().st_size == size  # the WAL was neither checkpointed nor truncated
    finally:
        site.start("replication")
    replicas_follow(site, "ckpt_follow")


def test_writable_schema_is_refused_and_the_schema_stays_sound(site):
    with connect(site) as c:
        c.execute("CREATE TABLE victim (id INTEGER PRIMARY KEY, v TEXT)")
        assert "writable_schema" in refused(c, "PRAGMA writable_schema=ON")
        assert "may not be modified" in refused(
            c, "UPDATE sqlite_schema SET sql = 'CREATE TABLE victim (' WHERE name = 'victim'")
        refused(c, "UPDATE sqlite_master SET sql = 'garbage' WHERE name = 'victim'")
        refused(c, "DELETE FROM sqlite_master WHERE name = 'victim'")
        c.execute("INSERT INTO victim (v) VALUES ('still here')")
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    replicas_follow(site, "victim_follow")
    with psycopg.connect(site.replica_dsn, autocommit=True) as r:  # the replica site takes logins
        assert r.execute("SELECT v FROM victim").fetchall() == [("still here",)]
    site.stop_one("storage")  # a restarted primary opens the database (no CorruptError)
    site.start("storage")
    with connect(site) as c:
        assert c.execute("SELECT v FROM victim").fetchall() == [("still here",)]


def test_attach_and_vacuum_into_are_refused_and_write_no_file(site, tmp_path):
    target = tmp_path / "elsewhere.db"
    replica_file = site.db_path("replica1")
    with connect(site) as c:
        assert "ATTACH is not allowed: each session sees one database" in \
            refused(c, f"ATTACH '{target}' AS x")
        refused(c, f"ATTACH DATABASE '{replica_file}' AS r")
        refused(c, "ATTACH ':memory:' AS m")
        refused(c, "ATTACH '' AS t")
        refused(c, "DETACH DATABASE x")
        assert "VACUUM INTO is not allowed" in refused(c, f"VACUUM INTO '{tmp_path / 'copy.db'}'")
        # the attachment is not on any pooled connection for other sessions either
        with pytest.raises(psycopg.Error):
            c.execute("SELECT * FROM r.sqlite_master")
        assert [row[1] for row in c.execute("PRAGMA database_list").fetchall()] == ["main", "temp"]
        c.execute("CREATE TABLE vac (id INTEGER PRIMARY KEY, v TEXT)")
        c.execute("INSERT INTO vac (v) SELECT 'x' FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                  "SELECT i + 1 FROM n WHERE i < 500) SELECT i FROM n)")
        c.execute("DELETE FROM vac WHERE id % 2 = 0")
        c.execute("VACUUM")  # plain VACUUM still works, and replicates
    assert sorted(os.listdir(tmp_path)) == []
    replicas_follow(site, "after_attach")
    assert integrity(replica_file) == "ok"


def test_connection_settings_are_refused_or_stay_in_the_session(site):
    with connect(site) as c:
        assert "PRAGMA synchronous is managed by the server" in refused(c, "PRAGMA synchronous=OFF")
        for sql in ("PRAGMA journal_mode=DELETE", "PRAGMA busy_timeout=0", "PRAGMA cache_size=1",
                    "PRAGMA temp_store=FILE", "PRAGMA mmap_size=0", "PRAGMA locking_mode=EXCLUSIVE",
                    "PRAGMA page_size=512", "PRAGMA schema_version=1", "PRAGMA shrink_memory",
                    "PRAGMA trusted_schema=1", "PRAGMA secure_delete=0", "SELECT load_extension('x')",
                    "CREATE VIRTUAL TABLE st USING dbstat"):
            refused(c, sql)
        c.execute("PRAGMA user_version=7")  # a database header value: allowed and replicated
    settings_untouched(site)


def test_introspection_pragmas_still_work(site):
    with connect(site) as c:
        c.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        c.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent (id))")
        c.execute("CREATE INDEX child_p ON child (p)")
        assert [r[1] for r in c.execute("PRAGMA table_info(child)").fetchall()] == ["id", "p"]
        assert [r[1] for r in c.execute("PRAGMA index_list(child)").fetchall()] == ["child_p"]
        assert [r[2] for r in c.execute("PRAGMA foreign_key_list(child)").fetchall()] == ["parent"]
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert c.execute("PRAGMA database_list").fetchone()[1] == "main"
        assert c.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert c.execute("SELECT name FROM pragma_table_info('child') ORDER BY cid").fetchall() == [("id",), ("p",)]
        c.execute("CREATE VIRTUAL TABLE docs USING fts5(body)")  # a known module
        c.execute("INSERT INTO docs VALUES ('hello world')")
        assert c.execute("SELECT count(*) FROM docs WHERE docs MATCH 'hello'").fetchone() == (1,)


def test_session_settings_and_temp_tables_stay_in_their_session(site):
    a = connect(site)
    a.execute("CREATE TABLE fk_parent (id INTEGER PRIMARY KEY)")
    a.execute("CREATE TABLE fk_child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES fk_parent (id))")
    a.execute("PRAGMA foreign_keys=OFF")
    a.execute("CREATE TEMP TABLE scratch (x INTEGER)")
    a.execute("INSERT INTO scratch VALUES (1)")
    others = [connect(site) for _ in range(4)]
    try:
        for _ in range(10):  # many statements on many sessions: the pool's connections are reused
            for b in others:
                assert b.execute("PRAGMA foreign_keys").fetchone() == (1,)
                assert b.execute("SELECT count(*) FROM temp.sqlite_master").fetchone() == (0,)
                with pytest.raises(pgerr.UndefinedTable):
                    b.execute("SELECT * FROM scratch")
                with pytest.raises(pgerr.ForeignKeyViolation):
                    b.execute("INSERT INTO fk_child (p) VALUES (99)")
            # A keeps its setting and its table across autocommit statements
            assert a.execute("PRAGMA foreign_keys").fetchone() == (0,)
            a.execute("INSERT INTO scratch VALUES (2)")
            assert a.execute("SELECT count(*) FROM scratch").fetchone()[0] >= 2
        with a.transaction():  # and inside a transaction
            assert a.execute("PRAGMA foreign_keys").fetchone() == (0,)
            a.execute("INSERT INTO fk_child (p) VALUES (42)")  # no parent: allowed with foreign_keys off
            a.execute("INSERT INTO scratch VALUES (3)")
        assert a.execute("SELECT count(*) FROM scratch WHERE x = 3").fetchone() == (1,)
        a.execute("PRAGMA query_only=1")
        with pytest.raises(psycopg.Error):
            a.execute("INSERT INTO fk_parent VALUES (1)")
        for b in others:
            b.execute("INSERT INTO fk_parent VALUES (NULL)")  # B can still write
        a.close()
        for _ in range(10):  # A is gone: no pooled connection carries its state
            for b in others:
                assert b.execute("PRAGMA foreign_keys").fetchone() == (1,)
                assert b.execute("PRAGMA query_only").fetchone() == (0,)
                assert b.execute("SELECT count(*) FROM temp.sqlite_master").fetchone() == (0,)
    finally:
        a.close()
        for b in others:
            b.close()
    settings_untouched(site)


def test_a_lost_session_connection_loses_its_state_and_the_session_goes_on(site):
    a = connect(site)
    try:
        a.execute("PRAGMA foreign_keys=OFF")
        a.execute("CREATE TEMP TABLE gone (x INTEGER)")
        site.stop_one("storage")  # the session's own connection dies with its stream
        site.start("storage")
        with pytest.raises(psycopg.Error) as info:
            a.execute("SELECT count(*) FROM gone")  # answered with the transport error
        assert info.value.sqlstate in ("57P03", "57014"), info.value
        assert a.execute("PRAGMA foreign_keys").fetchone() == (1,)  # a fresh connection
        with pytest.raises(pgerr.UndefinedTable):
            a.execute("SELECT count(*) FROM gone")
    finally:
        a.close()
