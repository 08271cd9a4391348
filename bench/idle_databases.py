"""The idle-database row (issue #15): what a database that exists but is not used costs.

Starts ours (the default replicated plan), creates N databases, uses each once (a table, a row,
a read), waits, and compares each process's resident memory (/proc/<pid>/status VmRSS) and
open file descriptors (/proc/<pid>/fd) with the same numbers before: per database.

    python -m bench.idle_databases [--databases 100]   # prints the table (README, Databases)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import psycopg

from bench.ours import Ours


def usage(pid: int) -> tuple[int, int]:
    """(resident KiB, open descriptors) of process `pid`."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def measure(ours: Ours, n: int) -> dict[str, tuple[float, float]]:
    def dsn(db: str) -> str:
        return f"host=127.0.0.1 port={ours.pg_port} user=postgres dbname={db} connect_timeout=10"

    time.sleep(2)
    before = {name: usage(pid) for name, pid in ours.pids().items()}
    with psycopg.connect(dsn("main"), autocommit=True) as c:
        for i in range(n):
            c.execute(f"CREATE DATABASE bench_idle_{i}")
    for i in range(n):
        with psycopg.connect(dsn(f"bench_idle_{i}"), autocommit=True) as c:
            c.execute("CREATE TABLE t (a)")
            c.execute("INSERT INTO t VALUES (1)")
            c.execute("SELECT a FROM t").fetchall()
    time.sleep(3)
    after = {name: usage(pid) for name, pid in ours.pids().items()}
    return {name: ((after[name][0] - before[name][0]) / n, (after[name][1] - before[name][1]) / n)
            for name in before}


def table(rows: dict[str, tuple[float, float]]) -> str:
    out = ["| process | memory per idle database | file handles per idle database |", "|---|---:|---:|"]
    out += [f"| {name} | {kib:.0f} KiB | {fds:.1f} |" for name, (kib, fds) in rows.items()]
    return "\n".join(out)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_databases")
    parser.add_argument("--databases", type=int, default=100)
    args = parser.parse_args(argv)
    ours = Ours(set(), tempfile.mkdtemp(prefix="sqld-bench-idle-logs-"))
    try:
        ours.start()
        print(table(measure(ours, args.databases)))
    finally:
        ours.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
