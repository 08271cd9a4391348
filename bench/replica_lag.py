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


WRITERS = 8  # concurrent autocommit writers: one serial client reached only ~150-200 commits/s


@dataclasses.dataclass(frozen=True)
class Lag:
    rate_wanted: float
    rate_achieved: float
    commits: int
    p50_ms: float
    p99_ms: float
    writers: int = WRITERS
    unseen: int = 0               # acknowledged but not visible on the replica 5 s after the last commit


def measure(primary_dsn: str, replica_dsn: str, rate: float, seconds: float, writers: int = WRITERS) -> Lag:
    """Insert rows at `rate` commits/s on the primary while polling the replica for them.

    Open loop: commit i is due at start + i/rate and goes to whichever of `writers` connections is
    free, so a slow commit does not slow the schedule; no commit starts after `seconds`. The
    achieved rate is reported beside the lag (below `rate` when the primary cannot commit that fast
    with this many writers). A commit never seen on the replica counts with the time it was
    waited for (a lower bound), not left out."""
    import psycopg
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_lag")
        conn.execute("CREATE TABLE bench_lag(id INTEGER PRIMARY KEY)")
    acked: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = threading.Event()
    stop_at = [float("inf")]

    def poll() -> None:
        low = 1  # every id below it has been seen
        with psycopg.connect(replica_dsn, autocommit=True) as rconn:
            # Read the replica itself, however far behind: the default (read-your-writes with a
            # staleness bound) would send a lagging read to the primary and hide the lag.
            rconn.execute("SET sqld.consistency = bounded_staleness")
            rconn.execute("SET sqld.max_staleness_ms = 600000")
            while not done.is_set() or len(seen) < len(acked):
                try:  # concurrent writers commit out of id order: fetch every id at or above `low`
                    ids = [r[0] for r in rconn.execute(f"SELECT id FROM bench_lag WHERE id >= {low}")]
                except psycopg.Error:  # the table may not have reached the replica yet
                    time.sleep(0.001)
                    continue
                now = time.perf_counter()
                for i in ids:
                    seen.setdefault(i, now)
                while low in seen:
                    low += 1
                if done.is_set() and time.perf_counter() - stop_at[0] > 5:
                    return

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    lock = threading.Lock()
    counter = [0]
    start = time.perf_counter() + 0.5  # after the writers have connected
    end = start + seconds
    errors: list[str] = []

    def write() -> None:
        with psycopg.connect(primary_dsn, autocommit=True) as conn:
            while True:
                with lock:
                    counter[0] += 1
                    i = counter[0]
                due = start + i / rate
                if due >= end or time.perf_counter() >= end:
                    return
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                try:
                    conn.execute(f"INSERT INTO bench_lag(id) VALUES ({i})")
                except psycopg.Error as exc:
                    errors.append(str(exc))
                    return
                acked[i] = time.perf_counter()

    threads = [threading.Thread(target=write, daemon=True) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = max(acked.values(), default=end) - start
    stop_at[0] = time.perf_counter()
    done.set()
    poller.join(10)
    gave_up = time.perf_counter()
    if errors:
        raise RuntimeError(f"replica lag: {len(errors)} writer(s) failed: {errors[0]}")
    if not seen:
        raise RuntimeError("replica lag: no committed row became visible on the replica")
    seen = dict(seen)  # the poller may still be running after join's timeout
    lags = sorted(max(0.0, seen.get(k, gave_up) - acked[k]) * 1000 for k in acked)
    return Lag(rate, len(acked) / elapsed, len(acked), percentile(lags, 50), percentile(lags, 99), writers,
               sum(1 for k in acked if k not in seen))
