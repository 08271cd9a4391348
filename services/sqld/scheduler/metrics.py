"""sqld_scheduler_* metrics: sessions, waits for a storage connection and for the writer token, commits."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_WAIT_BUCKETS = (.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60)

SESSIONS = Gauge("sqld_scheduler_sessions", "sessions open (pg-wire clients through an edge, and QueryService sessions)")
POOL_WAIT_SECONDS = Histogram("sqld_scheduler_pool_wait_seconds",
                              "time a statement waited for a free storage connection of its database (only waits that happened)",
                              buckets=_WAIT_BUCKETS)
WRITE_TOKEN_WAIT_SECONDS = Histogram("sqld_scheduler_write_token_wait_seconds",
                                     "time a write waited for its database's writer token (only waits that happened)",
                                     buckets=_WAIT_BUCKETS)
WAIT_TIMEOUTS = Counter("sqld_scheduler_wait_timeouts_total",
                        "waits that gave up after --wait-timeout, per what was waited for", ["what"])
COMMITS = Counter("sqld_scheduler_commits_total", "write transactions committed (autocommit writes and COMMITs)")
