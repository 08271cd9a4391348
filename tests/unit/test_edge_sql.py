"""Edge SQL handling without sockets: rewriting, parameters, session commands, COPY, cursors."""
from __future__ import annotations

import struct
import uuid

import pytest

from sqld.common.sqlstate import SqlError
from sqld.common.sqltext import CAST, significant
from sqld.edge import colnames, commands, copyformat, cursors, dispatch, params, types
from sqld.edge.sqlparts import operand_start, read_type, split_select_list
from sqld.edge.sqlrewrite import rewrite
from sqld.v1 import common_pb2 as pb


@pytest.mark.parametrize("sql, out, n", [
    ("select $2, $1", "select ?2, ?1", 2),
    ("select '$1', \"$2\" -- $3\n", "select '$1', \"$2\" -- $3\n", 0),
    ("select $1::int", "select CAST(?1 AS INTEGER)", 1),
    ("select x::double precision from t", "select CAST(x AS REAL) from t", 0),
    ("select f(a, b)::text", "select CAST(f(a, b) AS TEXT)", 0),
    ("select t.c::numeric(10, 2)", "select CAST(t.c AS NUMERIC)", 0),
    ("select 'a'::timestamp with time zone", "select CAST('a' AS TEXT)", 0),
    ("select $10", "select ?10", 10),
    ("select $01, '$2', x$y, $3 /* $4 */", "select ?1, '$2', x$y, ?3 /* $4 */", 3),  # a $ not a parameter
    ("select f($1)::int8, ($2 + 1)::text", "select CAST(f(?1) AS INTEGER), CAST((?2 + 1) AS TEXT)", 2),
    ("select a:: 5, c ::  int", "select a:: 5, CAST(c AS INTEGER)", 0),  # no type after the first ::, left
    ("select $1, x ~ '^a$'", "select ?1, x ~ '^a$'", 1),
])
def test_rewrite(sql, out, n):
    r = rewrite(sql)
    assert (r.sql, r.param_count) == (out, n)


def test_select_list_hints():
    assert rewrite("select $1::int8, count(*), 1, 2.5, 'x', a + b as s from t").column_hints == \
        ["INTEGER", "INTEGER", "INTEGER", "REAL", "TEXT", ""]
    assert rewrite("insert into t values (1)").column_hints == []
    assert rewrite("select $2, $1 as a, ?1, ?3, :n, 0x1F, 1e3").column_hints == \
        ["?2", "?1", "?1", "", "", "INTEGER", "REAL"]  # SQLite's ?3 is not one of the statement's $n


def test_sql_parts():
    words = significant("select a.b::int, f(x)::double precision, (1 + 2)::t[] from t where y")
    casts = [i for i, t in enumerate(words) if t.kind is CAST]
    assert [words[operand_start(words[:i])].text for i in casts] == ["a", "f", "("]
    assert [read_type(words, i + 1)[0] for i in casts] == ["int", "double precision", "t"]
    assert read_type(significant("x::pg_catalog.int4"), 2) == ("int4", 5)
    items, rest = split_select_list(words, 1)
    assert ["".join(t.text for t in item) for item in items] == ["a.b::int", "f(x)::doubleprecision", "(1+2)::t[]"]
    assert [t.text for t in rest] == ["from", "t", "where", "y"]


