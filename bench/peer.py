"""The in-process peer: buenavista 0.5.0 (a pg-wire server in one Python process) over SQLite.

buenavista ships DuckDB and PostgreSQL backends only, so this module is a thin SQLite backend
for its backend interface (buenavista.core: Connection makes a Session per client, a Session runs
SQL and returns a QueryResult), over Python's sqlite3: one sqlite3 connection per client session,
SQL passed through as it is, the same durability as ours (WAL, `synchronous=FULL`). buenavista
serves each client in its own thread (socketserver.ThreadingTCPServer).

    python -m bench.peer --db FILE --port N     # the server process the benchmark starts

`Peer` is the benchmark's side: builds the file with the same SQLite-dialect script ours is loaded
with, starts the server on a free port, measures its CPU and always removes everything.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from bench import schema
from bench.ours import cpu_seconds, free_port

VERSION = "0.5.0"


def connect(path: str) -> sqlite3.Connection:
    """A session's sqlite3 connection: autocommit (the client's BEGIN/COMMIT pass through), durable."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def build(path: str, scale: int) -> None:
    conn = connect(path)
    try:
        conn.executescript(schema.sqlite_init_sql(scale))
    finally:
        conn.close()


def serve(path: str, port: int) -> None:
    from buenavista.core import BVType, Connection, QueryResult, Session
    from buenavista.postgres import BuenaVistaServer

    def bvtype(value: object) -> BVType:
        if isinstance(value, bool):
            return BVType.BOOL
        if isinstance(value, int):
            return BVType.BIGINT
        if isinstance(value, float):
            return BVType.FLOAT
        if isinstance(value, bytes):
            return BVType.BYTES
        return BVType.TEXT

    class Result(QueryResult):
        def __init__(self, columns: list[tuple[str, BVType]], rows: list, status: str) -> None:
            super().__init__()
            self.columns, self._rows, self._status = columns, rows, status

        def has_results(self) -> bool:
            return bool(self.columns)

        def column_count(self) -> int:
            return len(self.columns)

        def column(self, index: int) -> tuple[str, BVType]:
            return self.columns[index]

        def rows(self) -> Iterator[list]:
            return iter(self._rows)

        def status(self) -> str:
            return self._status

    class SQLiteSession(Session):
        def __init__(self) -> None:
            super().__init__()
            self.conn = connect(path)

        def cursor(self) -> sqlite3.Cursor:
            return self.conn.cursor()

        def close(self) -> None:
            self.conn.close()

        def in_transaction(self) -> bool:
            return self.conn.in_transaction

        def execute_sql(self, sql: str, params=None) -> QueryResult:
            if params:
                # buenavista decodes a text parameter of unspecified type (OID 0, what pgbench and
                # most drivers send) with dateutil, so 1234 arrives as a timestamp: refuse, loudly,
                # rather than run the statement with the wrong values.
                bad = [p for p in params if isinstance(p, (datetime.date, datetime.time, list))]
                if bad:
                    raise ValueError(f"buenavista decoded parameter(s) {bad[0]!r} from text: "
                                     "untyped parameters are parsed as timestamps")
            cur = self.conn.execute(sql.replace("$", "?"), params or ())
            if cur.description is None:
                verb = (sql.split(None, 1) or [""])[0].upper()
                tag = {"INSERT": f"INSERT 0 {cur.rowcount}", "UPDATE": f"UPDATE {cur.rowcount}",
                       "DELETE": f"DELETE {cur.rowcount}"}.get(verb, verb)
                return Result([], [], tag)
            rows = cur.fetchall()
            first = rows[0] if rows else [None] * len(cur.description)
            return Result([(d[0], bvtype(v)) for d, v in zip(cur.description, first)], rows, "")

    class SQLiteConnection(Connection):
        def new_session(self) -> Session:
            return SQLiteSession()

        def parameters(self) -> dict[str, str]:
            return {"server_version": "15.0", "client_encoding": "UTF8", "DateStyle": "ISO"}

    server = BuenaVistaServer(("127.0.0.1", port), SQLiteConnection())
    server.daemon_threads = True
    print(f"buenavista {VERSION} over SQLite {sqlite3.sqlite_version} on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


class Peer:
    """Start with `start()`, always `stop()` (it also deletes the file)."""

    name = "buenavista"

    def __init__(self, taken_ports: set[int], log_dir: str) -> None:
        self.port = free_port(taken_ports)
        self.dir = tempfile.mkdtemp(prefix="sqld-bench-peer-")
        self.db = os.path.join(self.dir, "bench.db")
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None

    def load(self, scale: int) -> None:
        """The file first, built by the SQLite-dialect script ours is loaded with; then `start()`."""
        build(self.db, scale)

    def start(self) -> None:
        os.makedirs(self.log_dir, exist_ok=True)
        with open(os.path.join(self.log_dir, "buenavista.log"), "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "bench.peer", "--db", self.db,
                                          "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"buenavista exited with code {self.proc.returncode}; see {self.log_dir}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"buenavista did not listen on {self.port} within 30 s")

    def cpu(self) -> dict[str, float]:
        return {"buenavista": cpu_seconds(self.proc.pid)} if self.proc and self.proc.poll() is None else {}

    def stop(self) -> None:
        try:
            if self.proc and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    serve(args.db, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
