"""sqld_storage_* metrics: connections, and on a primary that replicates the commits, frames and bytes it logged.

A replica counts the frames and bytes it received. The mvsqlite backend keeps its own commit path
and is not counted here.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTIONS = Gauge("sqld_storage_connections", "SQLite connections open (Connect streams)")

COMMITS_LOGGED = Counter("sqld_storage_commits_logged_total", "committed transactions logged to the replication service")
FRAMES_LOGGED = Counter("sqld_storage_frames_logged_total", "WAL frames logged to the replication service")
BYTES_LOGGED = Counter("sqld_storage_bytes_logged_total", "page bytes logged to the replication service")
FRAMES_RECEIVED = Counter("sqld_storage_frames_received_total", "replica: frames received from the replication service (applied a batch at a time)")
BYTES_RECEIVED = Counter("sqld_storage_bytes_received_total", "replica: page bytes received from the replication service")