@pytest.mark.parametrize("sql, names", [
    ("SELECT 1, 'x', a + 1, -a, a || b, a IS NULL, NOT a, a BETWEEN 1 AND 2, a IN (1, 2), x NOTNULL FROM t",
     ["?column?"] * 10),
    ("SELECT true, false, null, 1.5, $1", ["?column?"] * 5),
    ("SELECT a, t.b, \"C\", *, t.*, a AS x, b y, count(*) n, 1 one, a AS \"Q\" FROM t",
     [None, None, None, "*", "*", None, None, None, None, None]),
    ("select count(*), max(a), pg_catalog.lower(b), \"Upper\"(c), coalesce(a, 1), nullif(a, 1) from t",
     ["count", "max", "lower", "Upper", "coalesce", "nullif"]),
    ("SELECT row_number() OVER (ORDER BY a), count(*) FILTER (WHERE a > 1), rank() OVER w, EXISTS (SELECT 1) FROM t",
     ["row_number", "count", "rank", "exists"]),
    ("SELECT a::int, 1::int, '1'::integer, x::text::int, 1::text::int8, $1::double precision, 2::numeric(10,2)",
     ["a", "int4", "int4", "x", "int8", "float8", "numeric"]),
    ("SELECT CAST(a AS int), CAST(1 AS bigint), CAST(1+2 AS text), (a+b)::real, 1::\"char\", 1::pg_catalog.int4",
     ["a", "int8", "text", "float4", "char", "int4"]),
    ("SELECT 1::timestamp with time zone, a::varchar(3), 'x'::character varying, 1::int[], a COLLATE nocase",
     ["timestamptz", "a", "varchar", "int4", "a"]),
    ("SELECT CASE WHEN a THEN 1 END, CASE WHEN a THEN 1 ELSE b END, CASE a WHEN 1 THEN 2 ELSE 3 END, "
     "CASE WHEN a THEN 1 ELSE 2::int END FROM t", ["case", "b", "case", "case"]),
    ("SELECT (a), (a + 1), (1, 2), (SELECT max(b) FROM u), (SELECT 1), (SELECT b AS z FROM u), (SELECT u.c FROM u)",
     ["a", "?column?", "row", "max", "?column?", "z", "c"]),
    ("SELECT current_timestamp, CURRENT_DATE, date '2020-01-01', x'ff', trim(a), trim(LEADING 'x' FROM a)",
     ["current_timestamp", "current_date", "date", "?column?", "btrim", "ltrim"]),
    ("WITH w AS (SELECT 1) SELECT DISTINCT count(*) FROM w;", ["count"]),
    ("/* hi */ SELECT 1 UNION SELECT a FROM t", ["?column?"]),
    ("INSERT INTO t VALUES (1) RETURNING a, a + 1, lower(b)", [None, "?column?", "lower"]),
    ("UPDATE t SET a = 1", []),
    ("VALUES (1, 2)", []),
    ("SELECT a[1], f(x) y z, a zone, (SELECT *  FROM t)", [None, None, None, None]),  # unsure: SQLite's names
])
def test_postgres_column_names(sql, names):
    assert rewrite(sql).column_names == names


def test_column_names_applied_around_stars():
    cols = [pb.Column(name=n) for n in ("1", "a", "b", "c", "a+1")]
    colnames.apply(["?column?", colnames.STAR, "?column?"], cols)
    assert [c.name for c in cols] == ["?column?", "a", "b", "c", "?column?"]
    cols = [pb.Column(name=n) for n in ("1", "2")]
    colnames.apply(["?column?"], cols)  # the list and the columns disagree: SQLite's names stay
    assert [c.name for c in cols] == ["1", "2"]


@pytest.mark.parametrize("data, oid, fmt, value", [
    (b"42", types.INT8, 0, pb.Value(integer=42)),
    (struct.pack("!i", -7), params.INT4, 1, pb.Value(integer=-7)),
    (struct.pack("!h", 3), params.INT2, 1, pb.Value(integer=3)),
    (struct.pack("!d", 0.5), types.FLOAT8, 1, pb.Value(real=0.5)),
    (b"Infinity", types.FLOAT8, 0, pb.Value(real=float("inf"))),
    (b"t", types.BOOL, 0, pb.Value(integer=1)),
    (b"\x00", types.BOOL, 1, pb.Value(integer=0)),
    (b"12.50", types.NUMERIC, 0, pb.Value(real=12.5)),
    (b"12", types.NUMERIC, 0, pb.Value(integer=12)),
    (b"\\x00ff", types.BYTEA, 0, pb.Value(blob=b"\x00\xff")),
    (b"\x00\xff", types.BYTEA, 1, pb.Value(blob=b"\x00\xff")),
    (uuid.UUID(int=1).bytes, params.UUID, 1, pb.Value(text=str(uuid.UUID(int=1)))),
    (struct.pack("!i", 1), params.DATE, 1, pb.Value(text="2000-01-02")),
    (struct.pack("!q", 1_500_000), params.TIMESTAMP, 1, pb.Value(text="2000-01-01 00:00:01.500000")),
    (b"\x01{}", params.JSONB, 1, pb.Value(text="{}")),
    (b"anything", 0, 0, pb.Value(text="anything")),
    (None, types.INT8, 1, pb.Value(null=True)),
])
def test_decode_params(data, oid, fmt, value):
    assert params.decode(data, oid, fmt) == value


