"""The pure parts of the s4 probes' fixes (tests/e2e/test_probes_s4.py runs them against processes)."""
from __future__ import annotations

import pytest

from sqld.common.sqlstate import SqlError
from sqld.edge import copyformat, guc, sqlitewire, timetravel
from sqld.edge.catalog import ddl, functions
from sqld.edge.copy import RowEnds


@pytest.mark.parametrize("sql", [
    "DO LANGUAGE sqlite $$INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)$$",
    "DO LANGUAGE sqlite $$COMMIT$$", "DO LANGUAGE sqlite $x$ rollback to s $x$", "DO LANGUAGE sqlite $$ $$",
    "CREATE TABLE t (a) WITH (sqlite_ddl='CREATE TABLE t (a); DROP TABLE u')",
    "CREATE TABLE t (a) WITH (sqlite_ddl='DELETE FROM u')",
])
def test_carried_sql_must_be_one_statement(sql):
    with pytest.raises(SqlError) as err:
        ddl.rewrite_ddl(sql)
    assert err.value.sqlstate == "42601"


def test_carried_sql_that_pg_dump_writes_runs():
    trigger = "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE a SET x = 1; DELETE FROM b; END"
    assert ddl.rewrite_ddl(f"DO LANGUAGE sqlite $sqlite${trigger}$sqlite$") == trigger
    assert ddl.rewrite_ddl("CREATE TABLE t (a) WITH (sqlite_ddl='CREATE TABLE t (a TEXT DEFAULT ''x'')')") \
        == "CREATE TABLE t (a TEXT DEFAULT 'x')"


def test_markers_inside_strings_and_comments_are_not_bound():
    sql = ("SELECT sqld_session_user(), 'sqld_session_user()', \"sqld_session_pid()\" -- sqld_session_pid()\n"
           ", /* sqld_session_pid() */ sqld_session_pid()")
    out = functions.bind(sql, "o'b", "main", 7, 0.0, 0.0, "v", "app")
    assert out == ("SELECT 'o''b', 'sqld_session_user()', \"sqld_session_pid()\" -- sqld_session_pid()\n"
                   ", /* sqld_session_pid() */ 7")


@pytest.mark.parametrize("options,value", [
    ("-c sqld.read_at=12", "12"), ("--sqld.read-at=5 -c sqld.read_at=6", "6"), ("-c sqld.read_at=1\\", "1"),
    ("-c 'x", None), ("\\", None), ("-c a.b=1", None),
])
def test_startup_option_reads_options_as_postgresql(options, value):
    assert guc.startup_option(options, "sqld.read_at") == value
    assert timetravel.from_startup({"options": options}) == value
    assert sqlitewire.startup_option({"options": options}, "sqld.read_at") == value


def _row_boundary(data: bytearray, spec) -> int:
    return RowEnds(spec).find(data)


def test_row_boundary_in_csv():
    csv = copyformat.parse("COPY t FROM STDIN (FORMAT csv)")
    assert _row_boundary(bytearray(b'a,"b\nc"\nd,"e'), csv) == 8
    assert _row_boundary(bytearray(b'a,"open\n' + b"x\n" * 5000), csv) == 0  # never a cut inside the quote
    assert _row_boundary(bytearray(b'a,"say ""hi""\n",b\nc\n'), csv) == 20
    escaped = copyformat.parse("COPY t FROM STDIN (FORMAT csv, ESCAPE '\\')")
    assert _row_boundary(bytearray(b'a,"x\\"\ny"\nb,"c\\"\n'), escaped) == 10
    assert _row_boundary(bytearray(b'a,"x\\\\"\nb\n'), escaped) == 10  # an escaped escape, then the quote closes
    text = copyformat.parse("COPY t FROM STDIN")
    assert _row_boundary(bytearray(b"x" * 100), text) == 0


@pytest.mark.parametrize("options", ["(FORMAT csv)", "(FORMAT csv, ESCAPE '\\')"])
def test_row_ends_fed_piece_by_piece_agree_with_one_scan(options):
    """The scan goes on where it stopped (never rescanning): any split of the input, including
    one between an escape and the character it escapes, finds the same row ends, and after a
    cut the positions stay right."""
    spec = copyformat.parse(f"COPY t FROM STDIN {options}")
    data = b'1,"a\\"b",c\n2,"d\\\\",e\n3,"f\ng",h\n4,"open\n'
    whole = RowEnds(spec).find(bytearray(data))
    assert whole > 0
    for split in range(1, len(data)):
        ends, held = RowEnds(spec), bytearray(data[:split])
        ends.find(held)
        held += data[split:]
        assert ends.find(held) == whole, split
    ends, held = RowEnds(spec), bytearray(data)
    cut = ends.find(held)
    del held[:cut]
    ends.cut(cut)
    held += b'x"\n5,y\n' if ends.in_quote else b'5,y\n'
    assert ends.find(held) == len(held)
