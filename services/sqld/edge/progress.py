"""The COPY commands this edge process is running, for pg_stat_progress_copy (catalog/live.py):
one entry per session pid, written by copy.py as a COPY goes and removed when it ends. No I/O.

The view is this edge's (a COPY runs in the edge, not in the scheduler), which for a site with
one edge, as `make run` starts, is the site's.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class Copy:
    pid: int
    database: str
    relation: str
    command: str              # "COPY FROM" or "COPY TO"
    kind: str = "PIPE"        # PostgreSQL's type: STDIN/STDOUT from a client is PIPE
    bytes_processed: int = 0
    tuples_processed: int = 0


RUNNING: dict[int, Copy] = {}


def rows() -> list[list]:
    """pg_stat_progress_copy's rows in live.PROGRESS_COPY_FIELDS order."""
    return [[c.pid, c.database, c.relation, c.command, c.kind, c.bytes_processed, c.tuples_processed]
            for c in sorted(RUNNING.values(), key=lambda c: c.pid)]