@pytest.mark.parametrize("data, oid, fmt", [(b"x", types.INT8, 0), (b"\x00", types.INT8, 1), (b"maybe", types.BOOL, 0)])
def test_bad_params_are_22p02(data, oid, fmt):
    with pytest.raises(SqlError) as info:
        params.decode(data, oid, fmt)
    assert info.value.sqlstate == "22P02"


@pytest.mark.parametrize("data, fmt, shown", [(b"a\xff", 0, "0xff"), (b"\xc3(", 1, "0xc3 0x28"),
                                              (b"\xf0\x9f\x98", 0, "0xf0 0x9f 0x98")])
def test_params_not_utf8_are_22021(data, fmt, shown):
    with pytest.raises(SqlError) as info:
        params.decode(data, types.TEXT, fmt)
    assert (info.value.sqlstate, str(info.value)) == ("22021", 'invalid byte sequence for encoding "UTF8": ' + shown)


def test_binary_numeric_round_trip():
    import decimal
    for text in ["0", "1", "-12.25", "10000", "123456789.000123", "0.0001", "1e20"]:
        d = decimal.Decimal(text)
        assert params._decode_numeric_binary(types._numeric_binary(d)) == d


def test_binary_results():
    assert types.to_binary(pb.Value(integer=5), types.INT8) == struct.pack("!q", 5)
    assert types.to_binary(pb.Value(integer=5), types.FLOAT8) == struct.pack("!d", 5.0)
    assert types.to_binary(pb.Value(integer=1), types.BOOL) == b"\x01"
    assert types.to_binary(pb.Value(text="x"), types.TEXT) == b"x"
    assert types.to_binary(pb.Value(null=True), types.TEXT) is None
    with pytest.raises(SqlError):
        types.to_binary(pb.Value(text="abc"), types.INT8)


def test_session_commands():
    s = commands.Settings("ann", {"application_name": "app", "DateStyle": "ISO, MDY"})
    assert commands.local("SHOW application_name", s, "main", 1).rows == [["app"]]
    r = commands.local("SET application_name TO 'other'", s, "main", 1)
    assert r.tag == "SET" and r.changed == [("application_name", "other")]
    assert commands.local("select current_setting('application_name')", s, "main", 1).rows == [["other"]]
    assert commands.local("RESET ALL", s, "main", 1).changed == [("application_name", "app")]
    assert commands.local("show transaction isolation level", s, "main", 1).columns == ["transaction_isolation"]
    assert commands.local("select pg_catalog.version()", s, "main", 1).rows[0][0].startswith("PostgreSQL 15.")
    assert commands.local("SHOW nope", s, "main", 1).error.sqlstate == "42704"
    assert commands.local("SET client_encoding = 'LATIN1'", s, "main", 1).error.sqlstate == "22023"
    assert commands.local("SET statement_timeout = '2s'", s, "main", 1).tag == "SET"
    assert s.statement_timeout_s() == 2.0
    assert commands.local("SELECT 1", s, "main", 1) is None
    assert commands.local("UNLISTEN *", s, "main", 1).tag == "UNLISTEN"


def test_copy_parse_and_formats():
    spec = copyformat.parse("COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER true, DELIMITER ';')")
    assert (spec.table, spec.columns, spec.csv, spec.header, spec.delimiter) == ("t", ["a", "b"], True, True, ";")
    assert copyformat.parse_rows("a;b\n1;x\n2;\n", spec) == [["1", "x"], ["2", None]]
    text = copyformat.parse("copy t from stdin")
    assert copyformat.parse_rows("1\ta\\tb\n2\t\\N\n\\.\n", text) == [["1", "a\tb"], ["2", None]]
    assert copyformat.format_rows(["a"], [["x\ty"], [None]], text) == [b"x\\ty\n", b"\\N\n"]
    with pytest.raises(SqlError) as info:
        copyformat.parse("COPY t FROM STDIN (FORMAT binary)")
    assert info.value.sqlstate == "0A000"
    with pytest.raises(SqlError):
        copyformat.parse("COPY t FROM '/etc/passwd'")


def test_copy_csv_quoted_empty_is_a_string_and_unquoted_empty_is_null():
    spec = copyformat.parse("COPY t FROM STDIN WITH (FORMAT csv)")
    data = 'a,"",,"x,""y""",\r\n"multi\nline",z"q"w, \n\\.\n'
    assert copyformat.parse_rows(data, spec) == [["a", "", None, 'x,"y"', None], ["multi\nline", "zqw", " "]]
    assert copyformat.parse_rows('1,"\\."\n\\.\nignored\n', spec) == [["1", "\\."]]
    with pytest.raises(SqlError) as info:
        copyformat.parse_rows('1,"open\n', spec)
    assert info.value.sqlstate == "22P04"


