"""sqld_edge_* metrics: client connections and sessions, statements by kind, errors by SQLSTATE class, bytes."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from sqld.common import sqltext

CONNECTIONS = Counter("sqld_edge_connections_total", "client connections accepted (CancelRequests included)")
SESSIONS = Gauge("sqld_edge_sessions", "client sessions open (authenticated, with a scheduler session)")
STATEMENT_SECONDS = Histogram(
    "sqld_edge_statement_duration_seconds",
    "time from sending a batch to the scheduler to its answer, per statement kind "
    "(a batch of several kinds counts as other)", ["kind"],
    buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
ERRORS = Counter("sqld_edge_errors_total", "ErrorResponses sent to clients, per SQLSTATE class (two characters)",
                 ["sqlstate_class"])
BYTES_RECEIVED = Counter("sqld_edge_bytes_received_total", "bytes read from PostgreSQL clients")
BYTES_SENT = Counter("sqld_edge_bytes_sent_total", "bytes queued for PostgreSQL clients")

_KINDS = {"SELECT": "select", "VALUES": "select", "TABLE": "select", "INSERT": "insert", "REPLACE": "insert",
          "UPDATE": "update", "DELETE": "delete", "CREATE": "ddl", "DROP": "ddl", "ALTER": "ddl"}


@sqltext.per_text
def kind(sql: str) -> str:
    """select, insert, update, delete, ddl or other, by the statement's first keyword."""
    words = sqltext.leading_words(sql, 1)
    return _KINDS.get(words[0], "other") if words else "other"


def batch_kind(sqls: list[str]) -> str:
    kinds = {kind(s) for s in sqls}
    return kinds.pop() if len(kinds) == 1 else "other"
