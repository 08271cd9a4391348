"""connect() and Connection: sqlite3's connection object over one psycopg connection.

The psycopg connection is always in autocommit mode; transactions are this module's, as in
sqlite3's legacy transaction control: an implicit `BEGIN <isolation_level>` before
INSERT/UPDATE/DELETE/REPLACE outside a transaction, none when isolation_level is None.
in_transaction is the server's transaction status (ReadyForQuery).
"""
from __future__ import annotations

import math
import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from . import _errors, _types
from ._cursor import Cursor

_LEVELS = ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE")
server_version: str | None = None  # the server's sqlite_version(), from the latest connect()


# The server's SQLite wire extension (README "SQLite wire extensions"), asked for at startup.
_WIRE_OPTION = "-c sqld.sqlite_wire=on"
_CONSISTENCY = ("strong", "read_your_writes", "bounded_staleness")


MEMORY = ":memory:"
REPLICATION_PUBLIC_PORT = 7018  # the replication service's --public-listen in `make run`
RYW_WAIT = 0.5  # seconds a read waits for the embedded replica to apply the connection's last write
MAINTENANCE = "postgres"  # the server's maintenance database, where scratch databases are made


def _conninfo(database: str | os.PathLike[str], timeout: float, uri: bool) -> dict[str, Any]:
    db = os.fspath(database)
    if db == MEMORY or db.startswith("file::memory:"):
        db = MEMORY  # a private scratch database on the server (Connection._scratch)
    if uri and db.startswith("file:"):
        raise _errors.NotSupportedError("file: URIs name a local SQLite file; pass a postgresql:// URL")
    kwargs: dict[str, Any] = {"connect_timeout": max(2, math.ceil(timeout))}
    if db.startswith(("postgresql://", "postgres://")):
        kwargs["conninfo"] = db
    else:
        kwargs["dbname"] = db  # PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE … fill in the rest (libpq)
    return kwargs


def _with_wire_option(kw: dict[str, Any]) -> dict[str, Any]:
    """The connection parameters with the extension added to libpq's `options` (the URL's,
    the caller's or PGOPTIONS)."""
    params = conninfo_to_dict(kw.pop("conninfo", ""), **kw)
    options = params.get("options") or os.environ.get("PGOPTIONS", "")
    params["options"] = f"{options} {_WIRE_OPTION}".strip()
    return params