def test_copy_csv_options():
    spec = copyformat.parse("COPY t (a, \"B\", c) FROM STDIN (FORMAT csv, NULL 'NA', FORCE_NOT_NULL (a, b), "
                      "FORCE_NULL (c), ESCAPE '\\', QUOTE '''')")
    assert (spec.null, spec.escape, spec.quote, spec.force_not_null, spec.force_null) == \
        ("NA", "\\", "'", ["a", "b"], ["c"])
    rows = copyformat.parse_rows("NA,'NA','NA'\n,'it\\'s',NA\n", spec)
    assert rows == [[None, "NA", "NA"], ["", "it's", None]]
    copyformat.force(rows, spec, ["a", "b", "c"])
    assert rows == [["NA", "NA", None], ["", "it's", None]]
    with pytest.raises(SqlError) as info:
        copyformat.force(rows, copyformat.parse("COPY t (a) FROM STDIN (FORMAT csv, FORCE_NULL (zz))"), ["a"])
    assert info.value.sqlstate == "42P10"
    star = copyformat.parse("COPY t FROM STDIN (FORMAT csv, FORCE_NOT_NULL *)")
    rows = copyformat.parse_rows(',""\n', star)
    copyformat.force(rows, star, [])
    assert rows == [["", ""]]
    for bad in ("COPY t FROM STDIN (FORCE_NOT_NULL (a))", "COPY t TO STDOUT (FORMAT csv, FORCE_NULL (a))"):
        with pytest.raises(SqlError) as info:
            copyformat.parse(bad)
        assert info.value.sqlstate == "0A000"
    assert copyformat.parse("COPY t FROM STDIN (FORMAT csv, NULL '\\N')").null == "\\N"  # given: not CSV's default ''


def test_copy_csv_out_quotes_empty_strings_not_nulls():
    spec = copyformat.parse("COPY t TO STDOUT (FORMAT csv, HEADER)")
    out = copyformat.format_rows(["a", "b c"], [["", None], ['x,"y"', "line\nbreak"]], spec)
    assert out == [b"a,b c\n", b'"",\n', b'"x,""y""","line\nbreak"\n']
    assert copyformat.format_rows(["a"], [["\\."]], copyformat.parse("COPY t TO STDOUT (FORMAT csv)")) == [b'"\\."\n']


def test_cursor_fetch_forward_only():
    cs = cursors.Cursors()
    rs = pb.ResultSet(columns=[pb.Column(name="a")], rows=[pb.Row(values=[pb.Value(integer=i)]) for i in range(5)])
    cs.declare("c", rs, hold=False)
    assert cs.fetch("FETCH 2 FROM c").tag == "FETCH 2"
    assert cs.fetch("MOVE FORWARD 1 IN c").tag == "MOVE 1"
    assert [r.values[0].integer for r in cs.fetch("FETCH ALL FROM c").rows] == [3, 4]
    with pytest.raises(SqlError):
        cs.fetch("FETCH PRIOR FROM c")
    cs.end_transaction()
    with pytest.raises(SqlError) as info:
        cs.fetch("FETCH 1 FROM c")
    assert info.value.sqlstate == "34000"


@pytest.mark.parametrize("sql, route", [
    ("SET application_name = 'x'", dispatch.Route.LOCAL),
    ("show TimeZone", dispatch.Route.LOCAL),
    ("CLOSE ALL", dispatch.Route.LOCAL),
    ("SET synchronous_commit = off", dispatch.Route.REMOTE),  # the scheduler's setting
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", dispatch.Route.DECLARE),
    ("fetch 10 from c", dispatch.Route.FETCH),
    ("MOVE NEXT IN c", dispatch.Route.FETCH),
    ("CLOSE c", dispatch.Route.CLOSE),
    ("COPY t FROM STDIN", dispatch.Route.COPY),
    ("SELECT 1", dispatch.Route.REMOTE),
    ("INSERT INTO t VALUES (1)", dispatch.Route.REMOTE),
])
def test_route(sql, route):
    dispatch.route.cache_clear()
    assert dispatch.route(sql) is route
    assert dispatch.route(sql) is route  # remembered
