"""SQLAlchemy's SQLite dialect on sqldclient (#14 item 6): the same ORM program on a local SQLite
file (the oracle, pysqlite) and on the stack (`sqlite+sqldclient://`), the same outcome."""
from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm


def program(engine: sa.Engine, suffix: str) -> list[Any]:
    """An application's life: create_all, insert, query, update, reflection, a rollback."""

    class Base(orm.DeclarativeBase):
        pass

    class Author(Base):
        __tablename__ = f"author_{suffix}"
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        name: orm.Mapped[str] = orm.mapped_column(sa.String(50), unique=True)
        born: orm.Mapped[datetime.date | None]
        books: orm.Mapped[list[Book]] = orm.relationship(back_populates="author", order_by="Book.id")

    class Book(Base):
        __tablename__ = f"book_{suffix}"
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        title: orm.Mapped[str] = orm.mapped_column(sa.Text)
        price: orm.Mapped[float] = orm.mapped_column(sa.Numeric(8, 2, asdecimal=False), default=0)
        cover: orm.Mapped[bytes | None] = orm.mapped_column(sa.LargeBinary)
        in_print: orm.Mapped[bool] = orm.mapped_column(default=True)
        author_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey(f"author_{suffix}.id"), index=True)
        author: orm.Mapped[Author] = orm.relationship(back_populates="books")

    seen: list[Any] = []
    Base.metadata.create_all(engine)
    with orm.Session(engine) as s:
        ada = Author(name="Ada", born=datetime.date(1815, 12, 10),
                     books=[Book(title="Notes", price=12.5, cover=b"\x00\x01"), Book(title="Letters")])
        s.add_all([ada, Author(name="Grace")])
        s.commit()
        seen.append(("ids", ada.id, [b.id for b in ada.books]))
    with orm.Session(engine) as s:
        rows = s.execute(sa.select(Author.name, sa.func.count(Book.id)).outerjoin(Author.books)
                         .group_by(Author.name).order_by(Author.name)).all()
        seen.append(("query", [tuple(r) for r in rows]))
        ada = s.scalars(sa.select(Author).where(Author.name == "Ada")).one()
        seen.append(("loaded", ada.born, [(b.title, b.price, b.cover, b.in_print) for b in ada.books]))
        ada.books[1].price = 3.25
        ada.books[1].in_print = False
        s.commit()
        seen.append(("updated", s.scalars(sa.select(Book.price).where(~Book.in_print)).all()))
    with orm.Session(engine) as s:  # a transaction rolled back
        s.add(Author(name="Temp"))
        s.execute(sa.update(Book).values(price=0))
        s.flush()
        seen.append(("inside", s.scalar(sa.select(sa.func.count()).select_from(Author)),
                     s.scalars(sa.select(Book.price).order_by(Book.id)).all()))
        s.rollback()
        seen.append(("after rollback", s.scalar(sa.select(sa.func.count()).select_from(Author)),
                     s.scalars(sa.select(Book.price).order_by(Book.id)).all()))
    with orm.Session(engine) as s:  # a constraint error, then the session goes on
        s.add(Author(name="Ada"))
        try:
            s.commit()
        except sa.exc.IntegrityError as exc:
            seen.append(("integrity", type(exc.orig).__name__))
            s.rollback()
        seen.append(("authors", s.scalars(sa.select(Author.name).order_by(Author.id)).all()))
    insp = sa.inspect(engine)
    for table in (Author.__tablename__, Book.__tablename__):
        seen.append(("columns", [(c["name"], str(c["type"]), c["nullable"], c["primary_key"])
                                 for c in insp.get_columns(table)]))
        seen.append(("indexes", sorted((i["column_names"], i["unique"]) for i in insp.get_indexes(table))))
        seen.append(("fks", [(f["constrained_columns"], f["referred_columns"])
                             for f in insp.get_foreign_keys(table)]))
        seen.append(("pk", insp.get_pk_constraint(table)["constrained_columns"]))
    reflected = sa.MetaData()
    reflected.reflect(engine, only=[Book.__tablename__])
    book = reflected.tables[Book.__tablename__]
    with engine.connect() as conn:
        seen.append(("core", [tuple(r) for r in conn.execute(sa.select(book.c.title, book.c.price)
                                                                .order_by(book.c.id))]))
    seen.append(("has_table", insp.has_table(Author.__tablename__), insp.has_table(f"nope_{suffix}")))
    Base.metadata.drop_all(engine)
    return seen


@pytest.fixture
def engines(stack, tmp_path):
    local = sa.create_engine(f"sqlite:///{tmp_path / 'oracle.db'}")
    remote = sa.create_engine(f"sqlite+sqldclient://postgres@127.0.0.1:{stack.ports.pg}/main?connect_timeout=10")
    yield local, remote
    local.dispose()
    remote.dispose()


def test_orm_program_same_as_on_sqlite(engines):
    local, remote = engines
    suffix = uuid.uuid4().hex[:8]
    expected = program(local, suffix)
    got = program(remote, suffix)
    assert got == expected
    assert remote.dialect.driver == "sqldclient" and remote.dialect.name == "sqlite"


def test_module_and_creator_form(stack):
    """create_engine("sqlite://", module=sqldclient, creator=...) also works, through the dialect class."""
    import sqldclient
    url = f"postgresql://postgres@127.0.0.1:{stack.ports.pg}/main?connect_timeout=10"
    engine = sa.create_engine("sqlite+sqldclient://", module=sqldclient, creator=lambda: sqldclient.connect(url))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT sqlite_version()")).scalar() == sqldclient.sqlite_version
    finally:
        engine.dispose()
