"""sqldclient's SQL lexer against SQLite itself (no stack needed): placeholder numbering and
names (apsw exposes sqlite3_bind_parameter_name), statement ends (sqlite3.complete_statement),
and the rewritten `$n` text running on a local SQLite to the same result as the original.
"""
from __future__ import annotations

import sqlite3

import apsw
import pytest

from sqldclient import _sqltext

PLACEHOLDERS = [
    "SELECT 1",
    "SELECT ?",
    "SELECT ?, ?, ?",
    "SELECT ?3, ?, ?1",
    "SELECT ?, ?1",
    "SELECT ?2, ?2, ?",
    "SELECT :a, @a, $a, :a, ?",
    "SELECT :a, ?2, :b",
    "SELECT $x, :y_1, @z2, :ünï",
    "SELECT '?', ':a', \"?\", [?], `:b` FROM (SELECT 1 AS \"?\", 2 AS [?], 3 AS `:b`)",
    "SELECT 1 -- ? :a\n, ? /* ?, :b */, 'it''s ?', :c",
    "SELECT x'3f', ?, 1.5e3, .5, 0x1F, :n",
    "SELECT ?||:a||'%s'||'%'",
    "SELECT ? /* unclosed comment at the end ?",
]


def apsw_bindings(sql: str) -> tuple[int, tuple[str | None, ...]]:
    """SQLite's count and names of the statement's parameters (names without their prefix)."""
    cur = apsw.Connection(":memory:").cursor()
    for n in range(20):  # apsw wants the right number of bindings; find it
        try:
            cur.execute(sql, (None,) * n)  # a SELECT: it stays on its first row, bindings readable
        except apsw.BindingsError:
            continue
        return cur.bindings_count, tuple(cur.bindings_names)
    raise AssertionError("no binding count fits")


@pytest.mark.parametrize("sql", PLACEHOLDERS)
def test_placeholders_numbered_and_named_as_sqlite_does(sql):
    count, names = apsw_bindings(sql)
    got = _sqltext.placeholders(sql)
    assert len(got) == count
    assert tuple(n[1:] if n else None for n in got) == names


COMPLETE = ["", ";", "SELECT 1", "SELECT 1;", "SELECT 1 ;  ", "SELECT ';'", "SELECT ';';", "SELECT 1; -- c",
            "SELECT 1 -- ;", "SELECT 'a", "SELECT \"a;", "/* x", "SELECT 1; /* x", "SELECT [a;]",
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;",
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1;",
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT CASE WHEN 1 THEN 2 END; SELECT 3; END;",
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT CASE WHEN 1 THEN 2 END; SELECT 3;",
            "SELECT 1; SELECT 2;"]


@pytest.mark.parametrize("sql", COMPLETE)
def test_complete_statement_as_sqlite(sql):
    assert _sqltext.complete_statement(sql) == sqlite3.complete_statement(sql)


def test_split_statements_keeps_trigger_bodies_and_strings():
    script = ("CREATE TABLE t(v); -- one\nINSERT INTO t VALUES ('a;b');;\n"
              "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT CASE WHEN 1 THEN 2 END; SELECT 3; END;\n"
              "SELECT 4")
    parts = _sqltext.split_statements(script)
    assert [_sqltext.leading_word(p) for p in parts] == ["CREATE", "INSERT", "CREATE", "SELECT"]
    assert "".join(parts) == script.replace("b');;", "b');")
    assert all(sqlite3.complete_statement(p) for p in parts[:-1])


@pytest.mark.parametrize(("sql", "many"), [("SELECT 1", False), ("SELECT 1;", False), ("SELECT 1; -- x", False),
                                           ("SELECT 1; SELECT 2", True), ("SELECT ';'; ", False),
                                           ("CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END", False)])
def test_more_than_one_statement(sql, many):
    assert _sqltext.has_more_than_one_statement(sql) is many


@pytest.mark.parametrize(("sql", "dml"), [
    ("INSERT INTO t VALUES (1)", True), (" -- c\n/* d */ replace into t values (1)", True),
    ("UPDATE t SET v = 1", True), ("delete from t", True), ("SELECT 1", False),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", False),  # sqlite3 looks at the first word only
    ("CREATE TABLE t(v)", False), ("'insert'", False)])
def test_dml_is_the_leading_keyword(sql, dml):
    assert _sqltext.is_dml(sql) is dml


def test_the_client_imports_nothing_from_services():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    services = {p.name for p in (root / "services").iterdir() if p.is_dir()}
    assert "sqld" in services
    for path in (root / "client").rglob("*.py"):
        if path.name == "_embedded.py":
            # The embedded replica (replica=) shares storage's frame applier and the replication
            # stubs (sqld.common.applier, sqld.v1): one library, not a copy. It needs the
            # `embedded` extra (sqld-py), imports it only inside functions, and only
            # _connection.Connection._embed imports the module, when replica= is given.
            assert _imports_at_module_level(path) & services == set(), path
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not {n.split(".")[0] for n in names} & services, f"{path} imports {names}"


def _imports_at_module_level(path) -> set[str]:
    import ast
    tree = ast.parse(path.read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out.add((node.module or "").split(".")[0])
    return out


def test_plain_use_of_the_client_never_imports_the_embedded_module():
    import subprocess
    import sys
    code = "import sys, sqldclient; assert 'sqldclient._embedded' not in sys.modules; assert 'grpc' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
