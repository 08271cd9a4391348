"""The one classifier (common/statement.py) and the one lexer (common/sqltext.py)."""
import pytest

from sqld.common import statement as st
from sqld.common.sqltext import T, significant, tokens


@pytest.mark.parametrize("sql, kind, verb", [
    ("select 1", st.READ, "SELECT"),
    ("  -- c\n /* x */ VALUES (1)", st.READ, "VALUES"),
    ("explain query plan insert into t values (1)", st.READ, "EXPLAIN"),
    ("with x as (select 1) select * from x", st.READ, "SELECT"),
    ("with x as (select 'insert') select * from x", st.READ, "SELECT"),
    ("with recursive x(n) as (select 1 union all select n+1 from x) insert into t select n from x",
     st.WRITE, "INSERT"),
    ("WITH a AS MATERIALIZED (SELECT 1), b AS (SELECT 2) DELETE FROM t", st.WRITE, "DELETE"),
    ("insert into t values ('select')", st.WRITE, "INSERT"),
    ("create table t(a)", st.WRITE, "CREATE"),
    ("pragma table_info(t)", st.WRITE, "PRAGMA"),
    ("begin", st.BEGIN, "BEGIN"),
    ("start transaction isolation level serializable, read only", st.BEGIN_READ_ONLY, "START"),
    ("BEGIN READ WRITE", st.BEGIN, "BEGIN"),
    ("commit", st.COMMIT, "COMMIT"),
    ("end", st.COMMIT, "END"),
    ("rollback", st.ROLLBACK, "ROLLBACK"),
    ("abort", st.ROLLBACK, "ABORT"),
    ("rollback to savepoint a", st.ROLLBACK_TO, "ROLLBACK"),
    ("ROLLBACK TRANSACTION TO a", st.ROLLBACK_TO, "ROLLBACK"),
    ("savepoint a", st.SAVEPOINT, "SAVEPOINT"),
    ("release savepoint a", st.SAVEPOINT, "RELEASE"),
    ("", st.WRITE, ""),
    ("with", st.WRITE, ""),
])
def test_classify(sql, kind, verb):
    c = st.classify(sql)
    assert (c.kind, c.verb) == (kind, verb)
    assert c.read_only == (kind == st.READ)
    assert c.control == (kind in st.CONTROL)


def test_kind_travels_or_is_classified():
    from sqld.v1 import common_pb2
    assert st.kind_of(common_pb2.Statement(sql="select 1")) == st.READ
    assert st.kind_of(common_pb2.Statement(sql="select 1", kind=st.WRITE)) == st.WRITE


@pytest.mark.parametrize("sql", [
    "select 'it''s' as \"a\"\"b\", $1, ?2, :n, @m, $v, x::int -- tail",
    "select 1; /* unterminated",
    "select 'unterminated",
    "SELECT é, 0x1F, 1.5e-3, .5 FROM t WHERE a->>'k' <> b || c",
    "",
])
def test_lexer_round_trips(sql):
    assert "".join(t.text for t in tokens(sql)) == sql
    assert "".join(t.text for t in tokens(sql, brackets=True)) == sql


def test_lexer_kinds():
    toks = significant("select a::text, $1, :n, 'x', \"q\", [b] from t", brackets=True)
    kinds = [t.kind for t in toks]
    assert kinds == [T.WORD, T.WORD, T.CAST, T.WORD, T.OP, T.PARAM, T.OP, T.PARAM, T.OP, T.STR, T.OP,
                     T.QID, T.OP, T.QID, T.WORD, T.WORD]
    assert [t.kind for t in significant("[b]")] == [T.OP, T.WORD, T.OP]
