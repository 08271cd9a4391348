"""SQLAlchemy's SQLite dialect on sqldclient: `create_engine("sqlite+sqldclient://user:pw@host:port/db")`.

The dialect is SQLAlchemy's own pysqlite dialect (SQL, types, reflection, transactions all
unchanged) with sqldclient as its DB-API module and three differences, each because the
database is on a server:
- the URL is the server's (`sqlite+sqldclient://user:pw@host:5432/main?sslmode=require`, or
  `sqlite+sqldclient:///main` with libpq's PGHOST, PGPORT, ... variables), not a file name;
- pysqlite registers `regexp()` and `floor()` as Python functions on each connection; the
  server's SQLite has both built in (regexp() is Python's `re.search` there too; floor() is
  SQLite's, which returns a REAL), so nothing is registered;
- isolation levels are SERIALIZABLE (SQLite's, always: READ UNCOMMITTED needs a shared cache
  in one process) and AUTOCOMMIT, without `PRAGMA read_uncommitted`, which the server refuses.

Registered under the entry point `sqlalchemy.dialects` ("sqlite.sqldclient") by client/pyproject.toml.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import exc
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPIModule, IsolationLevel


class SQLiteDialect_sqldclient(SQLiteDialect_pysqlite):  # noqa: N801 - SQLAlchemy's naming
    driver = "sqldclient"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> DBAPIModule:
        import sqldclient
        return sqldclient

    @classmethod
    def get_pool_class(cls, url: URL) -> Any:
        from sqlalchemy import pool
        if url.database in (None, "", ":memory:"):
            return pool.SingletonThreadPool  # as pysqlite does: one scratch database per thread
        return pool.QueuePool  # connections to a server, never a single in-process one

    def create_connect_args(self, url: URL) -> Any:
        if url.database in (None, "", ":memory:"):
            return [":memory:"], {}  # as sqlite:// means: a private scratch database on the server (PGHOST ...)
        query: dict[str, Any] = {k: v if isinstance(v, str) else v[-1] for k, v in url.query.items()}
        opts: dict[str, Any] = {k: query.pop(k) for k in ("timeout", "isolation_level", "detect_types",
                                                          "consistency") if k in query}
        if "timeout" in opts:
            opts["timeout"] = float(opts["timeout"])
        if "detect_types" in opts:
            opts["detect_types"] = int(opts["detect_types"])
        if url.host or url.port or url.username:
            target = URL.create("postgresql", url.username, url.password, url.host, url.port, url.database,
                                query)
            return [target.render_as_string(hide_password=False)], opts
        return [url.database], {**opts, **query}  # libpq's environment names the server

    def on_connect(self) -> Callable[[DBAPIConnection], None]:
        return _nothing  # regexp() and floor() are the server's

    def get_isolation_level(self, dbapi_connection: DBAPIConnection) -> IsolationLevel:
        return "SERIALIZABLE"

    def set_isolation_level(self, dbapi_connection: DBAPIConnection, level: IsolationLevel) -> None:
        if level == "AUTOCOMMIT":
            dbapi_connection.isolation_level = None
        elif level == "SERIALIZABLE":
            dbapi_connection.isolation_level = ""
        else:
            raise exc.ArgumentError(f"isolation level {level!r}: a sqld server offers SERIALIZABLE and AUTOCOMMIT")

    def get_isolation_level_values(self, dbapi_connection: DBAPIConnection) -> list[IsolationLevel]:
        return ["SERIALIZABLE", "AUTOCOMMIT"]


def _nothing(dbapi_connection: DBAPIConnection) -> None:
    pass


dialect = SQLiteDialect_sqldclient
