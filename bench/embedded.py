"""The embedded-replica rows (issue #17): reads in the application's process against the wire.

- point select, 1 client: `SELECT abalance FROM pgbench_accounts WHERE aid = ?` (random aid)
  through sqldclient with an embedded replica (the read runs on the local file through
  Python's sqlite3), psycopg to our edge, and psycopg to PostgreSQL, the three taking turns
  (bench/client.py's loop), p50 and p99 µs each;
- commit to visible: an autocommit INSERT on the primary (psycopg to our edge), then a second
  sqlite3 connection polls the embedded replica's file for the row; time from the commit's
  acknowledgement to the row visible there, p50/p99 ms, one commit at a time.

    python -m bench.embedded [--seconds 3]   # alone: starts ours and PostgreSQL (scale 1), prints the tables
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sqlite3
import sys
import tempfile
import time
from typing import Any

from bench import latency
from bench.client import SELECT, _timed

TABLE = "bench_embedded"
WARMUP = 50  # untimed operations per side before the timed loop (bench.client._timed)


@dataclasses.dataclass(frozen=True)
class Embedded:
    select_us: dict[str, tuple[float, float]]  # side -> (p50, p99) µs
    select_count: int
    visible_p50_ms: float
    visible_p99_ms: float
    commits: int
    local_reads: int  # point selects the embedded replica answered (of select_count)


def _open(ours: Any, path: str) -> Any:
    import sqldclient
    from sqld.common import tokens
    with open(os.path.join(ours.pki_dir, "auth.key"), "rb") as f:
        token = tokens.mint(f.read(), "bench", read_only=True, databases=["main"])
    url = f"postgresql://postgres@127.0.0.1:{ours.pg_port}/main?connect_timeout=10"
    return sqldclient.connect(url, isolation_level=None, replica=path,
                              replication=f"127.0.0.1:{ours.ports.replication_public}", token=token,
                              ca=os.path.join(ours.pki_dir, "ca.crt"))


def measure(ours: Any, pg_port: int | None, accounts: int, seconds: float, seed: int = 1) -> Embedded:
    import psycopg
    rng = random.Random(seed)
    folder = tempfile.mkdtemp(prefix="sqld-bench-embedded-")
    path = os.path.join(folder, "main.db")
    emb = _open(ours, path)
    edge = psycopg.connect(f"postgresql://postgres@127.0.0.1:{ours.pg_port}/main?connect_timeout=10", autocommit=True)
    pg = psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/main?connect_timeout=10",
                         autocommit=True) if pg_port else None
    try:
        ops = [lambda: emb.execute(SELECT + "?", (rng.randint(1, accounts),)).fetchone(),
               lambda: edge.execute(SELECT + "%s", (rng.randint(1, accounts),)).fetchone()]
        names = ["embedded replica (sqldclient)", "our edge (psycopg)"]
        if pg is not None:
            ops.append(lambda: pg.execute(SELECT + "%s", (rng.randint(1, accounts),)).fetchone())
            names.append("PostgreSQL (psycopg)")
        reads0 = emb._local_reads
        samples = _timed(tuple(ops), seconds)
        local_reads = emb._local_reads - reads0
        summaries = {n: latency.summarize(n, s) for n, s in zip(names, samples)}
        select_us = {n: (s.p50_ms * 1000, s.p99_ms * 1000) for n, s in summaries.items()}

        edge.execute(f"DROP TABLE IF EXISTS {TABLE}")
        edge.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY)")
        emb.sync()
        reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        lags: list[int] = []
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            i += 1
            edge.execute(f"INSERT INTO {TABLE} VALUES ({i})")
            t0 = time.perf_counter_ns()
            while True:
                try:
                    if reader.execute(f"SELECT 1 FROM {TABLE} WHERE id = {i}").fetchone():
                        break
                except sqlite3.OperationalError:  # the table's first frames not applied yet
                    pass
                if time.perf_counter_ns() - t0 > 10_000_000_000:
                    raise RuntimeError(f"commit {i} not visible in the embedded replica after 10 s")
                time.sleep(0.0002)
            lags.append(time.perf_counter_ns() - t0)
        reader.close()
        edge.execute(f"DROP TABLE {TABLE}")
        vis = latency.summarize("visible", lags)
        return Embedded(select_us, summaries[names[0]].count, vis.p50_ms, vis.p99_ms, len(lags), local_reads)
    finally:
        emb.close()
        edge.close()
        if pg is not None:
            pg.close()


def table(e: Embedded) -> str:
    lines = ["| point select, 1 client | p50 | p99 |", "|---|---:|---:|"]
    lines += [f"| {name} | {p50:,.1f} µs | {p99:,.1f} µs |" for name, (p50, p99) in e.select_us.items()]
    lines += ["", "| commit on the primary → visible in the embedded replica | p50 | p99 | commits |",
              "|---|---:|---:|---:|",
              f"| one autocommit INSERT at a time | {e.visible_p50_ms:.2f} ms | {e.visible_p99_ms:.2f} ms | {e.commits:,} |"]
    lines += ["", f"{e.local_reads:,} of the {e.select_count + WARMUP:,} embedded point selects ({WARMUP} of them "
              "warm-up) ran on the local file."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.embedded", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per loop")
    p.add_argument("--no-postgres", action="store_true", help="leave PostgreSQL out (not installed here)")
    args = p.parse_args(argv)
    from bench.ours import Ours, free_port
    from bench.postgres import Postgres, ensure_installed
    ports: set[int] = set()
    ours = Ours(ports, tempfile.mkdtemp(prefix="sqld-bench-embedded-logs-"))
    pg = None
    try:
        if not args.no_postgres:
            ensure_installed(print)
            pg = Postgres(free_port(ports))
            pg.start()
            pg.load(1)
        ours.start()
        ours.load(1)
        print(table(measure(ours, pg.port if pg else None, 100_000, args.seconds)))
    finally:
        ours.stop()
        if pg is not None:
            pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
