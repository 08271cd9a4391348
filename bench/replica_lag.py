"""Replica lag: time from a commit acknowledged on the primary to its row visible on a replica.

Replication is being built in parallel. `find_replica` looks for it in the launcher plan (a
service named like `replica`, and a pg-wire port for it in plan.Ports named like `replica...pg`);
until both exist the benchmark reports "not available". Wiring it later should only need
`find_replica` to return the replica's pg-wire port.
"""
from __future__ import annotations

import dataclasses
import threading
import time

from bench.latency import percentile

NOT_AVAILABLE = "not available: no replica in this build"


def find_replica(services: list, ports: object) -> tuple[int | None, str | None]:
    """(replica pg port, None) when the plan has a replica that serves reads; else (None, why not)."""
    if not any("replica" in s.name for s in services):
        return None, NOT_AVAILABLE
    for field in dataclasses.fields(ports):  # type: ignore[arg-type]
        if "replica" in field.name and "pg" in field.name:
            return getattr(ports, field.name), None
    return None, "not available: the plan has a replica service but no pg port for it (wire bench/replica_lag.py)"


@dataclasses.dataclass(frozen=True)
class Lag:
    rate_wanted: float
    rate_achieved: float
    commits: int
    p50_ms: float
    p99_ms: float


def measure(primary_dsn: str, replica_dsn: str, rate: float, seconds: float) -> Lag:
    """Insert rows at `rate` commits/s on the primary while polling the replica for the newest id."""
    import psycopg
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_lag")
        conn.execute("CREATE TABLE bench_lag(id INTEGER PRIMARY KEY)")
    acked: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = threading.Event()

    def poll() -> None:
        last = 0
        with psycopg.connect(replica_dsn, autocommit=True) as rconn:
            # Read the replica itself, however far behind: the default (read-your-writes with a
            # staleness bound) would send a lagging read to the primary and hide the lag.
            rconn.execute("SET sqld.consistency = bounded_staleness")
            rconn.execute("SET sqld.max_staleness_ms = 600000")
            while not done.is_set() or last < len(acked):
                try:
                    top = rconn.execute("SELECT coalesce(max(id), 0) FROM bench_lag").fetchone()[0]
                except psycopg.Error:  # the table may not have reached the replica yet
                    time.sleep(0.001)
                    continue
                now = time.perf_counter()
                for i in range(last + 1, top + 1):
                    seen[i] = now
                last = max(last, top)
                if done.is_set() and time.perf_counter() - stop_at > 5:
                    return

    stop_at = float("inf")
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            i += 1
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn.execute(f"INSERT INTO bench_lag(id) VALUES ({i})")
            acked[i] = time.perf_counter()
        elapsed = time.perf_counter() - start
    stop_at = time.perf_counter()
    done.set()
    poller.join(10)
    lags = sorted(max(0.0, seen[k] - acked[k]) * 1000 for k in acked if k in seen)
    if not lags:
        raise RuntimeError("replica lag: no committed row became visible on the replica")
    return Lag(rate, len(acked) / elapsed, len(acked), percentile(lags, 50), percentile(lags, 99))
