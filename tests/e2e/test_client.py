"""sqldclient against the standard sqlite3 module: the same DB-API checks, the same outcome.

Each check takes a DB-API module and a `connect(**kwargs)` for it and returns what it saw:
values with their Python types, description names, rowcount, lastrowid, total_changes,
in_transaction, exception classes and sqlite_errorcode. It runs once on sqlite3 over a local
temp file (the oracle) and once on sqldclient over the running stack; the outcomes must be
equal. No expected value is written by hand.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import sqldclient

Check = Callable[[Any, Callable[..., Any]], Any]
CHECKS: dict[str, Check] = {}


def check(fn: Check) -> Check:
    CHECKS[fn.__name__] = fn
    return fn


def typed(x: Any) -> Any:
    """A value with its type, comparable across runs (NaN equal to NaN, -0.0 apart from 0.0)."""
    if isinstance(x, (list, tuple)):
        return [typed(v) for v in x]
    if isinstance(x, float):
        return ("float", "nan" if math.isnan(x) else repr(x))
    return (type(x).__name__, x)


def outcome(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", fn())
    except Exception as exc:  # the class name is the outcome
        return ("raises", type(exc).__name__)


def fresh(conn: Any, ddl: str) -> str:
    """A table of this run's own (the stack's database is shared): its name."""
    name = "t_" + uuid.uuid4().hex[:10]
    conn.execute(f"CREATE TABLE {name}{ddl}")
    if conn.in_transaction:
        conn.commit()
    return name


def rows(cur: Any) -> Any:
    return typed(cur.fetchall())


# -- values


@check
def literals_keep_their_storage_class(mod, connect):
    conn = connect()
    cur = conn.execute("SELECT 1 AS i, 1.5 AS r, 'x' AS t, x'00ff00' AS b, NULL AS n, "
                       "9223372036854775807 AS big, -9223372036854775808 AS small, 2.0 AS two")
    return rows(cur), [d[0] for d in cur.description]


@check
def stored_values_round_trip(mod, connect):
    conn = connect()
    t = fresh(conn, "(i INTEGER, r REAL, t TEXT, b BLOB, n NUMERIC, u)")
    values = [
        (1, 1.5, "x", b"\x00a\x00", 3, None),
        (2**63 - 1, float("inf"), "ünïcødé ☃ 𝄞", b"", 2.5, 7),
        (-2**63, float("-inf"), "", b"\x00" * 3, "12", 7),
        (0, 3, "42", bytes(range(256)), 10, 8),
        (None, -0.0, "a'b\"c", None, None, None),
    ]
    conn.executemany(f"INSERT INTO {t} VALUES (?, ?, ?, ?, ?, ?)", values)
    conn.commit()
    return rows(conn.execute(f"SELECT i, r, t, b, n, u FROM {t} ORDER BY rowid"))


@check
def nan_is_stored_as_null(mod, connect):
    conn = connect()
    t = fresh(conn, "(r REAL)")
    conn.execute(f"INSERT INTO {t} VALUES (?)", (float("nan"),))
    return rows(conn.execute(f"SELECT r, typeof(r) FROM {t}"))


@check
def a_column_mixing_classes(mod, connect):
    conn = connect()
    t = fresh(conn, "(u)")
    conn.executemany(f"INSERT INTO {t} VALUES (?)", [(1,), (2.5,), ("a",), (b"b",)])
    conn.commit()
    return rows(conn.execute(f"SELECT u FROM {t} ORDER BY rowid"))


@check
def text_factory(mod, connect):
    conn = connect()
    out = []
    for factory in (bytes, str, lambda b: b.decode().upper()):
        conn.text_factory = factory
        out.append(typed(conn.execute("SELECT 'é', 1, x'01'").fetchone()))
    return out


@check
def row_factory_row(mod, connect):
    conn = connect()
    conn.row_factory = mod.Row
    r = conn.execute("SELECT 1 AS a, 'b' AS b").fetchone()
    return r.keys(), typed([r["A"], r[1], r["b"], len(r), list(r)]), isinstance(r, mod.Row)


@check
def parameter_styles(mod, connect):
    conn = connect()
    out = []
    out.append(typed(conn.execute("SELECT ?, ?", (1, "a")).fetchone()))
    out.append(typed(conn.execute("SELECT ?2, ?1, ?2", (1, "a")).fetchone()))
    out.append(typed(conn.execute("SELECT :a, @b, $c, :a", {"a": 1, "b": 2.5, "c": b"x"}).fetchone()))
    out.append(typed(conn.execute("SELECT '?', ':a', \"?\" FROM (SELECT 1 AS \"?\") -- ?\n").fetchone()))
    out.append(typed(conn.execute("SELECT ? || '%s' || '%'", ("50",)).fetchone()))
    return out


@check
def adapters_and_colname_converters(mod, connect):
    import datetime

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    mod.register_adapter(Point, lambda p: f"{p.x};{p.y}")
    mod.register_converter("POINT", lambda b: tuple(map(float, b.split(b";"))))
    conn = connect(detect_types=mod.PARSE_COLNAMES)
    cur = conn.execute('SELECT ? AS "p [point]", ? AS "d [date]", ? AS plain',
                       (Point(1, 2), datetime.date(2024, 2, 29), Point(3, 4)))
    return typed(cur.fetchone()), [d[0] for d in cur.description]


@check
def decltype_converters(mod, connect):
    mod.register_converter("POINT", lambda b: tuple(map(float, b.split(b";"))))
    conn = connect(detect_types=mod.PARSE_DECLTYPES)
    t = fresh(conn, "(p point)")
    conn.execute(f"INSERT INTO {t} VALUES ('1;2')")
    return typed(conn.execute(f"SELECT p FROM {t}").fetchone())


@check
def expression_column_names(mod, connect):
    conn = connect()
    out = [[d[0] for d in conn.execute("SELECT 1, count(*), 1 + 1, lower('A')").description]]
    out.append([d[0] for d in conn.execute("SELECT ?, ?3 + 1, ?, x'01'", (1, 2, 3, 4)).description])
    out.append([d[0] for d in conn.execute("SELECT :a, @b || $c, :a", {"a": 1, "b": "x", "c": "y"}).description])
    out.append([d[0] for d in conn.execute("SELECT  1 AS a,(2)b, [c] FROM (SELECT 3 AS c)").description])
    return out


# -- rowcount, lastrowid, total_changes, transactions


@check
def rowcount_lastrowid_total_changes(mod, connect):
    conn = connect()
    t = fresh(conn, "(id INTEGER PRIMARY KEY, v)")
    seen = []
    cur = conn.cursor()
    seen.append((cur.rowcount, cur.lastrowid, cur.arraysize))
    for sql, params in [(f"INSERT INTO {t}(v) VALUES (?)", (1,)),
                        (f"INSERT INTO {t}(id, v) VALUES (?, ?)", (10, 2)),
                        (f"SELECT * FROM {t}", ()),
                        (f"UPDATE {t} SET v = v + 1", ()),
                        (f"UPDATE {t} SET v = 0 WHERE id = -1", ()),
                        (f"REPLACE INTO {t}(id, v) VALUES (?, ?)", (10, 5)),
                        (f"DELETE FROM {t} WHERE id = 1", ())]:
        cur.execute(sql, params)
        seen.append((sql.split()[0], cur.rowcount, cur.lastrowid, conn.total_changes, conn.in_transaction))
    cur.executemany(f"INSERT INTO {t}(v) VALUES (?)", [(7,), (8,), (9,)])
    seen.append(("executemany", cur.rowcount, cur.lastrowid, conn.total_changes))
    conn.commit()
    seen.append(rows(conn.execute(f"SELECT id, v FROM {t} ORDER BY id")))
    return seen


@pytest.fixture(params=[None, "", "DEFERRED", "IMMEDIATE", "EXCLUSIVE"], ids=lambda p: f"isolation={p!r}")
def isolation(request):
    return request.param


def transactions_under(level):
    def run(mod, connect):
        conn = connect(isolation_level=level)
        t = fresh(conn, "(v)")
        seen = [conn.isolation_level, conn.in_transaction]
        cur = conn.execute(f"SELECT count(*) FROM {t}")
        seen.append(("select", conn.in_transaction, typed(cur.fetchone())))
        cur = conn.execute(f"INSERT INTO {t} VALUES (?)", (1,))
        seen.append(("insert", conn.in_transaction, cur.rowcount, cur.lastrowid))
        conn.rollback()
        seen.append(("rollback", conn.in_transaction, typed(conn.execute(f"SELECT count(*) FROM {t}").fetchone())))
        conn.execute(f"INSERT INTO {t} VALUES (2)")
        conn.commit()
        seen.append(("commit", conn.in_transaction))
        conn.execute("BEGIN")
        seen.append(("begin", conn.in_transaction))
        conn.execute(f"UPDATE {t} SET v = 3")
        conn.rollback()
        seen.append(("explicit", conn.in_transaction, rows(conn.execute(f"SELECT v FROM {t}"))))
        with conn:
            conn.execute(f"INSERT INTO {t} VALUES (4)")
        seen.append(("with", conn.in_transaction))
        with pytest.raises(ZeroDivisionError), conn:
            conn.execute(f"INSERT INTO {t} VALUES (5)")
            1 / 0  # noqa: B018 - a failure inside the block rolls back
        seen.append(("with-failed", conn.in_transaction, rows(conn.execute(f"SELECT v FROM {t} ORDER BY v"))))
        conn.execute(f"INSERT INTO {t} VALUES (6)")
        conn.isolation_level = None  # commits, as in sqlite3
        seen.append(("to-autocommit", conn.in_transaction))
        conn.close()
        again = connect()
        seen.append(("after-close", rows(again.execute(f"SELECT v FROM {t} ORDER BY v"))))
        return seen
    return run


@check
def executescript_commits_first(mod, connect):
    conn = connect()
    t = fresh(conn, "(v)")
    conn.execute(f"INSERT INTO {t} VALUES ('1')")
    before = conn.in_transaction
    conn.executescript(f"INSERT INTO {t} VALUES ('2'); INSERT INTO {t} VALUES ('3;');")
    conn.rollback()
    return before, conn.in_transaction, rows(conn.execute(f"SELECT v FROM {t} ORDER BY rowid"))


@check
def executescript_stops_at_a_failing_statement(mod, connect):
    conn = connect()
    t = fresh(conn, "(v TEXT UNIQUE)")
    err = outcome(lambda: conn.executescript(f"INSERT INTO {t} VALUES ('a'); INSERT INTO {t} VALUES ('a');"
                                             f" INSERT INTO {t} VALUES ('b');"))
    in_tx = conn.in_transaction
    conn.rollback()
    return err, in_tx, rows(conn.execute(f"SELECT v FROM {t} ORDER BY v"))


@check
def total_changes_counts_triggers_scripts_and_rollbacks(mod, connect):
    conn = connect()
    t = fresh(conn, "(id INTEGER PRIMARY KEY, v)")
    log = fresh(conn, "(what)")
    conn.execute(f"CREATE TRIGGER {t}_log AFTER UPDATE ON {t} BEGIN INSERT INTO {log} VALUES ('u'); END")
    seen = [conn.total_changes]
    conn.executemany(f"INSERT INTO {t}(v) VALUES (?)", [(1,), (2,), (3,)])
    seen.append(conn.total_changes)
    cur = conn.execute(f"UPDATE {t} SET v = v + 1 WHERE id < 3")  # 2 rows, 2 more by the trigger
    seen.append((cur.rowcount, conn.total_changes))
    conn.rollback()  # rolled back changes were made all the same
    seen.append(conn.total_changes)
    conn.executescript(f"INSERT INTO {t}(v) VALUES (7); DELETE FROM {t}; INSERT INTO {log} SELECT 'x';")
    seen.append(conn.total_changes)
    conn.execute(f"DELETE FROM {log}")
    seen.append(conn.total_changes)
    conn.commit()
    again = connect()  # per connection
    seen.append(again.total_changes)
    return seen


@check
def executemany_many_rows(mod, connect):
    conn = connect()
    t = fresh(conn, "(id INTEGER PRIMARY KEY, v TEXT)")
    cur = conn.executemany(f"INSERT INTO {t}(v) VALUES (?)", ((str(i),) for i in range(40)))
    seen = [cur.rowcount, conn.total_changes]
    cur = conn.executemany(f"UPDATE {t} SET v = v || ? WHERE id = ?", [("x", i) for i in range(0, 50, 3)])
    seen += [cur.rowcount, conn.total_changes]
    conn.commit()
    return seen, rows(conn.execute(f"SELECT count(*), sum(length(v)), max(id) FROM {t}"))


@check
def insert_returning(mod, connect):
    conn = connect()
    t = fresh(conn, "(id INTEGER PRIMARY KEY, v)")
    cur = conn.execute(f"INSERT INTO {t}(v) VALUES (?), (?) RETURNING id, v", ("a", "b"))
    names = [d[0] for d in cur.description]
    return names, rows(cur), cur.rowcount, cur.lastrowid, conn.total_changes


@check
def ddl_empty_results_and_pragmas(mod, connect):
    conn = connect()
    t = "t_" + uuid.uuid4().hex[:10]
    cur = conn.execute(f"CREATE TABLE {t}(a INTEGER, b TEXT)")
    seen = [(cur.rowcount, cur.description, cur.fetchall(), conn.in_transaction)]
    cur = conn.execute(f"SELECT a FROM {t} WHERE 0")
    seen.append((cur.description, cur.fetchall(), cur.rowcount))
    seen.append(rows(conn.execute(f"PRAGMA table_info({t})")))
    cur = conn.execute(f"DROP TABLE {t}")
    seen.append((cur.rowcount, conn.in_transaction))
    return seen


@check
def a_large_blob(mod, connect):
    conn = connect()
    blob = bytes(range(256)) * 4096
    return typed(conn.execute("SELECT ?, length(?)", (blob, blob)).fetchone())


@check
def a_large_result_streamed_in_parts(mod, connect):
    """More than a result part (256 KiB) of rows mixing storage classes: the server streams it,
    and every part keeps the classes, names and declared types (detect_types)."""
    mod.register_converter("MARK", lambda b: b"marked:" + b)
    conn = connect(detect_types=mod.PARSE_DECLTYPES)
    t = fresh(conn, "(id INTEGER PRIMARY KEY, u, m mark)")
    conn.executemany(f"INSERT INTO {t}(u, m) VALUES (?, ?)",
                     [(v, "x") for i in range(1500) for v in (i, i + 0.5, f"t{i}" * 20, b"\x00" * 100)])
    conn.commit()
    out = []
    for sql, params in [(f"SELECT id, u, m, u AS again FROM {t} ORDER BY id", ()),  # simple protocol
                        (f"SELECT id, u, m, ? + 0 FROM {t} WHERE id > ? ORDER BY id", (7, 0))]:  # extended
        cur = conn.execute(sql, params)
        got = cur.fetchall()
        out.append(([d[0] for d in cur.description], len(got), typed(got[:4]), typed(got[-4:]),
                    sorted({type(r[1]).__name__ for r in got})))
    return out


@check
def fetch_methods(mod, connect):
    conn = connect()
    cur = conn.execute("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 7) SELECT x FROM n")
    cur.arraysize = 2
    return (typed(cur.fetchone()), typed(cur.fetchmany()), typed(cur.fetchmany(3)), typed(list(cur)),
            typed(cur.fetchone()), typed(cur.fetchall()))


@check
def complete_statement(mod, connect):
    texts = ["SELECT 1", "SELECT 1;", "SELECT ';'", "SELECT 1; -- c", "SELECT 'a", "/* x",
             "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;",
             "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1;", ""]
    return [mod.complete_statement(s) for s in texts]


@check
def module_attributes(mod, connect):
    connect()
    return (mod.apilevel, mod.paramstyle, mod.threadsafety >= 1, type(mod.sqlite_version).__name__,
            len(mod.sqlite_version_info), mod.PARSE_DECLTYPES, mod.PARSE_COLNAMES,
            [issubclass(getattr(mod, n), mod.DatabaseError) for n in
             ("DataError", "OperationalError", "IntegrityError", "InternalError", "ProgrammingError",
              "NotSupportedError")],
            issubclass(mod.InterfaceError, mod.Error), issubclass(mod.DatabaseError, mod.Error))


# -- errors


@check
def error_classes(mod, connect):
    conn = connect()
    t = fresh(conn, "(id INTEGER PRIMARY KEY, v NOT NULL, c CHECK (c > 0), s TEXT UNIQUE)")
    out = []
    for sql, params in [(f"INSERT INTO {t}(id, v) VALUES (1, 1)", ()),
                        (f"INSERT INTO {t}(id, v) VALUES (1, 1)", ()),
                        (f"INSERT INTO {t}(v) VALUES (NULL)", ()),
                        (f"INSERT INTO {t}(v, c) VALUES (1, -1)", ()),
                        (f"INSERT INTO {t}(id, v) VALUES ('x', 1)", ()),
                        ("SELEC 1", ()), ("SELECT * FROM no_such_table", ()), ("SELECT no_such_col", ()),
                        ("SELECT ?", (1, 2)), ("SELECT ?, ?", (1,)), ("SELECT :a", {"b": 1}),
                        ("SELECT ?", {"a": 1}), ("SELECT ?", ([1],)), ("SELECT ?", (2**64,)),
                        ("SELECT 1; SELECT 2", ())]:
        out.append(outcome(lambda sql=sql, params=params: conn.execute(sql, params).fetchall()))
        conn.rollback()
    return out


@check
def sqlite_errorcode(mod, connect):
    conn = connect()
    t = fresh(conn, "(id INTEGER PRIMARY KEY)")
    conn.execute(f"INSERT INTO {t} VALUES (1)")
    try:
        conn.execute(f"INSERT INTO {t} VALUES (1)")
    except mod.IntegrityError as exc:
        return exc.sqlite_errorcode, exc.sqlite_errorname
    return None


@check
def transaction_survives_an_error(mod, connect):
    conn = connect()
    t = fresh(conn, "(id INTEGER PRIMARY KEY)")
    conn.execute(f"INSERT INTO {t} VALUES (1)")
    err = outcome(lambda: conn.execute(f"INSERT INTO {t} VALUES (1)"))
    conn.execute(f"INSERT INTO {t} VALUES (2)")
    conn.commit()
    return err, rows(conn.execute(f"SELECT id FROM {t} ORDER BY id"))


@check
def commit_after_a_failed_statement(mod, connect):
    """sqlite3 commits what came before the error; the client must not claim it did when it cannot."""
    conn = connect()
    t = fresh(conn, "(id INTEGER PRIMARY KEY)")
    conn.execute(f"INSERT INTO {t} VALUES (1)")
    outcome(lambda: conn.execute(f"INSERT INTO {t} VALUES (1)"))
    committed = outcome(conn.commit)
    return committed, conn.in_transaction, rows(conn.execute(f"SELECT id FROM {t}"))


@check
def iterdump(mod, connect):
    """The dump's lines for this run's tables (the stack's database is shared), and the dump
    loaded into a fresh local database gives the same rows."""
    import sqlite3 as local
    conn = connect()
    t = fresh(conn, "(id INTEGER PRIMARY KEY AUTOINCREMENT, i INTEGER, r REAL, s TEXT, b BLOB, u)")
    conn.execute(f"CREATE INDEX {t}_s ON {t}(s)")
    conn.execute(f"CREATE VIEW {t}_v AS SELECT s FROM {t}")
    conn.executemany(f"INSERT INTO {t}(i, r, s, b, u) VALUES (?, ?, ?, ?, ?)",
                     [(1, 1.5, "it's", b"\x00\xff", None), (-2**63, 1e300, "", b"", 2.5),
                      (None, -0.0, "ünï\ncødé", None, "7")])
    conn.commit()
    lines = [line for line in conn.iterdump() if t in line or line in ("BEGIN TRANSACTION;", "COMMIT;")]
    restored = local.connect(":memory:")
    restored.executescript("\n".join(line for line in lines if "sqlite_sequence" not in line))
    return [line.replace(t, "T") for line in lines], rows(restored.execute(f"SELECT * FROM {t} ORDER BY id"))


@check
def connection_factory(mod, connect):
    class Mine(mod.Connection):
        mine = True

    conn = connect(factory=Mine)
    return type(conn).__name__, conn.mine, isinstance(conn, mod.Connection), typed(conn.execute("SELECT 1").fetchone())


@check
def use_after_close(mod, connect):
    conn = connect()
    cur = conn.execute("SELECT 1")
    cur.close()
    out = [outcome(cur.fetchone), outcome(lambda: cur.execute("SELECT 1"))]
    conn.close()
    conn.close()  # twice is fine
    out += [outcome(lambda: conn.execute("SELECT 1")), outcome(conn.cursor), outcome(conn.commit),
            outcome(lambda: conn.in_transaction)]
    return out


@check
def executemany_refuses_select(mod, connect):
    conn = connect()
    return outcome(lambda: conn.executemany("SELECT ?", [(1,), (2,)]))


@check
def isolation_level_values(mod, connect):
    conn = connect()
    out = []
    for value in ("deferred", "Immediate", "bogus", 1):
        out.append(outcome(lambda value=value: setattr(conn, "isolation_level", value)))
    return out


# -- running the checks on both


@pytest.fixture(scope="module")
def url(stack):
    return f"postgresql://postgres@127.0.0.1:{stack.ports.pg}/main?connect_timeout=10"


def both(check_fn: Check, tmp_path, url: str) -> tuple[Any, Any]:
    opened: list[Any] = []

    def local(**kw):
        opened.append(sqlite3.connect(tmp_path / "oracle.db", **kw))
        return opened[-1]

    def remote(**kw):
        opened.append(sqldclient.connect(url, **kw))
        return opened[-1]

    try:
        expected = check_fn(sqlite3, local)
        got = check_fn(sqldclient, remote)
    finally:
        for c in opened:
            c.close()
    return expected, got


@pytest.mark.parametrize("name", list(CHECKS))
def test_same_as_sqlite3(name, tmp_path, url):
    expected, got = both(CHECKS[name], tmp_path, url)
    assert got == expected


def test_transactions_same_as_sqlite3(isolation, tmp_path, url):
    expected, got = both(transactions_under(isolation), tmp_path, url)
    assert got == expected


# -- what only the client has


def test_memory_database_is_private_and_dropped_at_close(stack, monkeypatch):
    """":memory:" (#14 item 2): a scratch database of the connection's own on the server
    (PGHOST/PGPORT say which), empty at start, invisible to another ":memory:", gone at close."""
    if os.environ.get("SQLD_TEST_BACKEND") == "mvsqlite":
        pytest.skip("runtime databases need the sqlite backend")
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(stack.ports.pg))
    monkeypatch.setenv("PGUSER", "postgres")
    a, b = sqldclient.connect(":memory:"), sqldclient.connect(":memory:")
    a.execute("CREATE TABLE t (x)")
    a.execute("INSERT INTO t VALUES (1)")
    a.commit()
    assert a.execute("SELECT x FROM t").fetchall() == [(1,)]
    with pytest.raises(sqldclient.OperationalError):
        b.execute("SELECT x FROM t")  # another connection's memory database is another database
    name = a.execute("SELECT current_database()").fetchone()[0]
    assert name.startswith("sqld_memory_")
    a.close()
    b.close()
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        names = {r[0] for r in c.execute("SELECT datname FROM pg_database")}
    assert not any(n.startswith("sqld_memory_") for n in names), names


@pytest.mark.parametrize("name", ["create_function", "create_aggregate", "set_authorizer", "blobopen", "backup",
                                  "load_extension", "enable_load_extension", "create_collation"])
def test_in_process_calls_are_not_supported(url, name):
    conn = sqldclient.connect(url)
    try:
        with pytest.raises(sqldclient.NotSupportedError):
            getattr(conn, name)("x")
        assert not hasattr(sqlite3.Connection, name) or callable(getattr(sqlite3.Connection, name))
    finally:
        conn.close()


def test_database_name_from_libpq_environment(stack, monkeypatch):
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(stack.ports.pg))
    monkeypatch.setenv("PGUSER", "postgres")
    conn = sqldclient.connect("main")
    try:
        assert conn.execute("SELECT sqlite_version()").fetchone()[0] == sqldclient.sqlite_version
    finally:
        conn.close()


def test_sqlite_version_is_the_servers(url):
    conn = sqldclient.connect(url)
    try:
        with psycopg.connect(url.replace("postgresql://", "postgresql://"), autocommit=True) as pg:
            server = pg.execute("SELECT sqlite_version()").fetchone()[0]
        assert sqldclient.sqlite_version == server
        assert sqldclient.sqlite_version_info == tuple(int(p) for p in server.split("."))
    finally:
        conn.close()


# -- the server's SQLite wire extensions (README "SQLite wire extensions"), seen with plain psycopg


def _wire_session(pg: psycopg.Connection, t: str) -> dict[str, Any]:
    cur = psycopg.RawCursor(pg)
    seen: dict[str, Any] = {}
    cur.execute(f"INSERT INTO {t}(id, v) VALUES (7, 'x')".encode())
    seen["tag"] = cur.statusmessage, cur.rowcount
    try:
        cur.execute(f"INSERT INTO {t}(id, v) VALUES (7, 'y')".encode())
    except psycopg.errors.UniqueViolation as exc:
        assert exc.pgresult is not None
        seen["fields"] = (exc.pgresult.error_field(ord("x")), exc.pgresult.error_field(ord("y")))
    cur.execute(f"SELECT count(*), v, p FROM {t}".encode())
    assert cur.description is not None
    seen["columns"] = [(d.name, d.type_code) for d in cur.description]
    seen["decltypes"] = pg.info.parameter_status("sqld.decltypes")
    seen["row"] = cur.fetchone()
    return seen


def test_wire_extensions_only_for_a_client_that_asks(url):
    with psycopg.connect(url, autocommit=True) as pg:
        t = "t_" + uuid.uuid4().hex[:10]
        pg.execute(f"CREATE TABLE {t}(id INTEGER PRIMARY KEY, v TEXT, p point)")
        plain = _wire_session(pg, t)
    with psycopg.connect(url, autocommit=True, options="-c sqld.sqlite_wire=on") as pg:
        pg.execute(f"DELETE FROM {t}")
        wired = _wire_session(pg, t)
    assert plain["tag"] == ("INSERT 0 1", 1)
    assert plain["fields"] == (None, None)
    assert [name for name, _ in plain["columns"]] == ["count", "v", "p"]
    assert plain["decltypes"] is None
    assert plain["row"] == (1, "x", None)

    assert wired["tag"] == ("INSERT 7 1", 1)
    assert wired["fields"] == (b"1555", b"SQLITE_CONSTRAINT_PRIMARYKEY")
    assert wired["columns"] == [("count(*)", 0x53514C56), ("v", 0x53514C56), ("p", 0x53514C56)]
    assert json.loads(wired["decltypes"]) == [None, "TEXT", "point"]
    assert wired["row"] == ("i1", "tx", None)  # psycopg's default loader: the tag, then the value


def test_asyncpg_reads_the_rowid_tag_and_ignores_the_error_fields(stack):
    """A PostgreSQL driver that asked for the extensions still parses the tag and the errors
    (asyncpg hands the tag's text to the application, one reason they are opt-in)."""
    import asyncio

    import asyncpg

    async def go() -> tuple[str, str]:
        conn = await asyncpg.connect(host="127.0.0.1", port=stack.ports.pg, user="postgres", database="main",
                                     server_settings={"sqld.sqlite_wire": "on"})
        try:
            t = "t_" + uuid.uuid4().hex[:10]
            await conn.execute(f"CREATE TABLE {t}(id INTEGER PRIMARY KEY)")
            tag = await conn.execute(f"INSERT INTO {t} VALUES (5)")
            try:
                await conn.execute(f"INSERT INTO {t} VALUES (5)")
            except asyncpg.UniqueViolationError as exc:
                return tag, exc.sqlstate
            return tag, ""
        finally:
            await conn.close()
    assert asyncio.run(go()) == ("INSERT 5 1", "23505")


def test_other_thread_is_refused(url):
    import threading
    conn = sqldclient.connect(url)
    errors: list[BaseException] = []

    def use():
        try:
            conn.execute("SELECT 1")
        except BaseException as exc:
            errors.append(exc)

    th = threading.Thread(target=use)
    th.start()
    th.join()
    conn.close()
    assert [type(e) for e in errors] == [sqldclient.ProgrammingError]


def test_interrupt_cancels_a_running_statement(url):
    import threading
    conn = sqldclient.connect(url, check_same_thread=False)
    timer = threading.Timer(0.5, conn.interrupt)
    timer.start()
    try:
        with pytest.raises(sqldclient.OperationalError, match="interrupted"):
            conn.execute("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
                         "SELECT count(*) FROM n").fetchall()
        assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        timer.cancel()
        conn.close()


# -- a replica site (#14 item 5)

_MAIN_FILE = "SELECT file FROM pragma_database_list WHERE name = 'main'"  # which SQLite file answered


def test_replica_site_reads_there_and_writes_through_the_primary(stack, url):
    at_replica = f"postgresql://postgres@127.0.0.1:{stack.ports.pg_replica}/main?connect_timeout=10"
    conn = sqldclient.connect(at_replica)
    primary = sqldclient.connect(url)
    try:
        replica_file = conn.execute(_MAIN_FILE).fetchone()[0]
        primary_file = primary.execute(_MAIN_FILE).fetchone()[0]
        assert replica_file != primary_file  # the read ran on the replica's copy
        t = fresh(conn, "(id INTEGER PRIMARY KEY, v)")
        with conn:
            cur = conn.executemany(f"INSERT INTO {t}(v) VALUES (?)", [("a",), ("b",)])
            conn.execute(f"UPDATE {t} SET v = v || '!' WHERE id = 2")
        assert cur.rowcount == 2
        # read-your-writes: this session sees its writes at once, wherever the read runs
        assert conn.execute(f"SELECT id, v FROM {t} ORDER BY id").fetchall() == [(1, "a"), (2, "b!")]
        # the writes went to the primary
        assert primary.execute(f"SELECT id, v FROM {t} ORDER BY id").fetchall() == [(1, "a"), (2, "b!")]
    finally:
        conn.close()
        primary.close()


def test_consistency_sets_the_sessions_sqld_consistency(stack, url):
    at_replica = f"postgresql://postgres@127.0.0.1:{stack.ports.pg_replica}/main?connect_timeout=10"
    with sqldclient.connect(url) as primary:
        primary_file = primary.execute(_MAIN_FILE).fetchone()[0]
    seen = {}
    for consistency in ("strong", "bounded_staleness", None):
        conn = sqldclient.connect(at_replica, consistency=consistency)
        try:
            seen[consistency] = (conn.execute("SHOW sqld.consistency").fetchone()[0],
                                 conn.execute(_MAIN_FILE).fetchone()[0] == primary_file)
        finally:
            conn.close()
    assert seen == {"strong": ("strong", True), "bounded_staleness": ("bounded_staleness", False),
                    None: ("read_your_writes", False)}
    for wrong in ("eventual", "strong; DROP TABLE x"):
        with pytest.raises(ValueError, match="consistency must be"):
            sqldclient.connect(at_replica, consistency=wrong)


# -- a site that requires TLS and SCRAM


def test_tls_and_scram_required(own_stack, tmp_path):
    from sqld.edge.auth import userfile
    from tests.fixtures.certs import self_signed

    self_signed(tmp_path)
    (tmp_path / "users").write_text("alice:" + userfile.scram_verifier("pencil").text() + "\n")
    s = own_stack(env={"SQLD_EDGE_USERS": str(tmp_path / "users"), "SQLD_EDGE_TLS_CERT": str(tmp_path / "server.crt"),
                       "SQLD_EDGE_TLS_KEY": str(tmp_path / "server.key"), "SQLD_EDGE_TLS_REQUIRED": "true"})
    base = f"postgresql://alice:{{}}@127.0.0.1:{s.ports.pg}/main?connect_timeout=10&sslmode={{}}"
    conn = sqldclient.connect(base.format("pencil", "require"))
    try:
        with conn:
            t = fresh(conn, "(v)")
            conn.execute(f"INSERT INTO {t} VALUES (?)", ("over TLS",))
        assert conn.execute(f"SELECT v FROM {t}").fetchall() == [("over TLS",)]
        assert conn._check().info.pgconn.ssl_in_use
    finally:
        conn.close()
    with pytest.raises(sqldclient.OperationalError, match="password authentication failed"):
        sqldclient.connect(base.format("wrong", "require"))
    with pytest.raises(sqldclient.OperationalError):
        sqldclient.connect(base.format("pencil", "disable"))


def test_example_prints_the_same_on_both(url, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "client" / "examples" / "notes.py"
    local = subprocess.run([sys.executable, str(example), str(tmp_path / "notes.db")],
                           capture_output=True, text=True, timeout=60, check=True)
    remote = subprocess.run([sys.executable, str(example), "--sqld", url],
                            capture_output=True, text=True, timeout=60, check=True)
    assert remote.stdout == local.stdout
    assert "refused a duplicate title" in local.stdout


def test_commit_after_a_transaction_the_server_rolled_back_says_so(url):
    """When a failed statement ends the transaction (here under PostgreSQL's rule, which a session
    may still choose; SQLite does it after an interrupt or a full disk), commit() says so."""
    conn = sqldclient.connect(url)
    try:
        t = fresh(conn, "(id INTEGER PRIMARY KEY)")
        conn.execute("SET sqld.statement_errors = postgresql")
        conn.execute(f"INSERT INTO {t} VALUES (1)")
        with pytest.raises(sqldclient.IntegrityError):
            conn.execute(f"INSERT INTO {t} VALUES (1)")
        with pytest.raises(sqldclient.OperationalError, match="the transaction was rolled back"):
            conn.commit()
        assert not conn.in_transaction
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
    finally:
        conn.close()


@pytest.mark.parametrize("victim", ["storage", "edge"])
def test_a_server_killed_mid_query_is_operational_error(own_stack, victim):
    import threading
    import time

    s = own_stack()
    conn = sqldclient.connect(f"postgresql://postgres@127.0.0.1:{s.ports.pg}/main?connect_timeout=5")
    threading.Timer(1.0, s.kill, (victim,)).start()
    started = time.monotonic()
    try:
        with pytest.raises(sqldclient.OperationalError):
            conn.execute("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
                         "SELECT count(*) FROM n").fetchall()
        assert time.monotonic() - started < 30
    finally:
        conn.close()
