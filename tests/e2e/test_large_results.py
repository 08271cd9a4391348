"""Large results stream in bounded pieces, with back-pressure at every hop (issue #11).

Each test starts its own site, so the processes' memory is measured from a known idle state.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time

import psycopg
import pytest
from psycopg import errors as pgerr

from sqld.v1 import common_pb2, query_pb2, query_pb2_grpc

MIB = 1024 * 1024
GROWTH_BOUND = 200 * MIB  # what a process may grow above idle while a result streams
SERVICES = ("storage", "scheduler", "edge")


def rss(stack, name: str) -> int:
    with open(f"/proc/{stack.procs[name].pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {name}")


def rows_sql(n: int, width: int, params: bool = False) -> str:
    pct = "%%" if params else "%"  # psycopg reads % as a placeholder when there are parameters
    return (f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) "
            f"SELECT i, printf('{pct}0{width}d', i) AS pad FROM s")


class PointSelects(threading.Thread):
    """Another session's point selects while a big result streams: each must stay quick."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.stop = threading.Event()
        self.latencies: list[float] = []

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute("CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v TEXT)")
            c.execute("INSERT OR REPLACE INTO kv VALUES (1, 'one')")
            while not self.stop.is_set():
                t = time.monotonic()
                assert c.execute("SELECT v FROM kv WHERE k = %s", (1,)).fetchone() == ("one",)
                self.latencies.append(time.monotonic() - t)
                time.sleep(0.05)


