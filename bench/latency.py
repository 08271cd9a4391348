"""Point-select latency from one psycopg client: p50 and p99 of single-row primary-key reads.

With parameters (`WHERE aid = %s`: psycopg's extended protocol, prepared after 5 runs) when the
server supports it; otherwise the literal value in the SQL text, one simple query each.
"""
from __future__ import annotations

import dataclasses
import random
import time

QUERY = "SELECT abalance FROM pgbench_accounts WHERE aid = "
PARAMS = "parameters (extended protocol)"
LITERAL = "literal SQL (simple protocol)"


@dataclasses.dataclass(frozen=True)
class Latency:
    method: str
    count: int
    p50_ms: float
    p99_ms: float
    mean_ms: float


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n*q/100), at least 1
    return sorted_values[int(rank) - 1]


def summarize(method: str, samples_ns: list[int]) -> Latency:
    ms = sorted(s / 1e6 for s in samples_ns)
    return Latency(method, len(ms), percentile(ms, 50), percentile(ms, 99), sum(ms) / len(ms))


def works_with_parameters(dsn: str) -> str | None:
    """None when a parameterised point select (also prepared) works here, else the first error line."""
    import psycopg
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for aid in range(1, 8):  # past psycopg's prepare threshold (5)
                conn.execute(QUERY + "%s", (aid,)).fetchone()
        return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


def measure(dsn: str, method: str, accounts: int, seconds: float, seed: int = 1) -> Latency:
    """Run point selects back to back for `seconds` (after a short warm-up) and time each."""
    import psycopg
    rng = random.Random(seed)
    samples: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        def one() -> int:
            aid = rng.randint(1, accounts)
            t0 = time.perf_counter_ns()
            if method == PARAMS:
                conn.execute(QUERY + "%s", (aid,)).fetchone()
            else:
                conn.execute(QUERY + str(aid)).fetchone()
            return time.perf_counter_ns() - t0

        for _ in range(50):
            one()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append(one())
    return summarize(method, samples)
