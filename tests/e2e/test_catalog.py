"""The pg_catalog emulation with real clients: psql meta-commands, SQLAlchemy 2 (psycopg), asyncpg."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg
import psycopg
import pytest
from sqlalchemy import Float, ForeignKey, Integer, String, create_engine, inspect, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tests.e2e.test_psql import psql

# asyncpg's introspection query as recorded against PostgreSQL 15 (from shared/reference/client-traces)
INTROSPECTION = Path(__file__).resolve().parents[1] / "testdata" / "asyncpg_introspection.sql"


def _run(stack, *commands: str) -> str:
    args = [a for c in commands for a in ("-c", c)]
    out = psql(stack, *args)
    assert out.returncode == 0 and not out.stderr, out.stderr
    return out.stdout


def test_psql_meta_commands_follow_the_live_schema(stack):
    _run(stack, "DROP TABLE IF EXISTS cat_child", "DROP TABLE IF EXISTS cat_parent",
         "CREATE TABLE cat_parent (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL, score REAL, raw BLOB)",
         "CREATE INDEX cat_parent_name_idx ON cat_parent (name)",
         "CREATE TABLE cat_child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES cat_parent(id), "
         "code TEXT UNIQUE)")
    dt = _run(stack, r"\dt")
    assert re.search(r"public \| cat_parent +\| table", dt) and re.search(r"public \| cat_child +\| table", dt)
    assert "cat_parent_name_idx" not in dt
    d_all = _run(stack, r"\d")
    assert "cat_parent" in d_all
    d = _run(stack, r"\d cat_parent")
    assert 'Table "public.cat_parent"' in d
    assert re.search(r"id +\| integer +\| +\| not null", d)  # the declared types, as PostgreSQL prints them
    assert re.search(r"name +\| character varying\(20\) +\| +\| not null", d)
    assert re.search(r"score +\| real +\| +\| *\|", d)
    assert re.search(r"raw +\| blob", d)
    assert '"cat_parent_pkey" PRIMARY KEY, btree (id)' in d
    assert '"cat_parent_name_idx" btree (name)' in d
    assert 'TABLE "cat_child" CONSTRAINT "cat_child_parent_id_fkey" FOREIGN KEY (parent_id) REFERENCES cat_parent(id)' in d
    child = _run(stack, r"\d cat_child")
    assert '"cat_child_code_key" UNIQUE CONSTRAINT, btree (code)' in child
    assert "FOREIGN KEY (parent_id) REFERENCES cat_parent(id)" in child
    di = _run(stack, r"\di")
    assert re.search(r"cat_parent_name_idx +\| index +\| postgres +\| cat_parent", di)
    assert re.search(r"cat_child_code_key +\| index", di)
    _run(stack, "DROP TABLE cat_child")
    assert "cat_child" not in _run(stack, r"\dt")
    missing = psql(stack, "-c", r"\d cat_child")
    assert "Did not find any relation named" in missing.stderr


def test_psql_l_dn_conninfo(stack):
    assert re.search(r"^ main +\| postgres +\| UTF8", _run(stack, r"\l"), re.M)
    assert re.search(r"^ public +\| pg_database_owner", _run(stack, r"\dn"), re.M)  # as in PostgreSQL 15
    assert 'You are connected to database "main"' in _run(stack, r"\conninfo")


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "sa_author"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50), index=True)
    rating: Mapped[float | None] = mapped_column(Float)


class Book(Base):
    __tablename__ = "sa_book"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("sa_author.id"))
    title: Mapped[str] = mapped_column(String, unique=True)


@pytest.fixture
def engine(stack):
    eng = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{stack.ports.pg}/main")
    Base.metadata.drop_all(eng)
    yield eng
    Base.metadata.drop_all(eng)
    eng.dispose()


def test_sqlalchemy_orm_round_trip(engine):
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        a = Author(name="ann", rating=4.5)
        s.add(a)
        s.commit()
        assert a.id is not None
        s.add_all([Book(author_id=a.id, title="one"), Book(author_id=a.id, title="two")])
        s.commit()
        a.name = "anne"
        s.commit()
        author_id = a.id
    with Session(engine) as s:
        assert [(x.name, x.rating) for x in s.scalars(select(Author))] == [("anne", 4.5)]
        assert sorted(b.title for b in s.scalars(select(Book).where(Book.author_id == author_id))) == ["one", "two"]


def test_sqlalchemy_reflection(engine):
    Base.metadata.create_all(engine)
    insp = inspect(engine)
    assert {"sa_author", "sa_book"} <= set(insp.get_table_names())
    cols = {c["name"]: c for c in insp.get_columns("sa_author")}
    assert list(cols) == ["id", "name", "rating"]
    assert not cols["id"]["nullable"] and not cols["name"]["nullable"] and cols["rating"]["nullable"]
    assert type(cols["rating"]["type"]).__name__ == "DOUBLE_PRECISION"
    assert insp.get_pk_constraint("sa_author")["constrained_columns"] == ["id"]
    idx = insp.get_indexes("sa_author")
    assert [(i["name"], i["column_names"], bool(i["unique"])) for i in idx] == [("ix_sa_author_name", ["name"], False)]
    fks = insp.get_foreign_keys("sa_book")
    assert [(f["constrained_columns"], f["referred_table"], f["referred_columns"]) for f in fks] == \
        [(["author_id"], "sa_author", ["id"])]
    assert [u["column_names"] for u in insp.get_unique_constraints("sa_book")] == [["title"]]
    Book.__table__.drop(engine)
    assert "sa_book" not in inspect(engine).get_table_names()


def test_psycopg_to_regtype_and_oids_agree(stack):
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        sql = ("SELECT typname AS name, oid, typarray AS array_oid, oid::regtype::text AS regtype, "
               "typdelim AS delimiter FROM pg_type t WHERE t.oid = to_regtype(%s) ORDER BY t.oid")
        assert conn.execute(sql, ["hstore"]).fetchall() == []
        assert conn.execute(sql, ["int8"]).fetchall() == [("int8", 20, 1016, "bigint", ",")]
        conn.execute("DROP TABLE IF EXISTS cat_types")
        conn.execute("CREATE TABLE cat_types (i INTEGER, r REAL, t TEXT, b BLOB, n NUMERIC, f BOOLEAN)")
        conn.execute("INSERT INTO cat_types VALUES (1, 1.5, 'x', x'00', 2, 1)")
        described = [d.type_code for d in conn.execute("SELECT * FROM cat_types").description]
        catalog = [r[0] for r in conn.execute(
            "SELECT a.atttypid FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relname = 'cat_types' AND a.attnum > 0 ORDER BY a.attnum")]
        assert catalog == described == [20, 701, 25, 17, 1700, 16]
        row = conn.execute("SELECT relname, relkind, relhasindex FROM pg_catalog.pg_class "
                           "WHERE relname = 'cat_types'").fetchone()
        assert row == ("cat_types", "r", False)


def _introspection_sql() -> str:
    lines = INTROSPECTION.read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith("-- ")).strip()


def test_asyncpg_introspection_query_answers(stack):
    sql = _introspection_sql()
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        rows = conn.execute(sql.replace("$1::oid[]", "%s::oid[]"), ["{23,1009}"]).fetchall()
    by_oid = {r[0]: r for r in rows}
    assert by_oid[23][2] == "int4" and by_oid[1009][2] == "_text" and by_oid[1009][5] == 25

    async def main() -> list:
        conn = await asyncpg.connect(host="127.0.0.1", port=stack.ports.pg, user="postgres", database="main")
        try:
            return await conn.fetch("SELECT oid, typname, typelem FROM pg_type WHERE typname IN ('int4', 'text') "
                                    "ORDER BY oid")
        finally:
            await conn.close()
    assert [tuple(r) for r in asyncio.run(main())] == [(23, "int4", 0), (25, "text", 0)]