def test_slow_reader_streams_with_bounded_memory(own_stack):
    """600k rows of ~220 bytes (~130 MB of values; held whole this took over 1 GB in storage)
    read through psycopg's row-by-row stream by a reader that pauses: the first row comes
    long before the end, no process grows past the bound, other sessions keep answering."""
    s = own_stack()
    n = 600_000
    idle = {name: rss(s, name) for name in SERVICES}
    peak = dict(idle)
    others = PointSelects(s.dsn)
    others.start()
    got = 0
    with psycopg.connect(s.dsn, autocommit=True) as c:
        start = time.monotonic()
        for i, (k, pad) in enumerate(c.cursor().stream(rows_sql(n, 200))):
            if i == 0:
                first = time.monotonic() - start
                # Stop reading: the pipeline fills its bounded buffers and storage stops stepping.
                for _ in range(6):
                    time.sleep(0.5)
                    peak = {name: max(peak[name], rss(s, name)) for name in SERVICES}
            if i % 20_000 == 0:
                time.sleep(0.05)  # a slow consumer
                peak = {name: max(peak[name], rss(s, name)) for name in SERVICES}
            assert k == i + 1 and len(pad) == 200
            got += 1
        total = time.monotonic() - start
    others.stop.set()
    others.join(10)
    assert got == n
    assert first < 5 and first < total / 4, (first, total)
    growth = {name: (peak[name] - idle[name]) // MIB for name in SERVICES}
    print(f"first row {first:.2f}s, all {n} rows {total:.1f}s, growth MiB {growth}, "
          f"other session max {max(others.latencies) * 1000:.0f} ms")
    assert all(g * MIB < GROWTH_BOUND for g in growth.values()), growth
    assert others.latencies and max(others.latencies) < 1.0, max(others.latencies)


class Peaks(threading.Thread):
    """The highest RSS of each service while it runs."""

    def __init__(self, stack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.idle = {name: rss(stack, name) for name in SERVICES}
        self.peak = dict(self.idle)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = {name: max(self.peak[name], rss(self.stack, name)) for name in SERVICES}

    def growth(self) -> dict[str, int]:
        self.stop.set()
        self.join()
        return {name: (self.peak[name] - self.idle[name]) // MIB for name in SERVICES}


def test_300mib_value_round_trip(own_stack):
    """A 300 MiB blob goes in as a psycopg parameter, comes back equal (in parts of 256 KiB
    joined at the edge), and is deleted. A value costs each process a few times its size
    while it passes, never more (README: Behaviour worth knowing)."""
    s = own_stack()
    peaks = Peaks(s)
    peaks.start()
    blob = os.urandom(300 * MIB)
    digest = hashlib.sha256(blob).hexdigest()
    with psycopg.connect(s.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB)")
        c.execute("INSERT INTO big VALUES (%s, %b)", (1, blob))
        del blob
        assert c.execute("SELECT length(b) FROM big WHERE id = %s", (1,)).fetchone() == (300 * MIB,)
        row = c.execute("SELECT id, b, 'after' FROM big WHERE id = %s", (1,), binary=True).fetchone()
        assert row[0] == 1 and row[2] == "after"
        assert hashlib.sha256(row[1]).hexdigest() == digest
        del row
        assert c.execute("DELETE FROM big WHERE id = %s", (1,)).rowcount == 1
        assert c.execute("SELECT count(*) FROM big").fetchone() == (0,)
    growth = peaks.growth()
    print(f"growth MiB while a 300 MiB value went in and out: {growth}")
    assert all(g < 8 * 300 for g in growth.values()), growth  # measured: 4.5x (storage, scheduler), 6x (edge)


def test_endless_query_cancelled_leaves_storage_idle(own_stack):
    """An endless recursive query streams at full speed in bounded memory; a cancel stops it
    and storage's memory goes back near idle; the session goes on."""
    s = own_stack()
    idle = rss(s, "storage")
    peak = idle
    with psycopg.connect(s.dsn, autocommit=True) as c:
        timer = threading.Timer(4.0, c.cancel)
        timer.start()
        seen = 0
        with pytest.raises(pgerr.QueryCanceled):
            for _ in c.cursor().stream("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s) "
                                       "SELECT i, randomblob(100) FROM s"):
                seen += 1
                if seen % 50_000 == 0:
                    peak = max(peak, rss(s, "storage"))
        timer.join()
        assert seen > 10_000  # rows flowed before the cancel
        assert c.execute("SELECT 1").fetchone() == (1,)
    print(f"rows before the cancel {seen}, storage peak growth {(peak - idle) // MIB} MiB")
    assert peak - idle < GROWTH_BOUND, (peak - idle) // MIB
    deadline = time.monotonic() + 10
    while rss(s, "storage") - idle > 50 * MIB and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rss(s, "storage") - idle < 50 * MIB, (rss(s, "storage") - idle) // MIB


@pytest.fixture
def conn(stack):
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        yield c


N = 30_000  # rows of ~110 bytes: ~3 MB, a dozen parts
BIG = rows_sql(N, 100)


def test_streamed_results_between_small_ones(conn):
    """A multi-statement query whose middle result streams: results keep their order."""
    cur = conn.cursor()
    cur.execute(f"SELECT 'before'; {BIG}; SELECT 'after'")
    assert cur.fetchall() == [("before",)]
    assert cur.nextset()
    rows = cur.fetchall()
    assert len(rows) == N and rows[0] == (1, "0" * 99 + "1") and rows[-1][0] == N
    assert cur.statusmessage == f"SELECT {N}"
    assert cur.nextset()
    assert cur.fetchall() == [("after",)]


def test_streamed_results_in_a_pipeline(conn):
    with conn.pipeline():
        a = conn.execute("SELECT %s::int", (1,))
        b = conn.execute(rows_sql(N, 100, params=True) + " WHERE i > %s", (0,))
        c = conn.execute("SELECT %s::text", ("x",))
    assert a.fetchone() == (1,)
    rows = b.fetchall()
    assert len(rows) == N and rows[-1][0] == N
    assert c.fetchone() == ("x",)


def test_server_side_cursor_over_a_large_result(stack):
    with psycopg.connect(stack.dsn) as c:
        with c.cursor(name="big") as cur:
            cur.itersize = 5000
            cur.execute(rows_sql(N, 100))
            assert cur.fetchone()[0] == 1
            assert sum(1 for _ in cur) == N - 1
        # other statements run while a cursor is open: its rows are kept by the edge
        with c.cursor(name="again") as cur:
            cur.execute(rows_sql(N, 100))
            assert cur.fetchmany(3)[-1][0] == 3
            assert c.execute("SELECT 42").fetchone() == (42,)
            assert len(cur.fetchall()) == N - 3


def test_row_limited_execute_over_a_large_result(stack):
    asyncpg = pytest.importorskip("asyncpg")
    import asyncio

    async def go():
        c = await asyncpg.connect(host="127.0.0.1", port=stack.ports.pg, user="postgres", database="main")
        try:
            assert (await c.fetchrow(rows_sql(N, 100)))[0] == 1
            async with c.transaction():
                got = [r[0] async for r in c.cursor(rows_sql(N, 100), prefetch=777)]
            assert got == list(range(1, N + 1))
        finally:
            await c.close()

    asyncio.run(go())


def test_copy_to_a_large_result(conn):
    with conn.cursor().copy(f"COPY ({rows_sql(N, 100)}) TO STDOUT") as cp:
        lines = b"".join(bytes(d) for d in cp).splitlines()
    assert len(lines) == N and lines[-1] == f"{N}\t{N:0100d}".encode()


def test_unary_execute_is_bounded(stack):
    """The one-shot Execute holds its whole answer in one message: up to 64 MiB, else 54000."""
    with stack.query_channel() as ch:
        stub = query_pb2_grpc.QueryServiceStub(ch)
        ok = stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[
            common_pb2.Statement(sql=rows_sql(N, 100))]))
        assert len(ok.results[0].ok.rows) == N and ok.results[0].ok.rows[-1].values[0].integer == N
        big = stub.Execute(query_pb2.ExecuteRequest(database="main", statements=[
            common_pb2.Statement(sql=rows_sql(1_000_000, 100))]))
        assert big.results[0].error.sqlstate == "54000"


def test_client_gone_mid_stream_releases_its_transaction(stack):
    """A client that leaves while its rows stream, inside a write transaction: the statement
    stops, the transaction rolls back and the writer is free at once for other sessions."""
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS gone; CREATE TABLE gone (x INTEGER)")
    leaving = psycopg.connect(stack.dsn)
    leaving.execute("INSERT INTO gone VALUES (1)")  # opens the transaction, takes the writer
    rows = leaving.cursor().stream(rows_sql(10 * N, 100))
    assert next(rows)[0] == 1
    leaving.pgconn.finish()  # the socket closes with the statement half read
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        t = time.monotonic()
        c.execute("INSERT INTO gone VALUES (2)")
        assert time.monotonic() - t < 5
        assert c.execute("SELECT x FROM gone").fetchall() == [(2,)]
        for _ in range(3):  # the pool's connections are sound afterwards
            assert len(c.execute(BIG).fetchall()) == N
