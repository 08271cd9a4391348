"""The client row (issue #14): sqldclient against psycopg on the same edge, one client.

Two loops, each timed per operation, the two clients taking turns on our edge:
- point select: `SELECT abalance FROM pgbench_accounts WHERE aid = ?` with a random aid
  (psycopg: `%s`, autocommit, prepared after 5 runs; sqldclient: its own parameters over psycopg);
- insert: one autocommit `INSERT INTO bench_client(v) VALUES (?)` per operation (sqldclient with
  isolation_level=None, as psycopg's autocommit).
sqldclient runs on psycopg (client/README.md), so the difference is the client's own work: the
sqlite3 semantics (placeholders, adapters, storage classes, lastrowid, row shaping).

    python -m bench.client [--seconds 3]   # alone: starts ours (scale 1), prints the table
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import latency

SELECT = "SELECT abalance FROM pgbench_accounts WHERE aid = "
TABLE = "bench_client"


@dataclasses.dataclass(frozen=True)
class ClientRow:
    loop: str
    sqldclient_us: float   # median µs per operation
    psycopg_us: float
    count: int             # operations timed per client (they take turns)

    @property
    def ratio(self) -> float:
        """psycopg ÷ sqldclient: 1.0 is parity, lower means sqldclient costs more."""
        return self.psycopg_us / self.sqldclient_us


def _timed(ops: tuple[Callable[[], Any], ...], seconds: float) -> list[list[int]]:
    """Each op's times, the ops taking turns (so a busy moment of the machine hits both alike)."""
    for _ in range(50):
        for op in ops:
            op()
    samples: list[list[int]] = [[] for _ in ops]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for op, out in zip(ops, samples):
            t0 = time.perf_counter_ns()
            op()
            out.append(time.perf_counter_ns() - t0)
    return samples


def measure(port: int, accounts: int, seconds: float, seed: int = 1) -> list[ClientRow]:
    import psycopg

    import sqldclient

    url = f"postgresql://postgres@127.0.0.1:{port}/main?connect_timeout=10"
    rng = random.Random(seed)
    pg = psycopg.connect(url, autocommit=True)
    sq = sqldclient.connect(url, isolation_level=None)
    try:
        pg.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY, v TEXT)")
        loops = {
            "point select": (lambda: sq.execute(SELECT + "?", (rng.randint(1, accounts),)).fetchone(),
                             lambda: pg.execute(SELECT + "%s", (rng.randint(1, accounts),)).fetchone()),
            "insert, autocommit": (lambda: sq.execute(f"INSERT INTO {TABLE}(v) VALUES (?)", ("x",)),
                                   lambda: pg.execute(f"INSERT INTO {TABLE}(v) VALUES (%s)", ("x",))),
        }
        rows = []
        for name, ops in loops.items():
            a, b = (latency.summarize("", times) for times in _timed(ops, seconds))
            rows.append(ClientRow(name, a.p50_ms * 1000, b.p50_ms * 1000, a.count))
        pg.execute(f"DROP TABLE {TABLE}")
        return rows
    finally:
        sq.close()
        pg.close()


def table(rows: list[ClientRow]) -> str:
    lines = ["| loop, 1 client, our edge | sqldclient | psycopg | psycopg/sqldclient |", "|---|---:|---:|---:|"]
    lines += [f"| {r.loop} | {r.sqldclient_us:,.0f} µs | {r.psycopg_us:,.0f} µs | {r.ratio:.2f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per loop and client")
    args = p.parse_args(argv)
    import tempfile

    from bench.ours import Ours
    ours = Ours(set(), tempfile.mkdtemp(prefix="sqld-bench-client-logs-"))
    try:
        ours.start()
        ours.load(1)
        print(table(measure(ours.pg_port, 100_000, args.seconds)))
    finally:
        ours.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