class Connection:
    def __init__(self, database: str | os.PathLike[str], timeout: float = 5.0, detect_types: int = 0,
                 isolation_level: str | None = "DEFERRED", check_same_thread: bool = True,
                 factory: Any = None, cached_statements: int = 128, uri: bool = False,
                 consistency: str | None = None, replica: str | os.PathLike[str] | None = None,
                 sync_interval: float | None = None, replication: str | None = None, token: str | None = None,
                 ca: str | bytes | None = None, max_lag: float | None = 5.0, **kwargs: Any) -> None:
        self._pg: psycopg.Connection[Any] | None = None
        self._replica: Any = None  # _embedded.Replica (replica=): reads run on its local file
        self._local: Any = None
        self._local_reads = 0  # reads the embedded replica answered (tests, benchmarks)
        if consistency is not None and consistency not in _CONSISTENCY:
            raise ValueError("consistency must be strong, read_your_writes or bounded_staleness")
        params = _with_wire_option({**_conninfo(database, timeout, uri), **kwargs})
        self._drop_scratch: Callable[[], None] | None = None
        if params.get("dbname") == MEMORY:
            params = self._scratch(params)
        try:
            pg = psycopg.Connection.connect(autocommit=True, **params)
        except psycopg.Error as exc:
            self._end_scratch()
            raise _errors.translate(exc) from exc
        _types.configure(pg)
        self._pg = pg
        self._thread = threading.get_ident()
        self._check_same_thread = check_same_thread
        self._detect_types = detect_types
        self._isolation_level: str | None = None
        self.isolation_level = isolation_level
        self.row_factory: Any = None
        self.text_factory: Any = str
        self._last_rowid = 0
        # One round trip: the server's SQLite version, SQLite's rule for a failed statement inside
        # a transaction (it is undone, the transaction goes on), the session's read consistency.
        setup = "SELECT sqlite_version(); SET sqld.statement_errors = sqlite"
        if consistency is not None:
            setup += f"; SET sqld.consistency = {consistency}"
        global server_version
        try:
            server_version = self._scalar(setup)
            if replica is not None:
                self._embed(os.fspath(replica), sync_interval, replication, token, ca)
        except BaseException:
            pg.close()
            self._end_scratch()
            raise
        self._consistency = consistency
        self._max_lag = max_lag

    def _embed(self, path: str, sync_interval: float | None, target: str | None, token: str | None,
               ca: str | bytes | None) -> None:
        """replica=: this connection's reads run on an embedded replica of its database
        (_embedded.py; the module and sqld-py are imported only here)."""
        from . import _embedded
        pg = self._check()
        if pg.info.dbname.startswith("sqld_memory_"):
            raise _errors.NotSupportedError("replica= needs a database on the server, not :memory:")
        target = target or os.environ.get("SQLD_REPLICATION") or f"{pg.info.host}:{REPLICATION_PUBLIC_PORT}"
        token = token or os.environ.get("SQLD_TOKEN")
        ca = ca if ca is not None else os.environ.get("SQLD_CA")
        if isinstance(ca, str):
            with open(ca, "rb") as f:
                ca = f.read()
        rep = _embedded.open_replica(path, pg.info.dbname, target, token, ca, sync_interval)
        try:
            self._local = _embedded.reader(path)
            self._local.text_factory = _types.RawText  # the cursor applies text_factory, as for the server's
        except BaseException:
            rep.release()
            raise
        self._replica = rep

    def sync(self) -> int:
        """Embedded replica: apply the log up to the primary's head as of now; the frame number
        reached (NotSupportedError without replica=)."""
        self._check()
        if self._replica is None:
            raise _errors.NotSupportedError("sync() needs an embedded replica: connect(..., replica='local.db')")
        return int(self._replica.sync())

    def _read_locally(self, sql: str, names: tuple[str | None, ...], values: list[Any]) -> Any:
        """(description, rows) of a plain read run on the embedded replica, or None when it must
        run on the primary: inside a transaction, consistency strong, declared-type conversion,
        a replica lagging more than max_lag, the connection's last write not applied within
        RYW_WAIT, a statement that is not a plain read, or any error (the primary's answer is
        the one that counts)."""
        rep = self._replica
        pg = self._pg
        assert pg is not None  # the cursor checked the connection
        if (pg.info.transaction_status != TransactionStatus.IDLE or self._consistency == "strong" or self._detect_types
                or (self._max_lag is not None and rep.lag_seconds() > self._max_lag)):
            return None
        mine = int(pg.info.parameter_status("sqld.frame_no") or 0)  # SQLite wire extension
        if mine > rep.frame_no and not rep.wait_for(mine, RYW_WAIT if rep.streaming else 0):
            return None
        params: Any = values
        if names and names[0] is not None and all(n is not None and n[0] != "?" for n in names):
            params = {n[1:]: v for n, v in zip(names, values) if n is not None}
        try:
            cur = self._local.execute(sql, params)
            rows = cur.fetchall()
        except sqlite3.Error:
            return None
        self._local_reads += 1
        return cur.description, rows

    def _scratch(self, params: dict[str, Any]) -> dict[str, Any]:
        """":memory:": a private database made on the server for this connection (CREATE
        DATABASE from the maintenance database), dropped when it closes, is collected, or the
        process exits (a process killed outright leaves it: DROP DATABASE sqld_memory_...)."""
        maintenance = {**params, "dbname": MAINTENANCE}
        name = f"sqld_memory_{uuid.uuid4().hex}"
        try:
            with psycopg.Connection.connect(autocommit=True, **maintenance) as pg:
                pg.execute(f"CREATE DATABASE {name}".encode(), prepare=False)
        except psycopg.Error as exc:
            raise _errors.translate(exc) from exc
        self._drop_scratch = weakref.finalize(self, _drop_database, maintenance, name)
        return {**params, "dbname": name}

    def _end_scratch(self) -> None:
        if self._drop_scratch is not None:
            self._drop_scratch()

    # -- state checks
    def _check_thread(self) -> None:
        if self._check_same_thread and threading.get_ident() != self._thread:
            raise _errors.ProgrammingError(
                "SQLite objects created in a thread can only be used in that same thread. "
                f"The object was created in thread id {self._thread} and this is thread id {threading.get_ident()}.")

    def _check(self) -> psycopg.Connection[Any]:
        self._check_thread()
        if self._pg is None or self._pg.closed:
            raise _errors.ProgrammingError("Cannot operate on a closed database.")
        return self._pg

    def _scalar(self, sql: str) -> Any:
        pg = self._check()
        try:
            with psycopg.RawCursor(pg) as cur:
                cur.execute(sql.encode())
                row = cur.fetchone()
        except psycopg.Error as exc:
            raise _errors.translate(exc) from exc
        value = row[0] if row else None
        return value.decode() if isinstance(value, _types.RawText) else value

    def _simple(self, sql: str) -> None:
        pg = self._check()
        try:
            pg.execute(sql.encode(), prepare=False)
        except psycopg.Error as exc:
            raise _errors.translate(exc) from exc

    def _begin(self) -> None:
        self._simple(f"BEGIN {self._isolation_level}".rstrip())

    # -- sqlite3's Connection
    @property
    def isolation_level(self) -> str | None:
        return self._isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        if value is None:
            if self._pg is not None and self.in_transaction:
                self.commit()
            self._isolation_level = None
            return
        if not isinstance(value, str):
            raise TypeError("isolation_level must be str or None")
        if value.upper() not in _LEVELS:
            raise ValueError("isolation_level string must be '', 'DEFERRED', 'IMMEDIATE', or 'EXCLUSIVE'")
        self._isolation_level = value

    @property
    def total_changes(self) -> int:
        """Rows changed by this connection's statements and their triggers (the server counts
        them: the ParameterStatus sqld.total_changes of its SQLite wire extension)."""
        return int(self._check().info.parameter_status("sqld.total_changes") or 0)

    @property
    def in_transaction(self) -> bool:
        pg = self._check()
        return pg.info.transaction_status != TransactionStatus.IDLE

    def cursor(self, factory: Callable[[Connection], Cursor] = Cursor) -> Cursor:
        self._check()
        cur = factory(self)
        if not isinstance(cur, Cursor):
            raise TypeError("factory must return a cursor, not " + type(cur).__name__)
        if self.row_factory is not None:
            cur.row_factory = self.row_factory
        return cur

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> Cursor:
        return self.cursor().executescript(sql_script)

    def commit(self) -> None:
        pg = self._check()
        if pg.info.transaction_status == TransactionStatus.INERROR:
            # A failed statement ended the transaction (SQLite rolled it back, e.g. after an
            # interrupt or a full disk). Say so instead of a COMMIT that rolls back.
            self._simple("ROLLBACK")
            raise _errors.OperationalError(
                "cannot commit: an earlier statement failed and the transaction was rolled back")
        if self.in_transaction:
            self._simple("COMMIT")

    def rollback(self) -> None:
        self._check()
        if self.in_transaction:
            self._simple("ROLLBACK")

    def close(self) -> None:
        self._check_thread()
        if self._replica is not None:
            self._local.close()
            self._replica.release()
            self._replica = None
        if self._pg is not None and not self._pg.closed:
            self._pg.close()  # like sqlite3, an open transaction is rolled back, not committed
        self._end_scratch()  # ":memory:": its database goes with it

    def iterdump(self, *, filter: str | None = None) -> Iterator[str]:  # noqa: A002 - sqlite3's name
        """The database as SQL text, as sqlite3 dumps it: the standard library's own dump (plain
        queries over this DB-API connection: sqlite_master, PRAGMA table_info, quote())."""
        from sqlite3.dump import _iterdump  # type: ignore[attr-defined]
        self._check()
        return _iterdump(self) if filter is None else _iterdump(self, filter=filter)

    def interrupt(self) -> None:
        """Cancel the running statement (a CancelRequest); it raises OperationalError."""
        pg = self._check()
        pg.cancel_safe()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.rollback()
                raise
        else:
            self.rollback()

    @property
    def closed(self) -> bool:
        return self._pg is None or self._pg.closed

    # -- what needs SQLite in this process: refused clearly
    def _unsupported(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            self._check()
            raise _errors.NotSupportedError(
                f"{name}() needs SQLite in this process; the database is on a sqld server")
        return refuse

    def __getattr__(self, name: str) -> Any:
        if name in _UNSUPPORTED:
            return self._unsupported(name)
        raise AttributeError(name)

    Warning = _errors.Warning
    Error = _errors.Error
    InterfaceError = _errors.InterfaceError
    DatabaseError = _errors.DatabaseError
    DataError = _errors.DataError
    OperationalError = _errors.OperationalError
    IntegrityError = _errors.IntegrityError
    InternalError = _errors.InternalError
    ProgrammingError = _errors.ProgrammingError
    NotSupportedError = _errors.NotSupportedError


_UNSUPPORTED = {"create_function", "create_aggregate", "create_window_function", "create_collation",
                "set_authorizer", "set_progress_handler", "set_trace_callback", "enable_load_extension",
                "load_extension", "blobopen", "backup", "serialize", "deserialize", "setlimit", "getlimit",
                "setconfig", "getconfig"}


def connect(database: str | os.PathLike[str], timeout: float = 5.0, detect_types: int = 0,
            isolation_level: str | None = "DEFERRED", check_same_thread: bool = True,
            factory: type[Connection] | None = None, cached_statements: int = 128, uri: bool = False,
            consistency: str | None = None, **kwargs: Any) -> Connection:
    """sqlite3.connect for a sqld server: `database` is a postgresql:// URL or a database name.
    `consistency` (strong, read_your_writes, bounded_staleness) sets the session's
    sqld.consistency: where its reads may run at a site with a replica.

    Embedded replica (client README): `replica="local.db"` keeps a copy of the database in this
    process and reads run on it; `sync_interval` None follows the log in a background thread,
    N > 0 syncs every N seconds, 0 only on `sync()`; `replication` the replication service's
    public port (default $SQLD_REPLICATION, else the server's host:7018), `token` a bearer token
    that opens the database ($SQLD_TOKEN), `ca` the deployment CA, a path or PEM ($SQLD_CA);
    `max_lag` seconds: a replica further behind is not read from (None: no bound)."""
    cls = factory or Connection
    if consistency is not None:
        kwargs["consistency"] = consistency
    return cls(database, timeout=timeout, detect_types=detect_types, isolation_level=isolation_level,
               check_same_thread=check_same_thread, cached_statements=cached_statements, uri=uri, **kwargs)


def _drop_database(maintenance: dict[str, Any], name: str) -> None:
    """Drop a ":memory:" connection's scratch database (best effort: a server that is gone
    cannot be asked; FORCE ends the connection's session if it has not ended yet)."""
    try:
        with psycopg.Connection.connect(autocommit=True, **maintenance) as pg:
            pg.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode(), prepare=False)
    except psycopg.Error:
        pass
